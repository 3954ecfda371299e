"""tfxr.cpu: CPU facts, the fp32 ceiling, per-process threads, bf16 advice; mpirun placement."""
from __future__ import annotations

import os

import pytest

from tfxr import cpu
from tfxr.launch import binding_flags

ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9R14 96-Core Processor
cpu MHz\t\t: 2600.000
flags\t\t: fpu sse avx avx2 fma avx512f avx512_bf16

processor\t: 1
vendor_id\t: AuthenticAMD
"""


def _info(tmp_path, text: str) -> cpu.CpuInfo:
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return cpu.read_cpuinfo(str(path))


def test_cpuinfo_and_zen4_ceiling(tmp_path):
    info = _info(tmp_path, ZEN4)
    assert (info.vendor, info.family, info.logical_cpus, info.mhz) == ("AuthenticAMD", 25, 2, 2600.0)
    per_cycle, why = cpu.fp32_flops_per_cycle(info)
    assert per_cycle == 32 and "2x256" in why            # AVX-512 double-pumped on Zen 4
    ceiling = cpu.fp32_ceiling(2, info, ghz=2.6)
    assert ceiling["flops_per_s"] == pytest.approx(2 * 2.6e9 * 32)


@pytest.mark.parametrize("vendor,family,flags,expected", [
    ("GenuineIntel", 6, "avx avx2 fma avx512f", 64),     # two FMA-512 units assumed
    ("GenuineIntel", 6, "avx avx2 fma", 32),
    ("AuthenticAMD", 26, "avx avx2 fma avx512f", 64),    # Zen 5: full-width pipes
    ("GenuineIntel", 6, "sse avx", 16),
])
def test_flops_per_cycle_by_isa(tmp_path, vendor, family, flags, expected):
    info = _info(tmp_path, f"vendor_id\t: {vendor}\ncpu family\t: {family}\nflags\t\t: {flags}\n")
    assert cpu.fp32_flops_per_cycle(info)[0] == expected


def test_process_cores_share_the_node_unless_bound_or_told():
    node = os.cpu_count()
    mine = cpu.available_cores()
    assert cpu.process_cores(1, environ={"TFXR_CPU_THREADS": "3"}) == 3
    if mine == node:
        assert cpu.process_cores(2, environ={}) == max(1, node // 2)
    assert cpu.process_cores(1, environ={}) == mine


def test_bf16_advice(tmp_path):
    zen4 = _info(tmp_path, ZEN4)
    assert "12.9" in cpu.mixed_precision_problem(zen4, environ={"TF_ENABLE_ONEDNN_OPTS": "1"})
    assert "ONEDNN_OPTS=0" in cpu.mixed_precision_problem(zen4, environ={"TF_ENABLE_ONEDNN_OPTS": "0"})
    amx = cpu.CpuInfo(flags=frozenset({"avx512f", "amx_bf16"}))
    assert cpu.mixed_precision_problem(amx, environ={}) is None


def test_onednn_is_on_by_default_after_importing_tfxr():
    import tfxr  # noqa: F401 - the import sets the default
    assert os.environ.get("TF_ENABLE_ONEDNN_OPTS") in ("0", "1")
    assert cpu.onednn_enabled(environ={}) and not cpu.onednn_enabled(environ={"TF_ENABLE_ONEDNN_OPTS": "0"})


def test_mpirun_binds_cpu_ranks_to_their_own_cores():
    flags = binding_flags(2, cores=4, gpus=False)
    assert flags[flags.index("--map-by") + 1] == "slot:PE=2" and "core" in flags
    assert "OMP_NUM_THREADS=2" in flags and "mpi_yield_when_idle" in flags
    assert binding_flags(2, cores_per_rank=1, cores=4, gpus=False)[flags.index("--map-by") + 1] == "slot:PE=1"
    for gpus, ranks in ((True, 2), (False, 3)):   # GPU ranks, oversubscribed: no binding
        flags = binding_flags(ranks, cores=2, gpus=gpus)
        assert flags[flags.index("--bind-to") + 1] == "none" and "--map-by" not in flags
