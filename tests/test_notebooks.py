"""Notebook regression: every chapter in _toc.yml runs headless (papermill, smoke mode) and writes its
results JSON; notebooks are stored stripped. nbval re-runs them (pytest --nbval-lax, see conftest)."""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from notebook_expectations import EXPECTED

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import nbtidy  # noqa: E402


def toc_notebooks() -> list[Path]:
    """Notebook files named in _toc.yml, in book order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(toc)
    return [
        ROOT / f"{f}.ipynb"
        for f in files
        if (ROOT / f"{f}.ipynb").exists() or f.startswith("notebooks/")
    ]


NOTEBOOKS = toc_notebooks()


def test_toc_and_notebook_folder_agree():
    on_disk = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert sorted(NOTEBOOKS) == on_disk, (
        "every notebook must be listed in _toc.yml and every listed one must exist"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_clean_and_follows_conventions(path):
    assert nbtidy.tidy(path, check=True), (
        f"{path.name} is not tidy (outputs, metadata, ids or the claim-check tag); "
        f"run: python tools/nbtidy.py {path}"
    )
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), (
        f"{path.name} is stored with outputs; tidy it with: python tools/nbtidy.py {path}"
    )
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.lstrip().startswith("# ")
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "smoke" in params[0].source and "device" in params[0].source
    assert re.search(rf'save_results\(\s*"{path.stem}"', "".join(c.source for c in code)), (
        f"{path.name} must write results/{path.stem}.json with ik.nb.save_results"
    )


def _finite_numbers(obj):
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return True
    if isinstance(obj, (int, float)):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_finite_numbers(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_finite_numbers(v) for v in obj)
    return False


#: Seconds one cell of a smoke run may take (the longest takes under a minute on a 2-core CPU).
CELL_TIMEOUT = 600


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_mode(path, tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill")
    executed = (
        ROOT / ".cache" / "executed" / path.name
    )  # the browser test builds the book from these
    executed.unlink(missing_ok=True)
    results = tmp_path / "results"
    monkeypatch.setenv("INTERPKIT_RESULTS_DIR", str(results))  # the kernel inherits the environment
    # figures as outputs, as in the book (the root conftest's MPLBACKEND=Agg would leave none)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    # a cell of a smoke run takes seconds: a cell past CELL_TIMEOUT is a hung kernel, which fails
    # the test at once rather than stalling the whole run
    papermill.execute_notebook(
        str(path),
        str(tmp_path / path.name),
        cwd=str(path.parent),
        kernel_name="python3",
        parameters={"smoke": True},
        progress_bar=False,
        execution_timeout=CELL_TIMEOUT,
    )
    out = results / f"{path.stem}.json"
    assert out.is_file(), f"{path.name} did not write {out.name}"
    data = json.loads(out.read_text())
    assert data.get("smoke") is True and _finite_numbers(data)
    spec = EXPECTED.get(path.stem, {})
    missing = [k for k in spec.get("keys", []) if k not in data]
    assert not missing, f"{out.name} lacks {missing}"
    for i, check in enumerate(spec.get("checks", [])):
        assert check(data), f"{out.name}: check {i} failed on {data}"
    # the chapters' computed prose (Markdown outputs) must not quote undefined numbers
    ran = nbformat.read(tmp_path / path.name, as_version=4)
    prose = [
        "".join(o["data"]["text/markdown"])
        for c in ran.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "text/markdown" in o.get("data", {})
    ]
    undefined = [
        m.group(0) for t in prose for m in re.finditer(r".{0,40}\b(?:nan|NaN|inf)\b.{0,10}", t)
    ]
    assert not undefined, f"{path.name} writes undefined numbers into its text: {undefined}"
    executed.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tmp_path / path.name, executed.with_suffix(".tmp"))
    executed.with_suffix(".tmp").replace(executed)  # only notebooks that passed every check


def test_md_fills_a_template_with_choices_ranges_and_lists(monkeypatch):
    import interpkit as ik

    out = ik.nb.md(
        """
        - {ok:?beats|loses to} random ({x:.2f}); shares {s:%.0f-}, ratios {r:.1f-};
          in {names:,} ({d[a]:+.1f}); {bad:?yes|no}
        """,
        ok=True,
        x=0.123,
        s=[0.45, 0.8, 0.5],
        r=(3.0, 1.25),
        names=["block 5", "block 6"],
        d={"a": -2},
        bad=0,
    )
    text = getattr(out, "data", out)
    assert text == (
        "- beats random (0.12); shares 45-80%, ratios 1.2-3.0;\n  in block 5, block 6 (-2.0); no"
    )
    with pytest.raises(KeyError, match="not among the values"):
        ik.nb.md("{missing}")


def test_save_results_can_store_missing_numbers_as_none(tmp_path, monkeypatch):
    import interpkit as ik

    monkeypatch.setenv("INTERPKIT_RESULTS_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="NaN or infinite"):
        ik.nb.save_results("x", {"a": float("nan")}, smoke=True)
    path = ik.nb.save_results("x", {"a": [1.0, float("nan")]}, smoke=True, missing_as_none=True)
    assert json.loads(path.read_text())["a"] == [1.0, None]


def test_claim_rate_and_span_in_words():
    import interpkit as ik

    c = ik.nb.Claim("k", "text", "paper", [0.1, 0.3, 0.2], [True, False, True], fmt=".2f")
    assert c.rate == "2 of 3 seeds"
    one = ik.nb.Claim("k", "t", "p", [1.0], [True])
    assert one.rate == "1 of 1 seed" and one.span.endswith("over 1 seed)")
    assert c.span == "0.20 (from 0.10 to 0.30 over 3 seeds)"
