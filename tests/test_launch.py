"""tfxr.launch: launch detection, the one launcher builder (mpirun, srun, horovodrun) and its CLI
(``python -m tfxr.launch``, also reachable as ``python -m tfxr.distributed``)."""
from __future__ import annotations

import os
import shlex
import sys

import pytest

from tests.conftest import REPO, run
from tfxr import launch


# --------------------------------------------------------------------------- launch detection
LAUNCH_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "HOROVOD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_RANK",
               "SLURM_STEP_NUM_TASKS", "SLURM_STEP_ID", "SLURM_PROCID", "SLURM_NTASKS")


@pytest.mark.parametrize("env,size", [
    ({}, 1),
    ({"OMPI_COMM_WORLD_SIZE": "4"}, 4),
    ({"PMI_SIZE": "3"}, 3),
    ({"HOROVOD_SIZE": "2"}, 2),
    # srun --mpi=pmix: PMIx exports no size, Slurm exports the step's task count
    ({"PMIX_RANK": "0", "SLURM_STEP_NUM_TASKS": "8", "SLURM_STEP_ID": "0", "SLURM_PROCID": "0"}, 8),
    ({"PMIX_RANK": "5"}, 6),
    # a batch script running plain python: the allocation's SLURM_NTASKS is not this process's world
    ({"SLURM_NTASKS": "4", "SLURM_STEP_NUM_TASKS": "4", "SLURM_STEP_ID": "batch", "SLURM_PROCID": "0"}, 1),
    ({"SLURM_NTASKS": "4"}, 1),
])
def test_launched_world_size(monkeypatch, env, size):
    for var in LAUNCH_VARS:
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert launch.launched_world_size() == size


# --------------------------------------------------------------------------- the one builder
@pytest.mark.parametrize("module", ["tfxr.launch", "tfxr.distributed"])
def test_cli_prints_the_builders_command(module):
    r = run([sys.executable, "-m", module, "--np", "3", "--print", "--", "tfxr.train", "--data", "a dir"],
            cwd=REPO.parent)
    assert shlex.split(r.stdout) == launch.mpirun_command(3, ["tfxr.train", "--data", "a dir"])
    assert shlex.split(r.stdout)[:4] == ["mpirun", "-np", "3", "--oversubscribe"]
    one = run([sys.executable, "-m", module, "--np", "1", "--print", "--", "tfxr.train"])
    assert shlex.split(one.stdout) == [sys.executable, "-m", "tfxr.train"]
    bad = run([sys.executable, "-m", module, "--np", "2", "--print"], check=False)
    assert bad.returncode == 2 and "after `--`" in bad.stderr
    zero = run([sys.executable, "-m", module, "--np", "0", "--", "tfxr.train"], check=False)
    assert zero.returncode == 2 and "np: 0 is below the minimum 1" in zero.stderr
    odd = run([sys.executable, "-m", module, "--np", "2", "--launcher", "ssh", "--", "tfxr.train"], check=False)
    assert odd.returncode == 2 and "launcher: unknown value 'ssh'" in odd.stderr and "Traceback" not in odd.stderr


def test_the_launch_cli_needs_no_tensorflow():
    """Starting ranks must not pay for (or depend on) TensorFlow/Horovod in the launching process."""
    code = ("import sys; sys.modules['tensorflow'] = None; sys.modules['horovod'] = None; "
            "from tfxr.launch import main; sys.exit(main(['--np', '2', '--print', '--', 'tfxr.train']))")
    r = run([sys.executable, "-c", code])
    assert shlex.split(r.stdout)[0] == "mpirun"


OUT_OF_SLURM = {"PATH": os.environ["PATH"]}
IN_SLURM = {"PATH": os.environ["PATH"], "SLURM_JOB_ID": "42", "SLURM_NTASKS": "8", "SLURM_CPUS_PER_TASK": "4",
            "LD_LIBRARY_PATH": "/opt/lib", "HOROVOD_FUSION_THRESHOLD": "1", "NCCL_SOCKET_IFNAME": "ib0"}


def test_mpirun_outside_slurm_binds_cpu_ranks_to_their_cores():
    cmd = launch.launch_command(2, ["tfxr.train"], "mpirun", python="py", env=OUT_OF_SLURM, gpus=False)
    assert cmd[:4] == ["mpirun", "-np", "2", "--oversubscribe"]
    assert cmd[-3:] == ["py", "-m", "tfxr.train"]
    assert ("--allow-run-as-root" in cmd) == (os.geteuid() == 0)
    gpu = launch.launch_command(2, ["tfxr.train"], "mpirun", python="py", env=OUT_OF_SLURM, gpus=True)
    assert gpu[gpu.index("--bind-to") + 1] == "none"


def _pairs(cmd, flag):
    return [cmd[i + 1] for i, a in enumerate(cmd) if a == flag]


