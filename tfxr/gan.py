"""``python -m tfxr.gan``: a DCGAN for the minority class, and balancing with its images.

    python -m tfxr.gan train --data tfrec/pneu --out runs/gan --epochs 50 --optimizer rmsprop
    mpirun -np 4 python -m tfxr.gan train --data tfrec/pneu --out runs/gan --epochs 50
    python -m tfxr.gan sample --generator runs/gan/generator.keras --n 64 --out samples/
    python -m tfxr.gan balance --data tfrec/pneu --generator runs/gan/generator.keras \
        --out tfrec/pneu-balanced --target-ratio 0.5
    python -m tfxr.gan compare-optimizers --data tfrec/pneu --out runs/gan-cmp --epochs 50

``train`` takes the same config system as ``tfxr.train`` (``--config``, ``--set``, one flag
per field; ``python -m tfxr.gan train --help``).  By default it trains on the minority
class of the training split.  Rank 0 writes ``OUT/history.json``, ``losses.png``,
``samples/epoch-NNNN.png`` (fixed noise), ``checkpoints/`` (``--resume``) and
``generator.keras``.
"""
from __future__ import annotations

import argparse
import os
import sys

COMMANDS = ("train", "sample", "balance", "compare-optimizers")


def train(argv: list[str]) -> int:
    from tfxr.config import parse_config
    from tfxr.training.gan import GanConfig, GanTrainer

    cfg, _ = parse_config(GanConfig, argv, "python -m tfxr.gan train", __doc__)
    GanTrainer(cfg).fit()
    return 0


def sample(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m tfxr.gan sample",
                                description="Write N generated images as PNG files and one grid.")
    p.add_argument("--generator", required=True, help="generator.keras written by `tfxr.gan train`")
    p.add_argument("--n", type=int, default=64, help="number of images")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--prefix", default="sample", help="file name prefix")
    args = p.parse_args(argv)
    from tfxr import io
    from tfxr.data.balance import generate_images, load_generator
    from tfxr.data.imageio import encode_png
    from tfxr.errors import ConfigError
    from tfxr.training.gan import image_grid

    if args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    generator = load_generator(args.generator)
    os.makedirs(args.out, exist_ok=True)
    images = generate_images(generator, args.n, args.seed)
    for i, img in enumerate(images):
        io.write_bytes(os.path.join(args.out, f"{args.prefix}-{i:05d}.png"), encode_png(img))
    io.write_bytes(os.path.join(args.out, "grid.png"),
                   encode_png(image_grid(images[:64, ..., None].astype("float32") / 127.5 - 1.0)))
    print(f"tfxr: wrote {args.n} images and grid.png to {args.out}", file=sys.stderr)
    return 0


def balance(argv: list[str]) -> int:
    from tfxr.data.balance import main as balance_main

    return balance_main(argv)


def compare_optimizers(argv: list[str]) -> int:
    from tfxr.training.gan_compare import main as compare_main

    return compare_main(argv)


def main(argv: list[str] | None = None) -> int:
    from tfxr.cli import run_main
    from tfxr.errors import ConfigError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    bodies = {"train": train, "sample": sample, "balance": balance, "compare-optimizers": compare_optimizers}

    def body():
        if command not in bodies:
            raise ConfigError(f"unknown command {command!r} (allowed: {', '.join(COMMANDS)})")
        return bodies[command](rest)
    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
