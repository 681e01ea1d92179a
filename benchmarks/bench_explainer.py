"""Explainer distillation throughput against the performer's own training throughput.

Both are measured in the same process on the chapter's setting (VGG8 at width 0.25 on 64x64 RGB
images, explainer on ``features.2`` reconstructing ``features.4``, batch 64), as training images per
second of one optimiser step (forward, backward, Adam). Two explainer rates are reported:

* ``precomputed``: what ``train_explainer`` does; the performer's features are computed once, so a
  step is the explainer alone (filter loss, mask and decoder included);
* ``online``: the performer's forward pass up to ``features.4`` is added to every step (what
  training would cost if features were not cached, e.g. with data augmentation).

``ratio = explainer images/s / performer images/s`` (> 1: distilling an epoch is cheaper than
training the performer for one).
"""

from __future__ import annotations

import argparse

import torch
from _timing import median_seconds

import interpkit as ik
from interpkit import explainer as E


def rate(step, batch: int, steps: int) -> float:
    """Training images per second of one optimiser ``step`` on a batch of ``batch`` images."""
    return batch / median_seconds(step, steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--n-filters", type=int, default=16)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    dev = ik.resolve_device(args.device)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, 64, 64, device=dev)
    y = torch.randint(0, 4, (args.batch,), device=dev)

    performer = ik.models.vgg8(4, in_channels=3, width=args.width, image_size=64).to(dev)
    opt_p = torch.optim.Adam(performer.parameters(), lr=1e-3)

    def performer_step():
        performer.train()
        loss = torch.nn.functional.cross_entropy(performer(x), y)
        opt_p.zero_grad(set_to_none=True)
        loss.backward()
        opt_p.step()

    frozen = ik.models.vgg8(4, in_channels=3, width=args.width, image_size=64).to(dev)
    ik.models.freeze(frozen)
    inp, tgt = "features.2", "features.4"
    shapes = E.layer_shapes(frozen, [inp, tgt], (3, 64, 64))
    explainer = E.Explainer(
        shapes[inp], {tgt: shapes[tgt]}, n_filters=args.n_filters, input_layer=inp
    ).to(dev)
    opt_e = torch.optim.Adam(explainer.parameters(), lr=1e-3)
    feats = E.performer_features(frozen, x, [inp, tgt], device=dev, out_device=dev)
    scales = {tgt: float(feats[tgt].pow(2).mean())}
    peak = 2.0 * shapes[inp][-1] ** 2

    def explainer_step(f):
        explainer.train()
        loss, _ = E.training_step(explainer, f[inp], {tgt: f[tgt]}, scales, 0.1, 0.05, peak)
        opt_e.zero_grad(set_to_none=True)
        loss.backward()
        opt_e.step()

    def online_step():
        explainer_step(E.performer_features(frozen, x, [inp, tgt], device=dev, out_device=dev))

    r_perf, r_pre, r_onl = [], [], []
    for _ in range(args.rounds):  # interleave to cancel drift from other load on the machine
        r_perf.append(rate(performer_step, args.batch, args.steps))
        r_pre.append(rate(lambda: explainer_step(feats), args.batch, args.steps))
        r_onl.append(rate(online_step, args.batch, args.steps))
    perf, pre, onl = max(r_perf), max(r_pre), max(r_onl)
    result = {
        "device": str(dev),
        "batch": args.batch,
        "width": args.width,
        "n_filters": args.n_filters,
        "performer_images_per_s": perf,
        "explainer_images_per_s": pre,
        "explainer_online_images_per_s": onl,
        "ratio": pre / perf,
        "ratio_online": onl / perf,
    }
    print(
        f"{'device':>8} {'performer img/s':>16} {'explainer img/s':>16} {'ratio':>7} {'online img/s':>13} {'ratio':>7}"
    )
    print(f"{str(dev):>8} {perf:16.1f} {pre:16.1f} {pre / perf:7.2f} {onl:13.1f} {onl / perf:7.2f}")
    ik.io.atomic_write_json(ik.nb.results_dir() / "bench_explainer.json", result)


if __name__ == "__main__":
    main()
