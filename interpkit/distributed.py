"""Sharding a method's data over the processes of ``torch.distributed``, and combining exactly.

Every method that runs over many images is built from statistics that combine exactly: sums
(Network Dissection's intersection and activation tallies, coupled NMF's numerators and
denominators), rows that can be gathered (a per-image score, the top tail of a unit's
activations) and mergeable sketches. With ``torch.distributed`` initialised (``torchrun``), or
with a ``process_group`` passed to a method, each process takes its share of the examples and the
shares are combined with collective operations, so that every rank ends with the result one
process would compute on all the data.

The split (:func:`shard`) is contiguous and derived by every rank in the same way from
``(n, rank, world_size)``: the first ``n % world_size`` ranks take one example more, so no example
is repeated or padded (unlike ``DistributedSampler``, which pads), shards are in data order, and a
rank may have an empty share when there are fewer examples than ranks.

Communication: ``all_reduce_sum`` moves the tensor's size per rank (a ring all-reduce sends
about twice that); ``all_gather_rows`` moves every rank's rows to every rank (padded to the
largest share). Gloo (CPU) and NCCL (GPU) both work: with NCCL the tensors travel on the rank's
CUDA device and come back where they were.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Shard", "shard"]


@dataclass(frozen=True)
class Shard:
    """This process's share of ``n`` examples.

    Attributes:
        rank: this process's rank in the group.
        world_size: the number of processes in the group.
        start: the first example of the share.
        stop: one past the last example of the share (``start == stop``: an empty share).
        group: the process group (``None``: the default group, or no distribution at all).
    """

    rank: int
    world_size: int
    start: int
    stop: int
    group: object = None

    @property
    def rows(self) -> slice:
        """The share as a slice of the examples."""
        return slice(self.start, self.stop)

    @property
    def distributed(self) -> bool:
        """Whether results must be combined across processes."""
        return self.world_size > 1

    def __len__(self) -> int:
        return self.stop - self.start


def group_size(process_group: object = None) -> tuple[int, int]:
    """``(rank, world_size)`` of ``process_group``, or of the default group when
    ``torch.distributed`` is initialised; ``(0, 1)`` otherwise."""
    if process_group is None and not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(process_group), dist.get_world_size(process_group)


def shard(n: int, process_group: object = None) -> Shard:
    """This process's contiguous share of ``n`` examples (see the module docstring).

    Args:
        n: the number of examples (images, columns of a matrix, ...).
        process_group: the group to split over; ``None`` uses the default group when
            ``torch.distributed`` is initialised and otherwise gives the whole range.

    Returns:
        A :class:`Shard`; with one process, ``Shard(0, 1, 0, n)``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer (the number of examples), got {n!r}.")
    rank, world = group_size(process_group)
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return Shard(rank, world, start, start + base + (rank < extra), process_group)


def _comm_device(group: object) -> torch.device:
    """Where a collective's tensors must live: the current CUDA device with NCCL, else the CPU."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(t: torch.Tensor, part: Shard) -> torch.Tensor:
    """The sum of ``t`` over the processes of ``part.group`` (``t`` itself with one process).

    Args:
        t: a tensor of the same shape and dtype on every rank.
        part: this process's :class:`Shard`.

    Returns:
        A new tensor (on ``t``'s device) holding the element-wise sum over ranks.
    """
    if not part.distributed:
        return t
    buf = t.detach().to(_comm_device(part.group), copy=True)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM, group=part.group)
    return buf.to(t.device)


def all_gather_rows(t: torch.Tensor, part: Shard) -> torch.Tensor:
    """Concatenate every rank's rows of ``t`` in rank order (ranks may hold different numbers of
    rows, zero included).

    Args:
        t: this rank's rows, shape ``(rows, *rest)``; ``rest`` and the dtype agree across ranks.
        part: this process's :class:`Shard`.

    Returns:
        ``(total rows, *rest)`` on ``t``'s device, the same on every rank.
    """
    if not part.distributed:
        return t
    dev = _comm_device(part.group)
    counts = torch.tensor([t.shape[0]], device=dev, dtype=torch.int64)
    every = [torch.zeros_like(counts) for _ in range(part.world_size)]
    dist.all_gather(every, counts, group=part.group)
    sizes = [int(c) for c in every]
    longest = max(sizes)
    padded = torch.zeros((longest, *t.shape[1:]), dtype=t.dtype, device=dev)
    padded[: t.shape[0]] = t.detach().to(dev)
    pieces = [torch.empty_like(padded) for _ in range(part.world_size)]
    dist.all_gather(pieces, padded, group=part.group)
    return torch.cat([p[:s] for p, s in zip(pieces, sizes)]).to(t.device)


def all_gather_objects(obj: object, part: Shard) -> list:
    """Every rank's ``obj`` (picklable, e.g. a small table), in rank order; ``[obj]`` with one
    process. Only for objects that this library made on each rank (they are unpickled)."""
    if not part.distributed:
        return [obj]
    out: list = [None] * part.world_size
    dist.all_gather_object(out, obj, group=part.group)
    return out
