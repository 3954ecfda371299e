"""``python -m tfxr.report``: a model's parameters, FLOPs, gradient bytes and activation
memory, and with ``--measure`` the peak memory of one training rank.

    python -m tfxr.report --model chexnet --image-size 224 --batch-size 16 --measure
    python -m tfxr.report --model dcgan --image-size 64 --json dcgan.json

(``python -m tfxr.models.report`` is the older name of this command.)  How each number is
counted or measured: :mod:`tfxr.models.report`.  The options are
:class:`tfxr.configs.ReportConfig`'s.
"""
from __future__ import annotations

import sys

from tfxr import files
from tfxr.cli import run_main
from tfxr.config import parse_config
from tfxr.configs import ReportConfig

PROG = "python -m tfxr.report"


def report(cfg: ReportConfig) -> dict:
    """Print the report (and write ``--json``); returns its numbers."""
    from tfxr.models.report import (build_for_report, count_flops, format_memory,  # lazy: TensorFlow after
                                    measure_peak_memory, memory_report, mib)        # the options are checked

    nets = build_for_report(cfg.model, cfg.image_size)
    print("\n".join(format_memory(cfg.model, nets, cfg.batch_size)))
    result = {"model": cfg.model, "image_size": cfg.image_size, "batch_size": cfg.batch_size,
              "networks": {part: {**memory_report(m, cfg.batch_size), "flops_per_image": count_flops(m)}
                           for part, m in nets.items()}}
    if cfg.measure:
        measured = measure_peak_memory(cfg.model, cfg.image_size, cfg.batch_size, cfg.steps)
        result["measured"] = measured
        print(f"  measured, one process, {cfg.steps} Adam steps at batch {cfg.batch_size}: "
              f"peak RSS {mib(measured['peak_rss_bytes'])} "
              f"(RSS {mib(measured['rss_before_training_bytes'])} before the first step)")
    if cfg.json:
        files.write_json(cfg.json, result)
    return result


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        report(parse_config(ReportConfig, argv, PROG, __doc__)[0])
        return 0
    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
