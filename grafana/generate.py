#!/usr/bin/env python3
"""Generate the Grafana dashboards of llmops-stack into grafana/dashboards/*.json.

    python grafana/generate.py            # write the dashboards
    python grafana/generate.py --check    # exit 1 if the committed dashboards differ from what this script makes

Built with the official grafana-foundation-sdk (pinned, see grafana/README.md) by the package grafana/generator/
(shared builders in panels.py, one module per dashboard). Queries use only the metric names of the design contract
(docs/observability.md) and the recording rules of prometheus/rules/recording.yml; tests/deploy/test_prometheus_rules.py
checks both, and that the committed JSON equals this script's output.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:  # run as a script, or loaded by path (the tests): make grafana.generator importable
    sys.path.insert(0, _ROOT)

from grafana.generator.render import DASHBOARDS, OUT_DIR, main, render, render_all  # noqa: E402

__all__ = ["DASHBOARDS", "OUT_DIR", "main", "render", "render_all"]

if __name__ == "__main__":
    sys.exit(main(description=__doc__))
