"""Translation layers between OpenAI's chat format (what clients speak) and other providers' native APIs.

Each module is pure (no I/O): request translation, response translation, stream translation and error mapping, run
by :mod:`gateway.proxy` for deployments whose ``provider`` is not ``openai_compatible``.
"""
