"""The gateway's request path stays lean: starting it never imports the monitors' heavy libraries."""

from __future__ import annotations

import subprocess
import sys

from tests.support import REPO

HEAVY = {"evidently", "pandas", "numpy", "scipy", "sacrebleu", "rouge_score", "nltk"}


def test_gateway_never_imports_evidently_or_numpy() -> None:
    code = (
        "import sys; from llmops.cli import build_parser; build_parser(); import gateway.server, gateway.app; "
        f"print(','.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(HEAVY)!r}))))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"the gateway imported: {result.stdout.strip()}"
