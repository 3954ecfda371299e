"""The benchmark's options: one checked config dataclass per subcommand (``tfxr.config``).

Every subcommand is parsed by :func:`tfxr.config.parse_config` (flags, ``--config
FILE.yaml``, ``--set key=value``), so bounds and allowed values are declared once with
``option()`` and a bad value is one ``tfxr: error:`` line.  List options take
comma-separated values (``--np 1,2``, ``--precision fp32,bf16``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from tfxr.benchmark.analysis import INPUTS, LAUNCHERS, MODELS, PRECISIONS
from tfxr.benchmark.suites import CONVERT_SOURCES, SECTIONS
from tfxr.config import apply_override, from_dict, option
from tfxr.errors import ConfigError

ON_OFF = ("on", "off")


@dataclass
class HorovodSettings:
    """Horovod's tuning variables an extra ranks measurement may set (``--rank-env NAME=VALUE``)."""

    HOROVOD_FUSION_THRESHOLD: int | None = option(None, minimum=0)     # bytes per fused allreduce
    HOROVOD_CYCLE_TIME: float | None = option(None, minimum=0.0)       # ms between background cycles
    HOROVOD_CACHE_CAPACITY: int | None = option(None, minimum=0)       # response cache entries
    HOROVOD_CPU_OPERATIONS: str | None = option(None, choices=("mpi", "gloo", "ccl"))
    HOROVOD_HIERARCHICAL_ALLREDUCE: bool | None = None


def rank_env(assignment: str) -> tuple[tuple[str, str], ...]:
    """``NAME=VALUE`` -> the checked (NAME, value) environment of one ranks measurement."""
    data: dict = {}
    try:
        apply_override(data, HorovodSettings, assignment)
        settings = from_dict(HorovodSettings, data)
    except ConfigError as e:
        raise ConfigError(f"--rank-env {assignment}: {e}") from None
    env = []
    for name, value in dataclasses.asdict(settings).items():
        if value is not None:
            env.append((name, str(int(value)) if isinstance(value, bool) else str(value)))
    return tuple(env)


@dataclass
class _Common:
    out: str = "benchmarks/results"      # directory for the JSON/markdown/PNG results


@dataclass
class _Timed(_Common):
    steps: int = option(20, minimum=1)          # steps per timed window
    repeats: int = option(5, minimum=3)         # timed windows: at least 3 for a median and a spread
    warmup: int = option(5, minimum=1)          # untimed steps first (at least one: tracing)


@dataclass
class _Ceiling(_Timed):
    clock_ghz: float | None = option(None, minimum=0.01)   # core clock for the nominal peak (default: the OS's)
    flops_per_cycle: int | None = option(None, minimum=1)  # fp32 FLOPs/cycle/core (default: from the CPU flags)
    gemm_size: int = option(2048, minimum=0)               # the GEMM measured as the ceiling; 0: nominal only


@dataclass
class TrainOptions(_Ceiling):
    """``train``: settings side by side, then scaling baselines for --np with the first value of each."""

    model: str = option("tb_cnn", choices=MODELS)
    data: str = ""                                   # TFRecord directory (needed by --input pipeline)
    image_size: int = option(0, minimum=0)           # 0: the data's size, else 128
    batch_size: int = option(32, minimum=1)          # per process
    np: list[int] = option(lambda: [1, 2], minimum=1)              # worker counts of the scaling baselines
    input: list[str] = option(lambda: ["random"], choices=INPUTS)  # random: one batch in memory (model only)
    precision: list[str] = option(lambda: ["fp32"], choices=PRECISIONS)
    onednn: list[str] = option(lambda: ["on"], choices=ON_OFF)
    xla: list[str] = option(lambda: ["off"], choices=ON_OFF)
    launcher: list[str] = option(lambda: ["mpirun"], choices=LAUNCHERS)
    rank_env: list[str] = option(list)   # NAME=VALUE: one extra ranks measurement each (HorovodSettings)

    def rank_env_settings(self) -> list[tuple]:
        return [rank_env(a) for a in self.rank_env]


@dataclass
class SuiteOptions(_Ceiling):
    """``suite``: the targets of issues 10 and 19 side by side (what `make benchmark` runs)."""

    data: str = ""                          # TFRecords of the pipeline variants (default: phantoms)
    images: int = option(1600, minimum=16)  # phantoms to write when --data is not given
    loop_steps: int = option(40, minimum=1)     # steps per epoch of the tfxr.train loops (accumulate: a multiple of 4)
    launcher: list[str] = option(lambda: ["mpirun", "gloo"], choices=LAUNCHERS)
    only: list[str] = option(list, choices=SECTIONS)    # run only these sections ([]: all); also --sections
    variants: str = option("all", choices=("all", "base"))   # base: only the first setting (a quick check)
    convert_source: list[str] = option(lambda: ["png", "dicom"], choices=tuple(CONVERT_SOURCES))   # images converted
    convert_images: int = option(400, minimum=8)        # images per conversion run

    FLAG_ALIASES: ClassVar[dict[str, str]] = {"sections": "only"}   # --sections a,b == --only a,b


@dataclass
class ConvertOptions(_Common):
    """``convert``: conversion images/s per pool-worker / MPI-rank count, beside the bound;
    the converter's arguments after ``--``."""

    workers: list[int] = option(lambda: [1, 2], minimum=1)
    np: list[int] = option(lambda: [1], minimum=1)
    repeats: int = option(3, minimum=1)     # conversions per setting (median and spread)


@dataclass
class InputOptions(_Timed):
    """``input``: the input pipeline alone, TFRecord vs raw files, augmentation off/on."""

    steps: int = option(30, minimum=1)
    data: str = ""                          # TFRecord directory (required)
    raw: str = ""                           # raw index dir (tfrecords write --format raw) of the same images
    split: str = option("train", choices=("train", "val", "test"))
    batch_size: int = option(32, minimum=1)
    image_size: int = option(0, minimum=0)


@dataclass
class ProfileOptions(_Common):
    """``profile``: the TF profiler on a few training steps, self time per op type."""

    model: str = option("densenet121", choices=MODELS + ("densenet121",))   # densenet121 = chexnet
    image_size: int = option(224, minimum=8)
    batch_size: int = option(16, minimum=1)
    precision: str = option("fp32", choices=PRECISIONS)
    onednn: str = option("on", choices=ON_OFF)
    steps: int = option(3, minimum=1)        # profiled steps
    warmup: int = option(2, minimum=1)       # untimed steps first (tracing, oneDNN primitives)


@dataclass
class TimelineOptions(_Common):
    """``timeline FILE``: a Horovod timeline (``tfxr.train --timeline FILE``) summarised per step."""

    file: str = option("", positional="?", help="the timeline JSON (tfxr.train --timeline FILE)")


COMMANDS = {"suite": SuiteOptions, "train": TrainOptions, "convert": ConvertOptions, "input": InputOptions,
            "timeline": TimelineOptions, "profile": ProfileOptions}
