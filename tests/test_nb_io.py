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

    path = ik.nb.save_results(
        "07_demo", {"acc": np.float32(0.5), "curve": np.arange(3)}, smoke=True
    )
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
    df = ik.nb.paper_vs_measured(
        [
            {"claim": "a", "paper": "1", "measured": "2", "holds": True},
            {"claim": "b", "paper": "1", "measured": "0", "holds": False},
        ]
    )
    assert df["holds"].tolist() == ["yes", "no"]


def test_paper_vs_measured_shows_long_cells_in_full():
    long = "features.1: 0.0035 vs 0.0038, features.3: 0.0075 vs 0.0110, features.7: 0.0396 vs 0.0397 (end)"
    df = ik.nb.paper_vs_measured(
        [{"claim": "x" * 80, "paper": "y", "measured": long, "holds": None}]
    )
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
    assert target.read_bytes() == b"new" and sorted(p.name for p in target.parent.iterdir()) == [
        "a.bin"
    ]


@pytest.mark.parametrize(
    "value, positive",
    [
        (float("nan"), False),
        (float("inf"), False),
        (-1, False),
        (0, True),
        (True, False),
        ("1", False),
    ],
)
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
    with pytest.raises(
        ValueError,
        match=r"x must be finite and lie in \[0, 1\], got 1 non-finite values and "
        r"range \[0.5, 2\]; scale it",
    ):
        check_unit_interval(x, "x", "scale it")


def test_atomic_write_json_writes_valid_json_for_nan_and_inf(tmp_path):
    """Defect: NaN and inf were written as the bare tokens NaN/Infinity, which are not JSON (JSON.parse, jq choke)."""
    import numpy as np
    import torch

    def strict(token):
        raise ValueError(f"invalid JSON token {token}")

    path = io.atomic_write_json(
        tmp_path / "r.json",
        {
            "a": float("nan"),
            "b": [1.5, float("-inf")],
            "c": np.float32("inf"),
            "d": np.array([0.5, np.nan]),
            "e": torch.tensor([float("nan"), 2.0]),
            "f": (1, 2),
        },
    )
    assert json.loads(path.read_text(), parse_constant=strict) == {
        "a": None,
        "b": [1.5, None],
        "c": None,
        "d": [0.5, None],
        "e": [None, 2.0],
        "f": [1, 2],
    }


