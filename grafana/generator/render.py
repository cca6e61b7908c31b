"""Serialise the dashboards to JSON, and the CLI of ``grafana/generate.py`` (write, or ``--check``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from . import eval_dashboard, gateway_dashboard, gpu_dashboard, quality_dashboard, slo_dashboard

OUT_DIR = Path(__file__).resolve().parent.parent / "dashboards"

DASHBOARDS: dict[str, Callable[[], Any]] = {
    "llm-gateway.json": gateway_dashboard.build,
    "llm-quality-drift.json": quality_dashboard.build,
    "llm-gpu-vllm.json": gpu_dashboard.build,
    "llm-evaluation.json": eval_dashboard.build,
    "llm-slo-cost.json": slo_dashboard.build,
}


def _clean_link(link: dict[str, Any]) -> dict[str, Any]:
    # The SDK types field data links as dashboard links; Grafana's data links only use these keys.
    return {k: link[k] for k in ("title", "url", "targetBlank") if k in link}


def _finish(model: dict[str, Any]) -> dict[str, Any]:
    """Number the panels (the SDK leaves them at 0) and trim data links."""
    panels = model.get("panels", [])
    for i, panel in enumerate(panels, start=1):
        panel["id"] = i
        defaults = panel.get("fieldConfig", {}).get("defaults", {})
        if "links" in defaults:
            defaults["links"] = [_clean_link(link) for link in defaults["links"]]
        for override in panel.get("fieldConfig", {}).get("overrides", []):
            for prop in override.get("properties", []):
                if prop.get("id") == "links":
                    prop["value"] = [_clean_link(link) for link in prop["value"]]
    return model


def render(builder: Any) -> str:
    """The dashboard's JSON text as committed: sorted keys, 2-space indent, a final newline."""
    model = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return json.dumps(_finish(model), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_all() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {name: render(make()) for name, make in DASHBOARDS.items()}


def main(argv: list[str] | None = None, description: str | None = None) -> int:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the files on disk instead of writing")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"output folder (default {OUT_DIR})")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render_all().items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run: python grafana/generate.py", file=sys.stderr)
        return 1
    return 0