def test_mpirun_inside_slurm_uses_the_allocation_and_exports_the_settings():
    cmd = launch.launch_command(8, ["tfxr.train"], "mpirun", python="py", env=IN_SLURM, gpus=True,
                                mpirun="mpirun -mca pml ob1")
    assert cmd[:5] == ["mpirun", "-mca", "pml", "ob1", "-np"] and "--oversubscribe" not in cmd
    assert _pairs(cmd, "-x")[:4] == ["NCCL_DEBUG=INFO", "LD_LIBRARY_PATH", "PATH", "PYTHONPATH"]
    assert {"HOROVOD_FUSION_THRESHOLD", "NCCL_SOCKET_IFNAME"} <= set(_pairs(cmd, "-x"))
    assert _pairs(cmd, "--bind-to") == ["none"] and _pairs(cmd, "--map-by") == ["slot"]   # GPU tasks
    cpu = launch.launch_command(8, ["tfxr.train"], "mpirun", python="py", env=IN_SLURM, gpus=False)
    assert _pairs(cpu, "--map-by") == ["slot:PE=4"] and _pairs(cpu, "--bind-to") == ["core"]   # CPU tasks


def test_srun_line():
    cmd = launch.launch_command(8, ["tfxr.train", "--out", "o"], "srun", python="py", env=IN_SLURM, gpus=False)
    assert cmd == ["srun", "--mpi=pmix", "--kill-on-bad-exit=1", "--ntasks=8", "--cpus-per-task=4",
                   "--cpu-bind=cores", "py", "-m", "tfxr.train", "--out", "o"]
    gpu = launch.launch_command(8, ["tfxr.train"], "srun", python="py", env=IN_SLURM, gpus=True)
    assert "--cpu-bind=cores" not in gpu


def test_auto_picks_srun_only_when_it_offers_pmix(tmp_path):
    fake = tmp_path / "srun"
    env = {**IN_SLURM, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    for listing, expected in [("none pmi2 pmix_v4", "srun"), ("none pmi2", "mpirun")]:
        fake.write_text(f'#!/bin/sh\n[ "$1" = "--mpi=list" ] && echo "MPI plugin types are..." {listing}\n')
        fake.chmod(0o755)
        r = run([sys.executable, "-m", "tfxr.launch", "--np", "8", "--print", "--", "tfxr.train"], env=env)
        assert shlex.split(r.stdout)[0] == expected, listing
    assert launch.launch_command(1, ["m"], "auto", python="py", env=OUT_OF_SLURM) == ["py", "-m", "m"]


def test_horovodrun_lines(tmp_path):
    fixed = launch.launch_command(2, ["tfxr.train"], "horovodrun", python="/v/bin/py", env=OUT_OF_SLURM)
    assert fixed[1:6] == ["--gloo", "-np", "2", "-H", "localhost:2"] and fixed[-3:] == ["/v/bin/py", "-m", "tfxr.train"]
    elastic = launch.launch_command(2, ["tfxr.train"], python="py", min_np=1, max_np=2,
                                    discovery_script="/d.sh", env=OUT_OF_SLURM)
    assert elastic[1:10] == ["--gloo", "-np", "2", "--min-np", "1", "--max-np", "2",
                             "--host-discovery-script", "/d.sh"]
    script = tmp_path / "hosts.sh"
    script.write_text("#!/bin/sh\necho localhost:2\n")
    r = run([sys.executable, "-m", "tfxr.launch", "--np", "2", "--min-np", "1", "--host-discovery-script",
             "hosts.sh", "--print", "--", "tfxr.train"], cwd=tmp_path, check=False)
    assert r.returncode == 2 and "hosts.sh: not an executable file" in r.stderr
    script.chmod(0o755)
    r = run([sys.executable, "-m", "tfxr.launch", "--np", "2", "--min-np", "1", "--host-discovery-script",
             "hosts.sh", "--print", "--", "tfxr.train"], cwd=tmp_path)
    assert str(script) in shlex.split(r.stdout)
    bad = run([sys.executable, "-m", "tfxr.launch", "--np", "2", "--launcher", "mpirun", "--min-np", "1",
               "--", "tfxr.train"], check=False)
    assert bad.returncode == 2 and "need --launcher horovodrun" in bad.stderr


def test_the_launch_env_drops_job_variables_but_keeps_horovod_settings():
    env = launch.clean_launch_env({"OMPI_COMM_WORLD_SIZE": "2", "PMIX_RANK": "0", "HOROVOD_RANK": "1",
                                   "HOROVOD_GLOO_RENDEZVOUS_ADDR": "x", "HOROVOD_FUSION_THRESHOLD": "0",
                                   "HOROVOD_STALL_CHECK_TIME_SECONDS": "5", "PATH": "/bin"})
    assert env == {"HOROVOD_FUSION_THRESHOLD": "0", "HOROVOD_STALL_CHECK_TIME_SECONDS": "5", "PATH": "/bin"}


def test_launching_with_a_missing_launcher_is_one_line(tmp_path):
    r = run([sys.executable, "-m", "tfxr.launch", "--np", "2", "--", "tfxr.train"],
            env={"PATH": str(tmp_path)}, check=False)
    assert r.returncode == 2 and "mpirun: not found on PATH" in r.stderr and "Traceback" not in r.stderr
