"""Claims over seeds (interpkit.nb), the claim-check cell's tag, the book build's failure report and
the seed sweep's table: the evidence machinery every chapter uses."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest

import interpkit as ik

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import build_book  # noqa: E402
import nbtidy  # noqa: E402
import seed_sweep  # noqa: E402


def test_seeds_follow_the_chapter_seed_and_the_mode():
    assert ik.nb.seeds(0, smoke=False) == [0, 1, 2]
    assert ik.nb.seeds(4, smoke=True) == [4]
    assert ik.nb.seeds(2, smoke=True, quick=2) == [2, 3]
    with pytest.raises(ValueError, match="positive integer"):
        ik.nb.seeds(0, smoke=False, full=0)


def test_claim_summary_and_table_give_spread_and_pass_rate():
    c = ik.nb.Claim(
        "gap",
        "A beats B",
        "A > B",
        values=[0.1, 0.3, -0.1],
        holds=[True, True, False],
        asserted=False,
    )
    s = c.summary()
    assert s["mean"] == pytest.approx(0.1) and s["sd"] == pytest.approx(0.2)
    assert (s["min"], s["max"], s["passed"], s["runs"]) == (-0.1, 0.3, 2, 3)
    table = ik.nb.claims_table([c])
    assert table.loc[0, "holds"] == "2/3 seeds" and table.loc[0, "asserted"] == "no (reported)"
    assert "0.100 ± 0.200" in table.loc[0, "measured"] and "3 seeds" in table.loc[0, "measured"]
    assert ik.nb.claims_json([c])["gap"]["holds"] == [True, True, False]
    one = ik.nb.Claim("acc", "accurate", "0.9", values=[0.93], holds=[True])
    assert one.summary()["sd"] == 0.0 and "(1 seed)" in one.measured()


def test_claim_needs_one_flag_per_value():
    with pytest.raises(ValueError, match="one value and one holds flag per seed"):
        ik.nb.Claim("k", "c", "p", values=[1.0, 2.0], holds=[True])
    with pytest.raises(ValueError, match="one value"):
        ik.nb.Claim("k", "c", "p", values=[], holds=[])


def test_check_claims_fails_only_on_asserted_claims_that_missed_a_seed():
    reported = ik.nb.Claim("r", "reported", "p", values=[0, 1], holds=[False, True], asserted=False)
    held = ik.nb.Claim("h", "held", "p", values=[1, 1], holds=[True, True])
    ik.nb.check_claims([reported, held], "ch")  # nothing asserted failed
    missed = ik.nb.Claim("m", "missed once", "p", values=[1.0, -2.0], holds=[True, False])
    with pytest.raises(
        ik.nb.ClaimFailed, match=r"(?s)ch: 1 asserted claim.*missed once.*1 of 2 seeds.*-2\.000"
    ):
        ik.nb.check_claims([reported, held, missed], "ch")


def test_the_claim_check_cell_is_tagged_so_the_book_renders_a_failure(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# t"),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("ik.nb.check_claims(claims, 'x')"),
    ]
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="1")]
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    assert not nbtidy.tidy(path, check=True)  # untidy: an output and an untagged check
    assert not nbtidy.tidy(path)  # tidied now
    assert nbtidy.tidy(path, check=True)  # and tidying is idempotent
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[1].metadata.get("tags", []) == [] and nb.cells[1].outputs == []
    assert nb.cells[2].metadata["tags"] == [nbtidy.CLAIMS_TAG]


def test_book_build_lists_failed_claims_and_stopped_chapters(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("ik.nb.check_claims(c, '05')")
    cell.outputs = [
        nbformat.v4.new_output(
            "error", ename="ClaimFailed", evalue="05: 1 asserted claim(s)", traceback=[]
        )
    ]
    ok = nbformat.v4.new_code_cell("1")
    ok.outputs = [
        nbformat.v4.new_output("execute_result", data={"text/plain": "1"}, execution_count=1)
    ]
    nb.cells = [ok, cell]
    (tmp_path / "jupyter_execute" / "notebooks").mkdir(parents=True)
    nbformat.write(nb, tmp_path / "jupyter_execute" / "notebooks" / "05_network_dissection.ipynb")
    (tmp_path / "html" / "reports" / "notebooks").mkdir(parents=True)
    (tmp_path / "html" / "reports" / "notebooks" / "02_explainer.err.log").write_text(
        "Traceback\nValueError: bad\n"
    )
    found = build_book.chapter_failures(tmp_path)
    assert len(found) == 2
    assert found[0].startswith("05_network_dissection: ClaimFailed: 05: 1 asserted")
    assert found[1].startswith("02_explainer: execution stopped;") and "ValueError: bad" in found[1]
    assert build_book.chapter_failures(tmp_path / "empty") == []


def _run(chapter, seed, threads, held, ran=True, mode="smoke"):
    return {
        "chapter": chapter,
        "seed": seed,
        "threads": threads,
        "mode": mode,
        "seconds": 10.0 + seed,
        "ran": ran,
        "load": 0.5,
        "claims": {
            "gap": {
                "held": held,
                "values": [0.2 if held else -0.1],
                "asserted": True,
                "claim": "A | B beats C",
            }
        },
    }


def test_seed_sweep_report_counts_runs_per_claim(tmp_path):
    runs = [_run("02_explainer", s, t, held=(s, t) != (3, 1)) for s in range(5) for t in (1, 2)]
    text = seed_sweep.report(runs)
    row = next(
        line for line in text.splitlines() if line.startswith("| 02_explainer | A \\| B beats C")
    )
    assert "| 9/10 |" in row and "-0.1 .. 0.2" in row and "s3/t1" in row
    assert "| 02_explainer | smoke | 10 | 10 .. 14 s | 0.5 .. 0.5 | 0 |" in text
    for r in runs:
        path = tmp_path / r["chapter"] / f"smoke-seed{r['seed']}-threads{r['threads']}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(r))
    assert len(seed_sweep.load_runs(tmp_path)) == 10
    report = tmp_path / "sweep.md"
    assert (
        seed_sweep.main(["--report-only", "--out", str(tmp_path), "--report", str(report)]) == 1
    )  # one failed
    assert "9/10" in report.read_text()


def test_save_results_records_the_mode_the_chapter_resolved(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERPKIT_RESULTS_DIR", str(tmp_path))
    monkeypatch.delenv("INTERPKIT_SMOKE", raising=False)
    monkeypatch.setattr(ik.nb, "_resolved_smoke", None)
    assert (
        json.loads(ik.nb.save_results("a", {"x": 1}).read_text())["smoke"] is False
    )  # from the environment
    assert ik.nb.smoke_mode(True) is True  # papermill's -p smoke True, environment unset
    assert json.loads(ik.nb.save_results("b", {"x": 1}).read_text())["smoke"] is True
    assert json.loads(ik.nb.save_results("c", {"x": 1}, smoke=False).read_text())["smoke"] is False
