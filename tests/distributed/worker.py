"""Run by ``torchrun --standalone --nproc_per_node=N`` from tests/test_distributed.py: one scenario
on every rank (Gloo, localhost), each rank saving what it computed to ``OUT/<scenario>-rank<r>.pt``
for the test to compare with one process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from interpkit import distributed as ikd


def primitives(out: Path, rank: int) -> dict:
    part = ikd.shard(int(os.environ["N_EXAMPLES"]))
    rows = torch.arange(part.start, part.stop, dtype=torch.float64)[:, None] * torch.ones(1, 3)
    return {
        "shard": (part.start, part.stop, part.world_size),
        "sum": ikd.all_reduce_sum(rows.sum(0), part),
        "rows": ikd.all_gather_rows(rows, part),
        "objects": ikd.all_gather_objects({"rank": rank, "n": len(part)}, part),
    }


def build(source: str, n: int) -> tuple:
    """The dissection inputs every test builds the same way: ``(source, dataset, layers)`` on
    ``n`` concept-world images; ``source`` is ``"model"`` (a tiny seeded conv net, two layers)
    or ``"array"`` (seeded random feature maps, one layer)."""
    import numpy as np
    from torch import nn

    import interpkit as ik

    ds = ik.data.ConceptWorld(size=32, seed=5).as_broden(n)
    if source == "model":
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, stride=2, padding=1)
        )
        return net, ds, ["0", "2"]
    acts = np.random.default_rng(3).gamma(1.0, 1.0, size=(n, 5, 4, 4)).astype(np.float32)
    return {"feat": acts}, ds, None


def summarise(results: dict) -> dict:
    """The numbers a distributed dissection must reproduce, per layer."""
    out = {}
    for nm, r in results.items():
        err = r.threshold_error
        out[nm] = {
            "thresholds": torch.as_tensor(r.thresholds),
            "iou": torch.as_tensor(r.iou),
            "intersection": torch.as_tensor(r.intersection),
            "activation": torch.as_tensor(r.activation),
            "unit_pixels": torch.as_tensor(r.unit_pixels),
            "label_pixels": torch.as_tensor(r.label_pixels),
            "n_images": r.n_images,
            "method": r.threshold_method,
            "error": None if err is None else torch.as_tensor(err),
        }
    return out


def run_dissect(source: str, n: int, method: str) -> dict:
    """``dissect`` of :func:`build`'s inputs (one process, or this process's share)."""
    from interpkit.dissection import dissect
    from interpkit.dissection.core import DissectOptions

    src, ds, layers = build(source, n)
    res = dissect(
        src,
        ds,
        layers,
        quantile=0.05,
        batch_size=3,
        device="cpu",
        progress=False,
        options=DissectOptions(quantile_method=method, sketch_bins=64),
    )
    return summarise(res)


def dissection(out: Path, rank: int) -> dict:
    return run_dissect(os.environ["SOURCE"], int(os.environ["N_IMAGES"]), os.environ["METHOD"])


SCENARIOS = {"primitives": primitives, "dissection": dissection}


def main() -> None:
    scenario, out = sys.argv[1], Path(sys.argv[2])
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    result = SCENARIOS[scenario](out, rank)
    torch.save(result, out / f"{scenario}-rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
