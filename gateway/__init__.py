"""The OpenAI-compatible gateway: proxying, metrics, cost."""
