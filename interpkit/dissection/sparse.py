"""The sparse fast path of the tally: the pixels where a unit's bilinearly upsampled map exceeds
its threshold, computed only in the tiles whose source cells can exceed it, and exactly equal to
thresholding the dense ``F.interpolate`` maps (:func:`upsample_masks`)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def upsample_masks(
    maps: torch.Tensor | np.ndarray,
    thresholds: torch.Tensor | np.ndarray | float,
    size: tuple[int, int],
) -> torch.Tensor:
    """Binary unit masks ``up(A) > T``, as :func:`dissect` counts them.

    Args:
        maps: feature maps (..., h, w), upsampled bilinearly (align_corners=False) to ``size``.
        thresholds: broadcast against the leading axes (e.g. (units,) for (N, units, h, w)).
        size: the output resolution (sh, sw).

    Returns:
        A bool tensor (..., sh, sw); a pixel counts only if one of its source cells is above ``T``.
    """
    m = (
        torch.as_tensor(np.asarray(maps) if not isinstance(maps, torch.Tensor) else maps)
        .detach()
        .float()
    )

    def up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(
            x.reshape(-1, 1, *x.shape[-2:]), size=tuple(size), mode="bilinear", align_corners=False
        ).reshape(*x.shape[:-2], *size)

    t = torch.as_tensor(thresholds, dtype=m.dtype, device=m.device)
    t = t.reshape(*t.shape, 1, 1) if t.ndim else t
    return (up(m) > t) & (up((m > t).float()) > 0)


class _Axis:
    """One axis of a bilinear resampling ``n_in -> n_out`` (align_corners=False), cut into pieces.

    Output positions sharing the source pair ``(r, min(r + 1, n_in - 1))`` form band ``r``; bands
    are
    cut into *pieces* of at most ``ceil(n_out / n_in)`` positions so that tiles have similar sizes.
    Source indices and weights are computed like PyTorch's kernel (bit-identical weights).
    """

    def __init__(self, n_in: int, n_out: int, dev: torch.device) -> None:
        scale = np.float32(n_in) / np.float32(n_out)
        src = (np.float64(scale) * (np.arange(n_out) + 0.5) - 0.5).astype(np.float32)
        src = np.maximum(src, np.float32(0))
        i0 = np.minimum(src.astype(np.int64), n_in - 1)
        l1 = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
        l0 = (np.float32(1) - l1).astype(np.float32)
        start = np.searchsorted(i0, np.arange(n_in), side="left")
        length = np.searchsorted(i0, np.arange(n_in), side="right") - start
        size = max(1, -(-n_out // n_in))
        band, pstart, plen = [], [], []
        for r in range(n_in):  # a few dozen bands, built once per layer geometry
            for o in range(0, int(length[r]), size):
                band.append(r)
                pstart.append(int(start[r]) + o)
                plen.append(min(size, int(length[r]) - o))
        band_a, pstart_a, plen_a = np.array(band), np.array(pstart), np.array(plen)
        counts = np.bincount(band_a, minlength=n_in)
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        k = np.arange(size)[None]
        idx = np.minimum(pstart_a[:, None] + k, n_out - 1)
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a)).to(dev)  # noqa: E731
        self.n_in, self.n_out, self.size = n_in, n_out, size
        self.npieces, self.first = t(counts), t(first)  # per band
        self.start = t(pstart_a)  # per piece
        valid = k < plen_a[:, None]
        # positions past the end of a short piece get NaN weights: their values compare False
        self.w0 = t(
            np.where(valid, l0[idx], np.nan).astype(np.float32)
        )  # per piece, (pieces, size)
        self.w1 = t(np.where(valid, l1[idx], np.nan).astype(np.float32))
        self.empty_bands = bool((counts == 0).any())
        self.has_band = t(counts > 0)


class _Geometry:
    """Bilinear resampling of (h, w) maps to (sh, sw) as tiles: a tile (row piece x column piece) is
    interpolated from one 2 x 2 block of source cells."""

    def __init__(self, h: int, w: int, sh: int, sw: int, dev: torch.device) -> None:
        self.h, self.w, self.sh, self.sw = h, w, sh, sw
        self.y, self.x = _Axis(h, sh, dev), _Axis(w, sw, dev)
        # |our float32 value - F.interpolate's| <= margin_rel * max |source cell|: the sum of four
        # float32
        # products in another order differs by < 4 ulps (8 ulps allowed), and a device whose weights
        # differ by one ulp of the source coordinate moves each of the two lambdas by that much
        self.margin_rel = 2 * float(np.spacing(np.float32(max(h, w)))) + 1e-6


def _nonzero(mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``mask.nonzero(as_tuple=True)``; on the CPU through NumPy, which is many times faster."""
    if mask.device.type == "cpu":
        return tuple(torch.from_numpy(i) for i in np.nonzero(mask.numpy()))
    return mask.nonzero(as_tuple=True)


