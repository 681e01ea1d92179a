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


SCENARIOS = {"primitives": primitives}


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
