"""llmops-stack: command line and shared configuration."""
