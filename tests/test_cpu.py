"""tfxr.cpu: CPU facts, the fp32 ceiling, per-process threads, bf16 advice; mpirun placement."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import tfxr

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


INTEL_AMX = "vendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel name\t: Intel(R) Xeon(R) Platinum 8488C\n" \
            "flags\t\t: fpu avx avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile\n"
AVX2_ONLY = "vendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel name\t: Intel(R) Core(TM) i7-8700\n" \
            "flags\t\t: fpu avx avx2 fma\n"


def test_bf16_advice_follows_the_cpu_flags(tmp_path):
    on = {"TF_ENABLE_ONEDNN_OPTS": "1"}
    assert cpu.mixed_precision_problem(_info(tmp_path, INTEL_AMX), environ=on) is None        # AMX: fast
    avx512 = cpu.mixed_precision_problem(_info(tmp_path, ZEN4), environ=on)                    # no AMX
    assert "AVX-512 BF16 without AMX" in avx512 and "AMD EPYC 9R14" in avx512 and "12x" not in avx512 and "12.9" not in avx512
    none = cpu.mixed_precision_problem(_info(tmp_path, AVX2_ONLY), environ=on)
    assert "neither AMX (amx_bf16) nor AVX-512 BF16 (avx512_bf16)" in none and "expected to be slower" in none
    for advice in (avx512, none):   # a measurement the user can repeat, not one CPU family's number
        assert cpu.BF16_MEASUREMENT in advice and "--precision fp32,bf16" in cpu.BF16_MEASUREMENT
    assert "ONEDNN_OPTS=0" in cpu.mixed_precision_problem(_info(tmp_path, INTEL_AMX),
                                                          environ={"TF_ENABLE_ONEDNN_OPTS": "0"})


def test_the_bf16_measurement_command_is_a_valid_benchmark_command():
    argv = cpu.BF16_MEASUREMENT.replace("MODEL", "tb_cnn").replace("SIZE", "64").split()[3:]
    r = tfxr("tfxr.benchmark", *argv, "--print-config")
    assert "- fp32\n- bf16" in r.stdout and "model: tb_cnn" in r.stdout


@pytest.mark.parametrize("exported,expected", [(None, "1"), ("0", "0")])
def test_importing_tfxr_turns_onednn_on_unless_the_user_exported_a_value(exported, expected):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if exported is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = exported
    r = subprocess.run([sys.executable, "-c", "import os, tfxr; print(os.environ['TF_ENABLE_ONEDNN_OPTS'])"],
                       env=env, capture_output=True, text=True, timeout=120, check=True)
    assert r.stdout.strip() == expected
    assert cpu.onednn_enabled(environ={}) and not cpu.onednn_enabled(environ={"TF_ENABLE_ONEDNN_OPTS": "0"})


def test_mpirun_binds_cpu_ranks_to_their_own_cores():
    flags = binding_flags(2, cores=4, gpus=False)
    assert flags[flags.index("--map-by") + 1] == "slot:PE=2" and "core" in flags
    assert "OMP_NUM_THREADS=2" in flags and "mpi_yield_when_idle" in flags
    assert binding_flags(2, cores_per_rank=1, cores=4, gpus=False)[flags.index("--map-by") + 1] == "slot:PE=1"
    for gpus, ranks in ((True, 2), (False, 3)):   # GPU ranks, oversubscribed: no binding
        flags = binding_flags(ranks, cores=2, gpus=gpus)
        assert flags[flags.index("--bind-to") + 1] == "none" and "--map-by" not in flags


def test_memory_available_is_meminfo_or_the_cgroup_room_whichever_is_smaller(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       32000000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\n")
    group = tmp_path / "cgroup"
    group.mkdir()
    assert cpu.memory_available(str(meminfo), str(group)) == 20000000 * 1024        # no cgroup files
    (group / "memory.max").write_text("max\n")                                       # no limit
    (group / "memory.current").write_text("5000\n")
    assert cpu.memory_available(str(meminfo), str(group)) == 20000000 * 1024
    (group / "memory.max").write_text(str(8 << 30) + "\n")
    (group / "memory.current").write_text(str(3 << 30) + "\n")
    assert cpu.memory_available(str(meminfo), str(group)) == 5 << 30                 # the cgroup's room
    assert cpu.memory_available(str(tmp_path / "none"), str(tmp_path / "none")) is None
