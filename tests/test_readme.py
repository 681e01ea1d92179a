"""The README's code examples run as written (on tiny data, through the shared test model cache)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_has_the_five_method_example():
    assert any("dissection.dissect" in b and "explainer.train_explainer" in b for b in BLOCKS)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_five_method_example_runs():
    code = next(b for b in BLOCKS if "dissection.dissect" in b)
    env: dict = {}
    exec(compile(code, "README.md", "exec"), env)  # noqa: S102 - our own README
    assert (
        isinstance(env["units"], pd.DataFrame) and len(env["units"]) == 64
    )  # features.4 has 64 units
    assert {"correlation", "precision"} <= set(env["scores"].columns)
    assert env["nmf"].rank == 5
    assert env["decoder"].layer == "features.4" and env["parts"].n_filters > 0
