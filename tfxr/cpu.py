"""CPU facts and CPU settings: threads per process, the fp32 FLOP ceiling, bf16 advice.

Why a module of its own: on a CPU node the speed of a Horovod job depends on every
process using *its* cores and no others.  The settings tfxr applies, and why:

* oneDNN on (``TF_ENABLE_ONEDNN_OPTS=1``, set in ``tfxr/__init__.py`` before TensorFlow
  is imported; export ``TF_ENABLE_ONEDNN_OPTS=0`` to turn it off).  TensorFlow 2.18
  enables its oneDNN kernels by default only on some Intel CPUs; on an AMD EPYC (Zen 4)
  it was off and turning it on measured 1.3x (DenseNet121) to 1.4-1.9x (tb_cnn) faster.
* Intra-op threads = the cores this process owns (:func:`process_cores`): all of its
  CPU affinity mask when ``mpirun --bind-to core`` (or ``taskset``) gave it its own
  cores, else the node's cores divided by the ranks on the node.  ``TFXR_CPU_THREADS``
  overrides (the exactness tests use 1 so that every process reduces in the same order).
* Inter-op threads = 2 (``TFXR_INTER_OP_THREADS`` overrides): one runs the chain of
  ops, the second lets an asynchronous op (Horovod's allreduce, the input iterator) be
  dispatched meanwhile; more only contend for the same cores.
* ``OMP_NUM_THREADS`` = the same core count, for the OpenMP/BLAS libraries of child
  processes (TensorFlow's own oneDNN runs on its Eigen thread pool and ignores it).
* Mixed precision (bf16) on a CPU: oneDNN has native bf16 kernels for AMX tiles
  (``amx_bf16``) and for AVX-512 BF16 dot products (``avx512_bf16``); without either,
  every bf16 op is converted to fp32 and back.  Measured, bf16 against fp32 (oneDNN on):
  faster with AMX (Intel Xeon); on AMD EPYCs with AVX-512 BF16 and no AMX both much
  slower (DenseNet121 128 px, an earlier revision) and faster (tb_cnn, DenseNet121 224 px)
  -- so :func:`mixed_precision_problem` reads the CPU's flags and, unless AMX is there,
  says before a run starts how to measure it on this machine (``tfxr.benchmark``).
* XLA (``--set xla=true``) stays off by default on CPU: the tb_cnn step measured 24x
  slower under ``jit_compile=True`` (BENCHMARKS.md, Intel Xeon; 19x on an AMD EPYC);
  ``python -m tfxr.benchmark train --xla off,on`` repeats the comparison.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

#: the /proc/cpuinfo flags of oneDNN's native bf16 paths: AMX tiles, AVX-512 BF16 dot products
BF16_FLAGS = ("amx_bf16", "avx512_bf16")

#: how a user measures bf16 against fp32 on their own machine (same model, size, run)
BF16_MEASUREMENT = "python -m tfxr.benchmark train --model MODEL --image-size SIZE --precision fp32,bf16"


@dataclass(frozen=True)
class CpuInfo:
    """What /proc/cpuinfo says about this machine (the first processor entry)."""

    model_name: str = "unknown"
    vendor: str = "unknown"
    family: int = 0
    model: int = 0
    mhz: float = 0.0
    logical_cpus: int = 1
    flags: frozenset = field(default_factory=frozenset)

    @property
    def has_amx_bf16(self) -> bool:
        return "amx_bf16" in self.flags

    @property
    def has_avx512_bf16(self) -> bool:
        return "avx512_bf16" in self.flags


def read_cpuinfo(path: str = "/proc/cpuinfo") -> CpuInfo:
    """Parse ``path`` (Linux); a CpuInfo with 'unknown' fields where it is unreadable."""
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError:
        return CpuInfo(logical_cpus=os.cpu_count() or 1)
    first = text.split("\n\n")[0]
    fields = {}
    for line in first.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    processors = len(re.findall(r"^processor\s*:", text, flags=re.M)) or (os.cpu_count() or 1)
    return CpuInfo(model_name=fields.get("model name", "unknown"), vendor=fields.get("vendor_id", "unknown"),
                   family=int(fields.get("cpu family", 0) or 0), model=int(fields.get("model", 0) or 0),
                   mhz=float(fields.get("cpu MHz", 0) or 0), logical_cpus=processors,
                   flags=frozenset(fields.get("flags", "").split()))


def clock_ghz(info: CpuInfo, cpufreq: str = "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"
              ) -> tuple[float, str]:
    """The clock used for the ceiling and where it came from.

    The highest frequency cpufreq reports (boost) when the kernel exposes it, else the
    ``cpu MHz`` of /proc/cpuinfo (in a VM usually the nominal TSC clock).
    """
    try:
        with open(cpufreq) as fh:
            return int(fh.read().strip()) / 1e6, f"{cpufreq} (highest boost clock)"
    except (OSError, ValueError):
        return info.mhz / 1000.0, "/proc/cpuinfo 'cpu MHz' (no cpufreq in this VM: nominal clock)"


def fp32_flops_per_cycle(info: CpuInfo) -> tuple[int, str]:
    """Peak fp32 FLOPs per core per cycle (FMA = 2 FLOPs) and the assumption behind it.

    Facts used (vendor optimisation manuals / Agner Fog's tables):
    AMD Zen 4 (family 0x19 with AVX-512) executes a 512-bit op as two 256-bit halves on
    its two 256-bit FMA pipes: 2 x 8 lanes x 2 = 32, the same as AVX2.  Zen 5 (family
    0x1A) has full 512-bit FMA pipes: 2 x 16 x 2 = 64.  Intel Xeon with AVX-512 is
    assumed to have two 512-bit FMA units (Gold 6xxx, Platinum, 4th gen and later): 64;
    parts with one (Silver, Bronze, some Gold 5xxx) reach half.  AVX2 + FMA: 2 x 8 x 2 =
    32.  AVX without FMA: one 8-wide multiply + one add: 16.
    """
    amd = info.vendor == "AuthenticAMD"
    if "avx512f" in info.flags:
        if amd and info.family == 0x19:
            return 32, "AMD Zen 4: AVX-512 executed as 2x256-bit on 2 FMA pipes = 2 x 8 x 2"
        if amd:
            return 64, "AMD Zen 5 or later: 2 full 512-bit FMA pipes = 2 x 16 x 2"
        return 64, ("Intel AVX-512: assumed 2 FMA-512 units = 2 x 16 x 2 "
                    "(one-unit parts such as Xeon Silver: half; pass --flops-per-cycle 32)")
    if "fma" in info.flags and "avx2" in info.flags:
        if amd and info.family == 0x17 and info.model < 0x30:
            return 16, "AMD Zen 1: 256-bit ops as 2x128 on 2 FMA pipes = 2 x 4 x 2"
        return 32, "AVX2 + FMA: 2 FMA-256 units = 2 x 8 x 2"
    if "avx" in info.flags:
        return 16, "AVX without FMA: one 8-wide multiply + one 8-wide add per cycle"
    return 8, "SSE: one 4-wide multiply + one 4-wide add per cycle"


def fp32_ceiling(cores: int, info: CpuInfo | None = None, ghz: float | None = None,
                 flops_per_cycle: int | None = None) -> dict:
    """Peak fp32 FLOP/s of ``cores`` cores = cores x clock x FLOPs/cycle, with its sources."""
    info = info or read_cpuinfo()
    clock, clock_source = (ghz, "given") if ghz else clock_ghz(info)
    per_cycle, why = (flops_per_cycle, "given") if flops_per_cycle else fp32_flops_per_cycle(info)
    return {"cores": cores, "clock_ghz": clock, "clock_source": clock_source, "flops_per_cycle": per_cycle,
            "flops_per_cycle_assumption": why, "flops_per_s": cores * clock * 1e9 * per_cycle,
            "cpu": info.model_name}


def available_cores() -> int:
    """Cores in this process's CPU affinity mask (what taskset/mpirun binding left it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not Linux
        return os.cpu_count() or 1


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as fh:
            text = fh.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def memory_available(meminfo: str = "/proc/meminfo", cgroup: str = "/sys/fs/cgroup") -> int | None:
    """Bytes this process can still allocate without swapping: ``MemAvailable`` of
    /proc/meminfo, or the cgroup v2 limit (``memory.max``) minus its use
    (``memory.current``) when that is smaller; None when neither is readable."""
    candidates = []
    try:
        with open(meminfo, encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    candidates.append(int(line.split()[1]) * 1024)    # kB
    except (OSError, UnicodeDecodeError, ValueError, IndexError):
        pass
    limit, used = _read_int(os.path.join(cgroup, "memory.max")), _read_int(os.path.join(cgroup, "memory.current"))
    if limit is not None and used is not None:      # 'max' (no limit) is not a number: skipped
        candidates.append(max(0, limit - used))
    return min(candidates) if candidates else None


def process_cores(local_ranks: int = 1, environ=os.environ) -> int:
    """How many cores this process should compute on (see the module docstring).

    ``TFXR_CPU_THREADS`` wins; a process the launcher bound to fewer cores than the node
    has uses all of its own cores; otherwise the node's cores are shared evenly among
    the ``local_ranks`` processes of this node.
    """
    if environ.get("TFXR_CPU_THREADS"):
        return max(1, int(environ["TFXR_CPU_THREADS"]))
    mine, node = available_cores(), os.cpu_count() or 1
    if mine < node or local_ranks <= 1:
        return mine
    return max(1, mine // local_ranks)


def configure_tensorflow_threads(tf, local_ranks: int, environ=os.environ) -> dict:
    """Apply the per-process thread settings (before TensorFlow runs any op); returns them.

    A single unbound process without ``TFXR_CPU_THREADS`` keeps TensorFlow's defaults
    (every core), so a notebook or a one-process job uses the whole machine.
    """
    explicit = bool(environ.get("TFXR_CPU_THREADS"))
    bound = available_cores() < (os.cpu_count() or 1)
    cores = process_cores(local_ranks, environ)
    settings = {"cores": cores, "intra_op": 0, "inter_op": 0}
    if explicit or bound or local_ranks > 1:
        inter = int(environ.get("TFXR_INTER_OP_THREADS", 2))
        tf.config.threading.set_intra_op_parallelism_threads(cores)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
        settings.update(intra_op=cores, inter_op=inter)
        os.environ.setdefault("OMP_NUM_THREADS", str(cores))
    return settings


def onednn_enabled(environ=os.environ) -> bool:
    """Whether TensorFlow's oneDNN kernels are on (tfxr's default; see tfxr/__init__.py)."""
    return environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip().lower() not in ("0", "false", "off")


def mixed_precision_problem(info: CpuInfo | None = None, environ=os.environ) -> str | None:
    """What to know before training in mixed bf16 precision on this CPU; None when it should help.

    Decided by the CPU's flags: with oneDNN and AMX (``amx_bf16``) bf16 is fast (None).
    With AVX-512 BF16 alone (``avx512_bf16``) it has measured slower or faster than fp32
    depending on the model and build, and with neither every bf16 op is emulated: both
    messages give the command that measures it here (:data:`BF16_MEASUREMENT`).
    """
    info = info or read_cpuinfo()
    if not onednn_enabled(environ):
        return ("mixed precision (bf16) on CPU with TF_ENABLE_ONEDNN_OPTS=0: TensorFlow's Eigen kernels "
                "have no fast bf16 path; use fp32 (mixed_precision=false) or enable oneDNN")
    if info.has_amx_bf16:
        return None
    measure = f"compare on this machine with `{BF16_MEASUREMENT}`"
    if info.has_avx512_bf16:
        return (f"mixed precision (bf16) on {info.model_name}: AVX-512 BF16 without AMX, where bf16 has "
                f"measured slower than fp32 for some models and faster for others; {measure} "
                f"before a long run")
    return (f"mixed precision (bf16) on {info.model_name}: neither AMX (amx_bf16) nor AVX-512 BF16 "
            f"(avx512_bf16), so every bf16 op is converted to and from fp32 and is expected to be slower "
            f"than fp32 (mixed_precision=false); {measure}")