def _active_pixels(
    acts: torch.Tensor, thr: torch.Tensor, geom: _Geometry, chunk_pixels: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixels where ``F.interpolate(acts, (sh, sw), bilinear) > thr[u]``, exactly, as ``(b, u,
    y * sw + x)``, unsorted and without duplicates.

    Only tiles whose source cells can exceed the threshold are evaluated (a small fraction, since
    the threshold is a top quantile), and in them only the rows whose bound can. Values are
    computed in float32 from the 2 x 2 source cells; pixels within a rounding margin of the
    threshold are settled with ``F.interpolate`` on their whole map, so the result equals
    thresholding the dense maps (keeping only pixels with a source cell above ``thr``, like
    :func:`upsample_masks`).
    """
    acts = acts.contiguous()
    tiles = _expand_pieces(*_candidate_tiles(acts, thr, geom), geom)
    step = max(1, int(chunk_pixels) // (geom.y.size * geom.x.size))
    out: list[tuple[torch.Tensor, ...]] = []
    for s in range(0, len(tiles[0]), step):
        out.extend(_tile_pixels(acts, thr, geom, tuple(t[s : s + step] for t in tiles)))
    if not out:
        e = torch.zeros(0, dtype=torch.long, device=acts.device)
        return e, e, e
    return tuple(torch.cat([o[k] for o in out]) for k in range(3))  # type: ignore[return-value]


def _candidate_tiles(
    acts: torch.Tensor, thr: torch.Tensor, geom: _Geometry
) -> tuple[torch.Tensor, ...]:
    """Band tiles ``(b, u, r, c)`` that may hold a pixel above ``thr``.

    A pixel's value is a convex combination of its tile's 2 x 2 source cells; ours differs from
    F.interpolate's by at most rel * max |cell of the tile|. A tile can therefore only hold a pixel
    above ``thr`` if one of its cells x has x + rel * max(|x|, n) > thr, where n bounds the size of
    the map's negative values (0 after a ReLU).
    """
    rel = geom.margin_rel
    if float(acts.min()) >= 0:  # x * (1 + rel) > thr implies x > thr / (1 + 2 rel)
        cell = acts > (thr / (1 + 2 * rel))[None, :, None, None]
    else:
        neg = (-acts.amin(dim=(2, 3))).clamp_(min=0)  # (B, U)
        cell = (
            acts + rel * torch.maximum(acts.abs(), neg[:, :, None, None]) > thr[None, :, None, None]
        )
    # a cell at (r, c) is a source of the tiles (r - 1 | r, c - 1 | c)
    cand = cell.clone()
    cand[:, :, :-1, :] |= cell[:, :, 1:, :]
    cell = cand.clone()
    cell[:, :, :, :-1] |= cand[:, :, :, 1:]
    gy, gx = geom.y, geom.x
    if gy.empty_bands or gx.empty_bands:
        cell &= gy.has_band[None, None, :, None] & gx.has_band[None, None, None, :]
    return _nonzero(cell)


def _expand_pieces(
    b: torch.Tensor, u: torch.Tensor, r: torch.Tensor, c: torch.Tensor, geom: _Geometry
) -> tuple[torch.Tensor, ...]:
    """Every band tile expanded into its pieces (most bands have one piece): ``(b, u, r, c, pr,
    pc)`` with the row and column piece indices."""
    gy, gx = geom.y, geom.x
    dev = b.device
    npr, npc = gy.npieces.index_select(0, r), gx.npieces.index_select(0, c)
    count = npr * npc
    if bool((count != 1).any()):
        rep = torch.repeat_interleave(torch.arange(len(r), device=dev), count)
        j = torch.arange(len(rep), device=dev) - torch.repeat_interleave(
            torch.cumsum(count, 0) - count, count
        )
        b, u, r, c, npc = (t.index_select(0, rep) for t in (b, u, r, c, npc))
        pr, pc = gy.first.index_select(0, r) + j // npc, gx.first.index_select(0, c) + j % npc
    else:
        pr, pc = gy.first.index_select(0, r), gx.first.index_select(0, c)
    return b, u, r, c, pr, pc


def _tile_pixels(
    acts: torch.Tensor, thr: torch.Tensor, geom: _Geometry, tiles: tuple[torch.Tensor, ...]
) -> list[tuple[torch.Tensor, ...]]:
    """The pixels above ``thr`` in one chunk of tiles: ``[(b, u, pos), ...]``."""
    _, U, h, w = acts.shape
    flat = acts.view(-1)
    gy, gx = geom.y, geom.x
    R, C = gy.size, gx.size
    tb, tu, rr, cc, py, px = tiles
    t0 = ((tb * U + tu) * h + rr) * w + cc
    dr, dc = (rr < h - 1).long() * w, (cc < w - 1).long()
    a00, a01 = flat.index_select(0, t0), flat.index_select(0, t0 + dc)
    a10, a11 = flat.index_select(0, t0 + dr), flat.index_select(0, t0 + dr + dc)
    m = geom.margin_rel * torch.maximum(
        torch.maximum(a00.abs(), a01.abs()), torch.maximum(a10.abs(), a11.abs())
    )
    t = thr.index_select(0, tu)
    wx0, wx1 = gx.w0.index_select(0, px), gx.w1.index_select(0, px)  # (n, C), NaN past the end
    row0 = wx0 * a00[:, None] + wx1 * a01[:, None]  # along x, source row r
    row1 = wx0 * a10[:, None] + wx1 * a11[:, None]  # along x, source row r + 1
    wy0, wy1 = gy.w0.index_select(0, py), gy.w1.index_select(0, py)  # (n, R)
    # output row k of a tile: wy0[k] * row0 + wy1[k] * row1 <= wy0[k] * max(row0) + wy1[k] *
    # max(row1)
    ninf = -math.inf
    bound = wy0 * row0.nan_to_num(nan=ninf).amax(1, keepdim=True) + wy1 * row1.nan_to_num(
        nan=ninf
    ).amax(1, keepdim=True)
    ti, ky = _nonzero(bound > (t - 2 * m)[:, None])
    kr = ti * R + ky
    v = wy0.view(-1).index_select(0, kr)[:, None] * row0.index_select(0, ti) + wy1.view(
        -1
    ).index_select(0, kr)[:, None] * row1.index_select(0, ti)  # (rows, C)
    j, kx = _nonzero(v > (t - m).index_select(0, ti)[:, None])  # maybe above thr
    tj = ti.index_select(0, j)
    sure = v.view(-1).index_select(0, j * C + kx) > (t + m).index_select(0, tj)  # certainly above
    base = gy.start.index_select(0, py) * geom.sw + gx.start.index_select(0, px)
    pos = base.index_select(0, tj) + ky.index_select(0, j) * geom.sw + kx
    qb, qu = tb.index_select(0, tj), tu.index_select(0, tj)
    if bool(sure.all()):
        return [(qb, qu, pos)]
    # within rounding distance of thr: settle these pixels with F.interpolate's own values
    (idx,), (amb,) = _nonzero(sure), _nonzero(~sure)
    ab, au, ap = (z.index_select(0, amb) for z in (qb, qu, pos))
    return [
        tuple(z.index_select(0, idx) for z in (qb, qu, pos)),
        _settle(acts, thr, geom, ab, au, ap),
    ]


def _settle(
    acts: torch.Tensor,
    thr: torch.Tensor,
    geom: _Geometry,
    ab: torch.Tensor,
    au: torch.Tensor,
    ap: torch.Tensor,
) -> tuple[torch.Tensor, ...]:
    """The ambiguous pixels ``(ab, au, ap)`` that are above ``thr`` in the dense maps."""
    B, U, h, w = acts.shape
    S = geom.sh * geom.sw
    maps, inv = torch.unique(ab * U + au, return_inverse=True)
    src = acts.view(B * U, 1, h, w)[maps]
    up, hit = (
        F.interpolate(z, size=(geom.sh, geom.sw), mode="bilinear", align_corners=False).view(-1)
        for z in (src, (src > thr.index_select(0, maps % U)[:, None, None, None]).float())
    )
    sel = inv * S + ap
    (on,) = _nonzero(
        (up.index_select(0, sel) > thr.index_select(0, au)) & (hit.index_select(0, sel) > 0)
    )
    return tuple(z.index_select(0, on) for z in (ab, au, ap))
