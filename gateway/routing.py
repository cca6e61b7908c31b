"""Public model names → deployments, with everything the request path needs precomputed once at start: the
weighted choice, the A/B variants, and the ordered plan of attempts (deployments, then fallback models)."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from itertools import accumulate
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import orjson

from gateway.errors import bad_request
from gateway.exchange import CHAT
from gateway.health import DeploymentHealth
from gateway.pricing import CostModel, PriceTable
from gateway.providers import provider_for
from gateway.providers.base import Provider
from llmops.config import Config, Deployment, ModelConfig, Variant
from llmops.contract import VARIANT_HEADER

if TYPE_CHECKING:
    from gateway.exchange import Endpoint

_SCALE = float(1 << 64)


@dataclass(slots=True)
class DeploymentRoute:
    """One upstream deployment of a public model."""

    model: str  # the public name of the model this deployment belongs to
    config: Deployment
    cost: CostModel
    adapter: Provider  # how to speak to this deployment's API
    native: frozenset[str]  # the endpoint labels it answers itself (Provider.native)
    headers: dict[str, str]
    key: str = ""  # "model|deployment": the health key
    host: str = ""  # server.address / server.port, for traces
    port: int | None = None
    # `"model":"<upstream name>"` as the upstream writes it
    upstream_model_field: bytes = b""

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def provider(self) -> str:
        return self.config.provider

    def url(self, path: str) -> str:
        return self.config.base_url + path


def _weighted(items: list[tuple[float, object]], pick: float) -> int:
    bounds = list(accumulate(weight for weight, _ in items))
    target = pick * bounds[-1]
    for index, bound in enumerate(bounds):
        if target < bound:
            return index
    return len(items) - 1


@dataclass(slots=True)
class ModelRoute:
    """A public model: its deployments, variants, fallbacks and the weighted choice among them."""

    config: ModelConfig
    deployments: list[DeploymentRoute]
    public_model_field: bytes = b""  # `"model":"<public name>"`, written into every answer
    variants: list[Variant] = field(default_factory=list)
    fallbacks: list[ModelRoute] = field(default_factory=list)
    variant_targets: dict[str, ModelRoute] = field(default_factory=dict)  # variant name → the model serving it

    @property
    def name(self) -> str:
        return self.config.name

    def choose(self, rng: random.Random | None = None) -> DeploymentRoute:
        """A deployment chosen at random in proportion to the deployments' weights."""
        if len(self.deployments) == 1:
            return self.deployments[0]
        index = _weighted([(d.config.weight, d) for d in self.deployments], (rng or random).random())
        return self.deployments[index]

    def choose_variant(self, sticky_id: str, pinned: str | None = None) -> Variant | None:
        """The A/B variant for a request: the ``pinned`` one (a shadow request's ``x-llmops-variant``; 400 when the
        model has no such variant), else a stable function of ``sticky_id`` (the ``user`` field when given, so a
        user keeps their variant; else the request id)."""
        if pinned is not None:
            return self.variant_named(pinned)
        if not self.variants:
            return None
        digest = hashlib.blake2b(f"{self.name}\0{sticky_id}".encode(), digest_size=8).digest()
        pick = int.from_bytes(digest, "big") / _SCALE
        return self.variants[_weighted([(v.weight, v) for v in self.variants], pick)]

    def variant_named(self, name: str) -> Variant:
        """The variant called ``name``; 400 (``variant_not_found``) when the model has none of that name."""
        for variant in self.variants:
            if variant.name == name:
                return variant
        shown = name if len(name) <= 64 and name.isprintable() else "(invalid)"
        known = ", ".join(v.name for v in self.variants)
        raise bad_request(
            f"The model `{self.name}` has no variant `{shown}` ({VARIANT_HEADER}); "
            + (f"its variants: {known}." if known else "it has no variants."),
            code="variant_not_found",
        )

    def ordered(
        self, health: DeploymentHealth, limit: int, subset: list[str] | None = None, endpoint: Endpoint | None = None
    ) -> list[DeploymentRoute]:
        """Deployments in the order to try: a weighted pick among the available ones first, the other available
        ones by weight, then those cooling down (tried only when nothing else is left); at most ``limit``. Deployments
        that cannot answer ``endpoint`` (Anthropic has no completions or embeddings) are left out while others
        remain."""
        pool = [d for d in self.deployments if subset is None or d.name in subset]
        if endpoint is not None:
            pool = [d for d in pool if can_answer(d, endpoint)] or pool
        ready = [d for d in pool if health.available(d.key)]
        cooling = [d for d in pool if d not in ready]
        first: list[DeploymentRoute] = []
        if ready:
            first = [ready.pop(_weighted([(d.config.weight, d) for d in ready], random.random()))]
        ready.sort(key=lambda d: -d.config.weight)
        cooling.sort(key=lambda d: -d.config.weight)
        return (first + ready + cooling)[:limit]


def can_answer(route: DeploymentRoute, endpoint: Endpoint) -> bool:
    """Whether ``route`` answers ``endpoint``: natively, or through chat completions when the endpoint allows it."""
    return endpoint.label in route.native or (endpoint.via_chat and CHAT.label in route.native)


def attempt_plan(
    model: ModelRoute,
    variant: Variant | None,
    health: DeploymentHealth,
    max_attempts: int,
    endpoint: Endpoint | None = None,
) -> list[DeploymentRoute]:
    """Every deployment to try for one request, in order: the model's (or the variant's), then each fallback
    model's in the configured order."""
    if variant is not None and variant.model is not None:
        plan = model.variant_targets[variant.name].ordered(health, max_attempts, endpoint=endpoint)
    else:
        plan = model.ordered(health, max_attempts, variant.deployments if variant is not None else None, endpoint)
    for fallback in model.fallbacks:
        plan += fallback.ordered(health, max_attempts, endpoint=endpoint)
    return plan


def build_routes(config: Config, table: PriceTable) -> dict[str, ModelRoute]:
    """The routing table for ``config``: public name → :class:`ModelRoute`."""
    routes: dict[str, ModelRoute] = {}
    for model in config.models:
        deployments = []
        for dep in model.deployments:
            adapter = provider_for(dep.provider)
            deployments.append(
                DeploymentRoute(
                    model=model.name,
                    config=dep,
                    cost=CostModel.build(model.pricing, [dep.model, model.name], table, key=f"{model.name}|{dep.name}"),
                    adapter=adapter,
                    native=adapter.native(dep),
                    headers=adapter.headers(dep.api_key),
                    key=f"{model.name}|{dep.name}",  # "|" is never in a name; "/" may be
                    host=urlsplit(dep.base_url).hostname or "",
                    port=urlsplit(dep.base_url).port or (443 if dep.base_url.startswith("https") else 80),
                    upstream_model_field=b'"model":' + orjson.dumps(dep.model),
                )
            )
        routes[model.name] = ModelRoute(
            config=model,
            deployments=deployments,
            public_model_field=b'"model":' + orjson.dumps(model.name),
            variants=list(model.variants),
        )
    for route in routes.values():
        route.fallbacks = [routes[name] for name in route.config.fallbacks]
        route.variant_targets = {v.name: routes[v.model] for v in route.variants if v.model is not None}
    return routes
