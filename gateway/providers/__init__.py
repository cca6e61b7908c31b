"""Upstream APIs: one :class:`~gateway.providers.base.Provider` per deployment ``provider`` value.

``openai_compatible`` relays OpenAI's API as it is; ``anthropic`` translates OpenAI chat to Anthropic's Messages API and
back (``gateway/providers/anthropic/``: request, response, errors, stream). Adding a provider means adding a module
here and one entry to :data:`PROVIDERS`.
"""

from __future__ import annotations

from gateway.providers.anthropic.provider import AnthropicProvider
from gateway.providers.base import Provider
from gateway.providers.openai_compatible import OpenAICompatible

PROVIDERS: dict[str, Provider] = {"openai_compatible": OpenAICompatible(), "anthropic": AnthropicProvider()}


def provider_for(name: str) -> Provider:
    """The provider of a deployment's ``provider`` setting (validated by the config: always known)."""
    return PROVIDERS[name]
