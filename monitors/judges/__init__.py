"""Judges: rule checks, reference metrics, LLM-as-a-judge, RAG metrics, perplexity, pairwise."""
