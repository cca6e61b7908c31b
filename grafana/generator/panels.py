"""Shared builders: queries, thresholds, panel specs (small dataclasses), template variables and the dashboard frame.

A dashboard module lists its rows as ``(title, [panel, ...])``; a panel is a spec from here (``Stat``, ``Series``,
``BarGauge``) or, for the few one-off panels, an SDK builder. ``add_rows`` adds them in order (the SDK lays panels
out by that order and their width/height).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from grafana_foundation_sdk.builders import bargauge, common, dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    DataTransformerConfig,
    DynamicConfigValue,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DATASOURCE = DataSourceRef(type_val="prometheus", uid="prometheus")
TAGS = ["llmops"]
ALL = VariableOption(selected=True, text=["All"], value=["$__all"])

# Label filters driven by the template variables.
M = 'model=~"$model"'
MK = 'model=~"$model", key=~"$key"'
RI = "$__rate_interval"

Steps = tuple[tuple[float | None, str], ...]  # threshold steps: (value, colour); the first value is None (the base)
Target = tuple[str, str]  # (PromQL expression, legend)
DASHED = DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]})


# ------------------------------------------------------------------------------------------------ small pieces
def query(
    expr: str, legend: str = "", ref: str = "A", instant: bool = False, fmt_table: bool = False, exemplar: bool = False
) -> Any:
    """A Prometheus query on the provisioned datasource; ``exemplar``: also fetch its exemplars (trace links)."""
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if exemplar:
        q = q.exemplar(True)
    if legend:
        q = q.legend_format(legend)
    if instant:
        q = q.instant()
    if fmt_table:
        q = q.format(PromQueryFormat.TABLE)
    return q


def thresholds(*steps: tuple[float | None, str]) -> Any:
    return (
        dashboard.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=color) for value, color in steps])
    )


def percentiles(metric: str, quantiles: Sequence[str], selector: str = M, legend: str = "{{model}}") -> list[Target]:
    """One target per quantile of a ``<metric-prefix>:<q>_5m``-style recording rule, e.g. ``p50``, ``p95``."""
    return [(f"{metric}:{q}_5m{{{selector}}}", f"{legend} {q}") for q in quantiles]


def organize(exclude: Iterable[str], rename: dict[str, str]) -> DataTransformerConfig:
    """The table transformation that hides and renames columns."""
    return DataTransformerConfig(
        id_val="organize", options={"excludeByName": dict.fromkeys(exclude, True), "renameByName": rename}
    )


def links_override(link: Any) -> list[DynamicConfigValue]:
    """Override properties that make a field's cells open ``link``."""
    return [DynamicConfigValue(id_val="links", value=[link.build()])]


# ------------------------------------------------------------------------------------------------- panel specs
@dataclass(frozen=True)
class Stat:
    """A single-value panel (4 wide, 4 high): last value, area graph, coloured by ``steps``."""

    title: str
    description: str
    expr: str
    unit: str
    steps: Steps = ((None, "green"),)
    w: int = 4

    def builder(self) -> Any:
        return (
            stat.Panel()
            .title(self.title)
            .description(self.description)
            .datasource(DATASOURCE)
            .unit(self.unit)
            .span(self.w)
            .height(4)
            .thresholds(thresholds(*self.steps))
            .graph_mode(common_models.BigValueGraphMode.AREA)
            .color_mode(common_models.BigValueColorMode.VALUE)
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
            .with_target(query(self.expr))
        )


