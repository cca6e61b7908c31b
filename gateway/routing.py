"""Public model names → deployments, with everything the request path needs precomputed once at start."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from itertools import accumulate

import orjson

from gateway.pricing import CostModel, PriceTable
from llmops.config import Config, Deployment, ModelConfig

_PROVIDER_LABEL = {"openai_compatible": "openai_compatible", "anthropic": "anthropic"}


@dataclass(slots=True)
class DeploymentRoute:
    """One upstream deployment of a public model."""

    model: str  # public name
    config: Deployment
    cost: CostModel
    headers: dict[str, str]
    # `"model":"<upstream name>"` as the upstream writes it, and the public name to put in its place.
    upstream_model_field: bytes = b""
    public_model_field: bytes = b""

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def provider(self) -> str:
        return _PROVIDER_LABEL[self.config.provider]

    def url(self, path: str) -> str:
        return self.config.base_url + path


@dataclass(slots=True)
class ModelRoute:
    """A public model: its deployments and the weighted choice among them."""

    config: ModelConfig
    deployments: list[DeploymentRoute]
    _cumulative: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cumulative = list(accumulate(d.config.weight for d in self.deployments))

    @property
    def name(self) -> str:
        return self.config.name

    def choose(self, rng: random.Random | None = None) -> DeploymentRoute:
        """A deployment chosen at random in proportion to the deployments' weights."""
        if len(self.deployments) == 1:
            return self.deployments[0]
        pick = (rng or random).random() * self._cumulative[-1]
        for route, bound in zip(self.deployments, self._cumulative, strict=True):
            if pick < bound:
                return route
        return self.deployments[-1]


def _json_string(value: str) -> bytes:
    return orjson.dumps(value)


def build_routes(config: Config, table: PriceTable) -> dict[str, ModelRoute]:
    """The routing table for ``config``: public name → :class:`ModelRoute`."""
    routes: dict[str, ModelRoute] = {}
    for model in config.models:
        deployments = []
        for dep in model.deployments:
            headers = {"Content-Type": "application/json"}
            if dep.api_key:
                headers["Authorization"] = f"Bearer {dep.api_key}"
            deployments.append(
                DeploymentRoute(
                    model=model.name,
                    config=dep,
                    cost=CostModel.build(model.pricing, [dep.model, model.name], table),
                    headers=headers,
                    upstream_model_field=b'"model":' + _json_string(dep.model),
                    public_model_field=b'"model":' + _json_string(model.name),
                )
            )
        routes[model.name] = ModelRoute(config=model, deployments=deployments)
    return routes
