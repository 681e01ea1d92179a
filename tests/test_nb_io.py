import json
import os

import pytest

import interpkit as ik
from interpkit import io


def test_smoke_mode_from_argument_and_environment(monkeypatch):
    monkeypatch.delenv("INTERPKIT_SMOKE", raising=False)
    assert ik.nb.smoke_mode() is False and ik.nb.smoke_mode(True) is True
    monkeypatch.setenv("INTERPKIT_SMOKE", "1")
    assert ik.nb.smoke_mode() is True and ik.nb.smoke_mode(False) is False


def test_save_results_writes_json(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERPKIT_RESULTS_DIR", str(tmp_path))
    import numpy as np

    path = ik.nb.save_results("07_demo", {"acc": np.float32(0.5), "curve": np.arange(3)}, smoke=True)
    assert path == tmp_path / "07_demo.json"
    assert json.loads(path.read_text()) == {"acc": 0.5, "curve": [0, 1, 2], "smoke": True}


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    io.atomic_write_text(target, "old")

    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        io.atomic_write_text(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_paper_vs_measured_table():
    df = ik.nb.paper_vs_measured([{"claim": "a", "paper": "1", "measured": "2", "holds": True},
                                  {"claim": "b", "paper": "1", "measured": "0", "holds": False}])
    assert df["holds"].tolist() == ["yes", "no"]


def test_paper_vs_measured_shows_long_cells_in_full():
    long = "features.1: 0.0035 vs 0.0038, features.3: 0.0075 vs 0.0110, features.7: 0.0396 vs 0.0397 (end)"
    df = ik.nb.paper_vs_measured([{"claim": "x" * 80, "paper": "y", "measured": long, "holds": None}])
    assert long in df._repr_html_() and long in repr(df)
    assert "x" * 80 in df._repr_html_()
    assert isinstance(df[["claim"]], type(df)) and df["holds"].tolist() == ["n/a"]


def test_atomic_path_renames_on_success_and_keeps_the_old_file_on_error(tmp_path):
    target = tmp_path / "sub" / "a.bin"
    with io.atomic_path(target) as tmp:
        assert tmp.parent == target.parent and not target.exists()
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    with pytest.raises(RuntimeError, match="stop"):
        with io.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("stop")
    assert target.read_bytes() == b"new" and sorted(p.name for p in target.parent.iterdir()) == ["a.bin"]


@pytest.mark.parametrize("value, positive", [(float("nan"), False), (float("inf"), False), (-1, False),
                                             (0, True), (True, False), ("1", False)])
def test_check_number_rejects_non_finite_negative_and_non_numbers(value, positive):
    from interpkit.checks import check_number
    with pytest.raises(ValueError, match="w must be a finite number"):
        check_number("w", value, positive=positive)


def test_check_number_and_positive_int_accept_good_values():
    import numpy as np
    from interpkit.checks import check_number, check_positive_int
    assert check_number("w", 0) == 0.0 and check_number("w", np.float32(0.5), positive=True) == 0.5
    assert check_positive_int("k", np.int64(3)) == 3
    for bad in (0, -3, 2.0, True):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            check_positive_int("k", bad)


def test_check_unit_interval_counts_non_finite_values_and_gives_the_range():
    import torch
    from interpkit.checks import check_unit_interval
    check_unit_interval(torch.rand(2, 3), "x", "scale it")
    x = torch.tensor([0.5, float("nan"), 2.0])
    with pytest.raises(ValueError, match=r"x must be finite and lie in \[0, 1\], got 1 non-finite values and "
                                         r"range \[0.5, 2\]; scale it"):
        check_unit_interval(x, "x", "scale it")
