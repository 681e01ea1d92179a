"""Network Dissection from the command line, on one process or many (``torchrun``).

Examples::

    python -m interpkit.dissection --model efficientnet_lite0 --layers blocks.5,blocks.12 \\
        --broden /data/broden1_224 --out units.csv
    torchrun --nproc_per_node=8 -m interpkit.dissection --model torchvision:resnet50 \\
        --weights resnet50.pth --layers layer3,layer4 --broden /data/broden1_224 --out units.csv

Under ``torchrun`` every process dissects its share of the images (NCCL on GPUs, one GPU per
process from ``LOCAL_RANK``; Gloo on CPUs), the tallies are summed across processes, and rank 0
writes the units table (CSV, one row per layer and unit) and the summary (JSON, one entry per
layer) and prints progress (atomically: a reader never sees a half-written file). Models:
``efficientnet_lite0`` (ImageNet, from the installed weights package), ``torchvision:<name>``
with ``--weights`` (a state dict, read with ``weights_only=True``; nothing is downloaded), or
``vgg8:<state dict>`` (``interpkit.models.vgg8`` built with ``--num-classes``, ``--width`` and
``--in-channels`` at the dataset's image size). Images are passed in [0, 1]; torchvision models
get the ImageNet normalisation unless ``--no-normalize``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m interpkit.dissection", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument(
        "--model",
        required=True,
        help="efficientnet_lite0, torchvision:<name> (with --weights) or vgg8:<state dict file>",
    )
    ap.add_argument("--weights", help="state dict file for a torchvision model")
    ap.add_argument("--layers", required=True, help="comma-separated module names")
    ap.add_argument("--broden", required=True, help="folder of a Broden-format dataset")
    ap.add_argument("--out", required=True, help="units table (CSV) to write")
    ap.add_argument("--summary", help="summary (JSON) to write; default: next to --out")
    ap.add_argument("--quantile", type=float, default=0.005, help="top-activation quantile")
    ap.add_argument("--iou-threshold", type=float, default=0.04)
    ap.add_argument("--quantile-method", choices=["auto", "exact", "sketch"], default="auto")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: one GPU per process)")
    ap.add_argument("--no-normalize", action="store_true", help="no ImageNet normalisation")
    ap.add_argument("--num-classes", type=int, default=10, help="vgg8: output classes")
    ap.add_argument("--width", type=float, default=1.0, help="vgg8: channel multiplier")
    ap.add_argument("--in-channels", type=int, default=3, help="vgg8: input channels")
    return ap


def _load_model(
    spec: str, args: argparse.Namespace, image_size: int
) -> tuple[torch.nn.Module, object]:
    """The model and its input transform (``None``: the model normalises itself)."""
    from interpkit import models

    weights = args.weights
    if spec.startswith("vgg8:"):
        path = Path(spec.split(":", 1)[1])
        if not path.is_file():
            raise SystemExit(f"--model {spec!r}: no state dict file at {path}.")
        model = models.vgg8(args.num_classes, args.in_channels, args.width, image_size)
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except (RuntimeError, KeyError) as e:
            raise SystemExit(
                f"--model {spec!r}: the state dict does not fit vgg8(num_classes="
                f"{args.num_classes}, in_channels={args.in_channels}, width={args.width}): "
                f"{str(e).splitlines()[0]}"
            ) from None
        return model.eval(), None
    if spec == "efficientnet_lite0":
        return models.efficientnet_lite0(), None
    if spec.startswith("torchvision:"):
        model = models.torchvision_model(spec.split(":", 1)[1], weights_path=weights).eval()
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return model, (lambda x: (x - mean.to(x.device)) / std.to(x.device))
    raise SystemExit(
        f"--model {spec!r} is not known: use efficientnet_lite0, vgg8:<state dict> or "
        "torchvision:<name> (for example torchvision:resnet18 with --weights resnet18.pth)."
    )


def _start_processes(device: str | None) -> tuple[int, str | None]:
    """Join the ``torchrun`` group when launched by it; this process's rank and device."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        return 0, device
    gpu = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    if gpu:
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    dist.init_process_group("nccl" if gpu else "gloo")
    return dist.get_rank(), device


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from interpkit.data import Broden
    from interpkit.dissection import dissect
    from interpkit.dissection.core import DissectOptions

    if not Path(args.broden).is_dir():
        raise SystemExit(f"--broden {args.broden}: no such folder (a Broden-format dataset).")
    rank, device = _start_processes(args.device)
    dataset = Broden(args.broden)
    image_size = int(dataset.segmentation_batch([0])[0].shape[-1]) if len(dataset) else 224
    model, transform = _load_model(args.model, args, image_size)
    if args.no_normalize:
        transform = None
    layers = [s.strip() for s in args.layers.split(",") if s.strip()]
    if rank == 0:
        world = dist.get_world_size() if dist.is_initialized() else 1
        print(f"dissecting {layers} over {len(dataset)} images on {world} process(es)", flush=True)
    results = dissect(
        model,
        dataset,
        layers,
        quantile=args.quantile,
        iou_threshold=args.iou_threshold,
        options=DissectOptions(quantile_method=args.quantile_method),
        batch_size=args.batch_size,
        device=device,
        transform=transform,
        progress=rank == 0,
    )
    if rank == 0:
        import pandas as pd

        from interpkit.io import atomic_write_text

        out = Path(args.out)
        table = pd.concat([r.units.assign(layer=name) for name, r in results.items()])
        atomic_write_text(out, table.to_csv(index=False))
        summary = Path(args.summary) if args.summary else out.with_suffix(".summary.json")
        atomic_write_text(
            summary, json.dumps({n: r.summary() for n, r in results.items()}, indent=2, default=str)
        )
        print(f"wrote {out} ({len(table)} units) and {summary}")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