def test_failed_serialisation_leaves_no_file(tmp_path, monkeypatch):
    import torch

    with pytest.raises(TypeError, match="cannot write an object of type object"):
        io.atomic_write_json(tmp_path / "r.json", {"a": object()})

    def broken_save(*a, **k):
        raise RuntimeError("cannot pickle")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(RuntimeError, match="cannot pickle"):
        io.atomic_torch_save({"w": 1}, tmp_path / "c.pt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_atomic_writes_keep_the_usual_file_permissions(tmp_path):
    """Defect: every file written was private (0600, from mkstemp) whatever the umask, also when it replaced a 0644 file."""
    old = os.umask(0o022)
    try:
        new = io.atomic_write_text(tmp_path / "new.txt", "x")
        assert new.stat().st_mode & 0o777 == 0o644
        os.chmod(new, 0o640)
        io.atomic_write_json(new, {"a": 1})
        assert new.stat().st_mode & 0o777 == 0o640  # a replaced file keeps its permissions
    finally:
        os.umask(old)


def test_load_torch_cache_takes_one_required_key_as_a_string(tmp_path):
    """Defect: required="state_dict" was read as its letters, so a good cache was called unreadable and retrained."""
    import warnings

    io.atomic_torch_save({"state_dict": {}}, tmp_path / "c.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert io.load_torch_cache(tmp_path / "c.pt", "state_dict", "model") == {"state_dict": {}}
    with pytest.warns(RuntimeWarning, match="model cache file .* is unreadable"):
        assert io.load_torch_cache(tmp_path / "c.pt", "history", "model") is None


def test_smoke_mode_reads_switch_strings_and_refuses_unknown_ones(monkeypatch):
    """Defect: smoke="false" (papermill -r) gave True, and INTERPKIT_SMOKE=ture silently ran the full configuration."""
    for text in ("0", "false", "", " OFF ", "no"):
        assert ik.nb.smoke_mode(text) is False
        monkeypatch.setenv("INTERPKIT_SMOKE", text)
        assert ik.nb.smoke_mode() is False
    for text in ("1", "True", " yes", "on"):
        assert ik.nb.smoke_mode(text) is True
        monkeypatch.setenv("INTERPKIT_SMOKE", text)
        assert ik.nb.smoke_mode() is True
    monkeypatch.setenv("INTERPKIT_SMOKE", "ture")
    with pytest.raises(ValueError, match=r"INTERPKIT_SMOKE='ture' is not a switch; use 1"):
        ik.nb.smoke_mode()
    assert ik.nb.smoke_mode(False) is False  # an argument wins over the environment
    with pytest.raises(ValueError, match="smoke='2' is not a switch"):
        ik.nb.smoke_mode("2")


def test_save_results_refuses_a_stem_that_is_not_a_plain_name(tmp_path, monkeypatch):
    """Defect: save_results("07_demo.json", ...) silently wrote 07_demo.json.json, and "" wrote ".json"."""
    monkeypatch.setenv("INTERPKIT_RESULTS_DIR", str(tmp_path))
    for stem in ("07_demo.json", "", "sub/07_demo"):
        with pytest.raises(ValueError, match="stem must be a plain file name"):
            ik.nb.save_results(stem, {"a": 1}, smoke=True)
    assert list(tmp_path.iterdir()) == []


def test_paper_vs_measured_reads_numpy_bools_and_refuses_bad_rows():
    """Defect: holds=np.bool_(True) next to a None showed "n/a", and a misspelt key ("mesured") gave a silent NaN cell."""
    import numpy as np

    row = {"claim": "a", "paper": "1", "measured": "2"}
    df = ik.nb.paper_vs_measured(
        [
            {**row, "holds": np.bool_(True)},
            {**row, "holds": None},
            {**row, "holds": np.float64(2) > 3},
            row,
        ]
    )
    assert df["holds"].tolist() == ["yes", "n/a", "no", "n/a"]
    with pytest.raises(
        KeyError, match=r"row 1 lacks \['measured'\] and has unknown keys \['mesured'\]"
    ):
        ik.nb.paper_vs_measured(
            [{**row, "holds": True}, {"claim": "b", "paper": "1", "mesured": "2"}]
        )
    with pytest.raises(TypeError, match=r"row 0: holds must be True, False or None, got 1; wrap"):
        ik.nb.paper_vs_measured([{**row, "holds": 1}])
    with pytest.raises(TypeError, match="row 0 must be a dict"):
        ik.nb.paper_vs_measured([("a", "1", "2", True)])


def test_check_unit_interval_accepts_an_empty_tensor():
    """Defect: an empty tensor raised torch's "min(): Expected reduction dim to be specified for input.numel() == 0"."""
    import torch

    from interpkit.checks import check_unit_interval

    assert (
        check_unit_interval(torch.empty(0, 3), "x", "scale it") is None
    )  # no error: nothing out of range


def test_resolve_device_explains_a_bad_device_and_a_missing_gpu_index(monkeypatch):
    """Defect: "gpu" raised torch's RuntimeError listing 20 device types, and "cuda:3" on a one-GPU machine was accepted."""
    import torch

    with pytest.raises(ValueError, match=r"device='gpu' is not a device; use 'cpu', 'cuda'"):
        ik.resolve_device("gpu")
    with pytest.raises(TypeError, match="device must be a string"):
        ik.resolve_device(1.5)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert ik.resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(
        ValueError, match=r"device='cuda:3' was requested but this machine has 1 CUDA device"
    ):
        ik.resolve_device("cuda:3")


def test_save_results_refuses_nan_and_names_the_key(tmp_path, monkeypatch):
    """Defect: once NaN is written as null (valid JSON), a NaN key number would have passed the
    notebook tests, which accept None for "not applicable"; save_results now refuses it."""
    import numpy as np
    import torch

    monkeypatch.setenv("INTERPKIT_RESULTS_DIR", str(tmp_path))
    with pytest.raises(ValueError, match=r"results acc, curve\[1\], nested\.t are NaN or infinite"):
        ik.nb.save_results(
            "07_demo",
            {
                "acc": float("nan"),
                "curve": np.array([0.0, np.inf]),
                "nested": {"t": torch.tensor(float("-inf")), "ok": 1.0},
            },
            smoke=True,
        )
    assert list(tmp_path.iterdir()) == []
    path = ik.nb.save_results("07_demo", {"acc": None, "curve": np.arange(2.0)}, smoke=True)
    assert json.loads(path.read_text()) == {"acc": None, "curve": [0.0, 1.0], "smoke": True}
