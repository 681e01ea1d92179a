"""interpkit.distributed: the split every rank derives, and the collectives, run for real under
``torchrun --standalone`` with two processes (Gloo on localhost; seconds)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from interpkit import distributed as ikd

sys.path.insert(0, str(Path(__file__).resolve().parent / "distributed"))
import worker  # noqa: E402  (the scenarios, importable here for the one-process reference)

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "distributed" / "worker.py"


def run_torchrun(scenario: str, out: Path, nproc: int = 2, **env: str) -> list[dict]:
    """Run ``scenario`` of tests/distributed/worker.py on ``nproc`` processes; every rank's result."""
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("this torch build has no Gloo backend for torch.distributed")
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        **{k: str(v) for k, v in env.items()},
    }
    cmd = [torchrun, "--standalone", f"--nproc_per_node={nproc}", str(WORKER), scenario, str(out)]
    proc = subprocess.run(cmd, env=environment, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return [torch.load(out / f"{scenario}-rank{r}.pt", weights_only=True) for r in range(nproc)]


@pytest.mark.parametrize("n,world", [(10, 3), (2, 3), (0, 2), (7, 1), (6, 2)])
def test_shards_cover_every_example_once_in_order(n, world, monkeypatch):
    parts = []
    for rank in range(world):
        monkeypatch.setattr(ikd, "group_size", lambda g, r=rank: (r, world))
        parts.append(ikd.shard(n))
    assert [i for p in parts for i in range(p.start, p.stop)] == list(range(n))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_one_process_shard_is_everything():
    part = ikd.shard(5)
    assert (part.start, part.stop, part.world_size, part.distributed) == (0, 5, 1, False)
    t = torch.arange(3.0)
    assert ikd.all_reduce_sum(t, part) is t and ikd.all_gather_rows(t, part) is t


@pytest.mark.parametrize("bad", [-1, 2.0, True, "3"])
def test_shard_refuses_a_bad_count(bad):
    with pytest.raises(ValueError, match="non-negative integer"):
        ikd.shard(bad)


@pytest.mark.parametrize("n", [5, 1])  # uneven split; with n=1 the second rank's share is empty
def test_collectives_under_torchrun(tmp_path, n):
    results = run_torchrun("primitives", tmp_path, N_EXAMPLES=n)
    assert [r["shard"] for r in results] == [(0, (n + 1) // 2, 2), ((n + 1) // 2, n, 2)]
    expect = torch.arange(n, dtype=torch.float64)[:, None] * torch.ones(1, 3)
    for r in results:
        torch.testing.assert_close(r["sum"], expect.sum(0))
        torch.testing.assert_close(r["rows"], expect)
        assert [o["n"] for o in r["objects"]] == [(n + 1) // 2, n // 2]


def _same(got: dict, ref: dict) -> None:
    assert set(got) == set(ref)
    for nm in ref:
        g, r = got[nm], ref[nm]
        assert g["n_images"] == r["n_images"] and g["method"] == r["method"]
        for k in ("thresholds", "iou", "intersection", "activation", "unit_pixels"):
            torch.testing.assert_close(g[k], r[k], rtol=1e-6, atol=1e-7, msg=f"{nm} {k}")
        assert torch.equal(g["label_pixels"], r["label_pixels"])


# (source, images, processes): uneven splits; n=1 on 2 and n=2 on 3 leave a rank empty
@pytest.mark.parametrize(
    "source,n,nproc", [("model", 7, 2), ("array", 7, 2), ("model", 1, 2), ("array", 2, 3)]
)
def test_dissect_exact_equals_one_process(tmp_path, source, n, nproc):
    ref = worker.run_dissect(source, n, "exact")
    assert all(r["method"] == "exact" for r in ref.values())
    ranks = run_torchrun(
        "dissection", tmp_path, nproc=nproc, SOURCE=source, N_IMAGES=n, METHOD="exact"
    )
    for got in ranks:
        _same(got, ref)
        # from the same feature maps the exact mode gives one process's thresholds bit for bit
        # (a model's maps may differ in the last bit with the batch and thread count)
        for nm in ref if source == "array" else ():
            assert torch.equal(got[nm]["thresholds"], ref[nm]["thresholds"])


@pytest.mark.parametrize("source,n,nproc", [("model", 9, 2)])
def test_dissect_sketch_within_its_bound(tmp_path, source, n, nproc):
    exact = worker.run_dissect(source, n, "exact")
    ranks = run_torchrun(
        "dissection", tmp_path, nproc=nproc, SOURCE=source, N_IMAGES=n, METHOD="sketch"
    )
    for got in ranks:
        for nm in exact:
            g = got[nm]
            assert g["method"] == "sketch"
            assert torch.equal(g["thresholds"], ranks[0][nm]["thresholds"])  # same on every rank
            gap = (g["thresholds"].double() - exact[nm]["thresholds"].double()).abs()
            assert bool((gap <= g["error"] + 1e-6).all()), (nm, gap.max(), g["error"].min())


def _cli(tmp_path: Path, launcher: list[str], out: Path) -> None:
    cmd = [
        *launcher,
        "-m",
        "interpkit.dissection",
        *("--model", f"vgg8:{tmp_path / 'vgg8.pt'}", "--width", "0.25"),
        *("--layers", "features.1,features.3", "--broden", str(tmp_path / "broden")),
        *("--out", str(out), "--quantile", "0.05", "--quantile-method", "exact"),
        *("--batch-size", "3"),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"CLI failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.stdout.count("wrote ") == 1  # rank 0 alone reports


def test_cli_one_process_and_torchrun_match_the_library(tmp_path):
    import pandas as pd

    from interpkit import models
    from interpkit.data import Broden, ConceptWorld
    from interpkit.dissection import dissect
    from interpkit.dissection.core import DissectOptions

    if not torch.distributed.is_gloo_available():
        pytest.skip("this torch build has no Gloo backend for torch.distributed")
    ConceptWorld(size=32, seed=5).to_broden(tmp_path / "broden", 7)
    torch.manual_seed(0)
    net = models.vgg8(10, 3, 0.25, 32).eval()
    torch.save(net.state_dict(), tmp_path / "vgg8.pt")
    ref = dissect(
        net,
        Broden(tmp_path / "broden"),
        ["features.1", "features.3"],
        quantile=0.05,
        batch_size=3,
        device="cpu",
        progress=False,
        options=DissectOptions(quantile_method="exact"),
    )
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    _cli(tmp_path, [sys.executable], tmp_path / "one.csv")
    _cli(tmp_path, [torchrun, "--standalone", "--nproc_per_node=2"], tmp_path / "two.csv")
    for name in ("one", "two"):
        table = pd.read_csv(tmp_path / f"{name}.csv")
        assert (tmp_path / f"{name}.summary.json").is_file()
        for layer, r in ref.items():
            got = table[table["layer"] == layer]
            assert len(got) == r.num_units
            np.testing.assert_allclose(got["iou"].to_numpy(), r.units["iou"].to_numpy(), atol=1e-6)
            assert list(got["label"]) == list(r.units["label"])
