"""A vLLM-like upstream at the wire level, for demos, tests and benchmarks."""