@dataclass(frozen=True, eq=False)
class Series:
    """A time series panel. ``lines`` draws thresholds as dashed lines (the first step is the base colour);
    ``dashed`` draws the series matching ``("name" | "regexp", matcher)`` dashed; ``links`` are data links."""

    title: str
    description: str
    targets: Sequence[Target]
    unit: str
    w: int = 12
    h: int = 8
    min_val: float | None = 0
    max_val: float | None = None
    stack: bool = False
    lines: Steps = ()
    dashed: tuple[Literal["name", "regexp"], str] | None = None
    links: Sequence[Any] = ()
    exemplars: bool = False  # show the queries' exemplars (dots linking to their traces)

    def builder(self) -> Any:
        p = (
            timeseries.Panel()
            .title(self.title)
            .description(self.description)
            .datasource(DATASOURCE)
            .unit(self.unit)
            .span(self.w)
            .height(self.h)
            .line_width(1)
            .fill_opacity(10)
            .legend(
                common.VizLegendOptions()
                .display_mode(common_models.LegendDisplayMode.TABLE)
                .placement(common_models.LegendPlacement.BOTTOM)
                .show_legend(True)
                .calcs(["mean", "max", "lastNotNull"])
            )
            .tooltip(
                common.VizTooltipOptions()
                .mode(common_models.TooltipDisplayMode.MULTI)
                .sort(common_models.SortOrder.DESCENDING)
            )
        )
        if self.min_val is not None:
            p = p.min(self.min_val)
        if self.max_val is not None:
            p = p.max(self.max_val)
        if self.stack:
            p = p.stacking(common.StackingConfig().mode(common_models.StackingMode.NORMAL)).fill_opacity(40)
        if self.lines:
            p = p.thresholds(thresholds(*self.lines)).thresholds_style(
                common.GraphThresholdsStyleConfig().mode(common_models.GraphThresholdsStyleMode.DASHED)
            )
        for i, (expr, legend) in enumerate(self.targets):
            p = p.with_target(query(expr, legend, ref=chr(ord("A") + i), exemplar=self.exemplars))
        if self.dashed is not None:
            kind, matcher = self.dashed
            p = p.override_by_name(matcher, [DASHED]) if kind == "name" else p.override_by_regexp(matcher, [DASHED])
        if self.links:
            p = p.data_links(list(self.links))
        return p


@dataclass(frozen=True)
class BarGauge:
    """Horizontal gradient bars of an instant query, 0..1."""

    title: str
    description: str
    expr: str
    legend: str
    unit: str
    steps: Steps
    w: int = 12
    h: int = 8

    def builder(self) -> Any:
        return (
            bargauge.Panel()
            .title(self.title)
            .description(self.description)
            .datasource(DATASOURCE)
            .unit(self.unit)
            .min(0)
            .max(1)
            .span(self.w)
            .height(self.h)
            .thresholds(thresholds(*self.steps))
            .display_mode(common_models.BarGaugeDisplayMode.GRADIENT)
            .orientation(common_models.VizOrientation.HORIZONTAL)
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
            .with_target(query(self.expr, self.legend, instant=True))
        )


PanelSpec = Stat | Series | BarGauge
Rows = Sequence[tuple[str, Sequence[Any]]]  # (row title, [PanelSpec or SDK panel builder, ...])


def table_panel(title: str, description: str, exprs: Sequence[str], unit: str = "") -> Any:
    """A 12x8 table of instant queries (refs A, B, ...) in table format; transformations and overrides are added
    by the caller."""
    p = table.Panel().title(title).description(description).datasource(DATASOURCE).span(12).height(8)
    if unit:
        p = p.unit(unit)
    for i, expr in enumerate(exprs):
        p = p.with_target(query(expr, ref=chr(ord("A") + i), instant=True, fmt_table=True))
    return p


# --------------------------------------------------------------------------------------- variables, dashboards
def query_variable(name: str, label: str, description: str, expr: str) -> Any:
    """A multi-value template variable from a label's values, 'All' selected (matching ``.*``)."""
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(DATASOURCE)
        .query(expr)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(ALL)
    )


def model_variable(metric: str = "llm_gateway_requests_total") -> Any:
    return query_variable(
        "model", "Model", "Public model name (the gateway's `model` label)", f"label_values({metric}, model)"
    )


def key_variable() -> Any:
    return query_variable(
        "key",
        "Key",
        "Configured key name (`anonymous` without a key)",
        f"label_values(llm_gateway_requests_total{{{M}}}, key)",
    )


def new_dashboard(title: str, uid: str, description: str) -> Any:
    """The common frame: tags, refresh, time range, shared crosshair, built-in annotations, a link to the others."""
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .annotation(
            dashboard.AnnotationQuery()
            .name("Annotations & Alerts")
            .datasource(DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .type("dashboard")
            .built_in(1)
        )
        .link(
            dashboard.DashboardLink("LLMOps dashboards")
            .type("dashboards")
            .tags(TAGS)
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )


def add_rows(d: Any, rows: Rows) -> Any:
    """Add each row and then its panels, in order."""
    for title, panels in rows:
        d = d.with_row(dashboard.Row(title))
        for panel in panels:
            d = d.with_panel(panel.builder() if isinstance(panel, PanelSpec) else panel)
    return d
