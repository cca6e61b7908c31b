"""Configuration checks only the monitors can make, run where a monitors command loads the shared config.

The shared schema (:mod:`llmops.config`) imports neither service, so that a gateway loads the same file on a host
without the monitors' optional extras. What needs the monitors' own code is checked here, with the messages the
schema used to give: ``drift.embeddings`` enabled needs its extra installed (and a local model directory), and
``drift.stattests`` / ``drift.thresholds`` must name drift features and stat tests that apply to them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError
from pydantic_core import InitErrorDetails

from llmops.config import Config, ConfigError, DriftConfig, MonitorsConfig, format_validation_error, load_config

Location = tuple[str | int, ...]


def drift_problem(settings: DriftConfig) -> tuple[Location, str] | None:
    """The first thing wrong with ``settings`` that only the monitors can tell: where (relative to ``settings``) and
    what; None when nothing is."""
    if settings.embeddings.enabled:
        from monitors.drift.embeddings import missing_extra  # stdlib only at import

        problem = missing_extra(settings.embeddings.model_path)
        if problem:
            return ("embeddings",), problem
    if settings.stattests or settings.thresholds:
        from monitors.drift import FEATURES, RETIRED, check_stattest  # plain data: no numpy, no Evidently

        for feature, stattest in settings.stattests.items():
            problem = check_stattest(feature, stattest)
            if problem:
                return (), f"stattests: {problem}"
        retired = sorted(set(settings.thresholds) & set(RETIRED))
        if retired:
            return (), f"thresholds: feature {retired[0]!r} is no longer tested: {RETIRED[retired[0]]}"
        unknown = sorted(set(settings.thresholds) - set(FEATURES))
        if unknown:
            return (), f"thresholds: unknown feature(s) {', '.join(unknown)}"
    return None


def check_drift(settings: DriftConfig, loc: Location = ()) -> None:
    """Raise a pydantic :class:`ValidationError` (as validating the schema would) when :func:`drift_problem` finds
    something; ``loc`` is where ``settings`` sits in the config (e.g. ``("monitors", "drift")``)."""
    found = drift_problem(settings)
    if found is None:
        return
    where, problem = found
    error = InitErrorDetails(type="value_error", loc=(*loc, *where), input=settings, ctx={"error": ValueError(problem)})
    raise ValidationError.from_exception_data(type(settings).__name__, [error])


def embedding_problem(settings: MonitorsConfig) -> str | None:
    """What keeps ``monitors.embedding_model: local`` from running here (the drift-embeddings extra, the model
    directory ``drift.embeddings.model_path``), or None."""
    if settings.embedding_model != "local":
        return None
    from monitors.drift.embeddings import missing_extra  # stdlib only at import

    problem = missing_extra(settings.drift.embeddings.model_path)
    if problem is None:
        return None
    return problem.replace("drift.embeddings is enabled", "monitors.embedding_model is 'local'").replace(
        "or set drift.embeddings.enabled: false", "or set monitors.embedding_model to a gateway embedding model"
    )


def check_config(config: Config, source: str = "<config>") -> None:
    """Raise :class:`ConfigError`, worded as the schema's errors of the file ``source``, when the monitors cannot run
    with ``config``."""
    try:
        check_drift(config.monitors.drift, ("monitors", "drift"))
        problem = embedding_problem(config.monitors)
        if problem:
            error = InitErrorDetails(
                type="value_error",
                loc=("monitors", "embedding_model"),
                input=config.monitors.embedding_model,
                ctx={"error": ValueError(problem)},
            )
            raise ValidationError.from_exception_data("MonitorsConfig", [error])
    except ValidationError as error:
        raise ConfigError(format_validation_error(source, error)) from None


def load_monitors_config(path: str | Path) -> Config:
    """:func:`llmops.config.load_config` and the monitors' own checks: what a monitors command starts with."""
    config = load_config(path)
    check_config(config, str(Path(path)))
    return config
