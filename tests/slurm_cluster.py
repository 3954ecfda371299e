"""A private one-node Slurm for the tests: munged, slurmctld and slurmd started as root.

Everything lives under one temporary folder (munge key and socket, slurm.conf, state,
spool, logs); the ports are free ones picked at start, so the cluster does not clash with a
real Slurm or another test run.  Commands reach it through ``SLURM_CONF``
(:attr:`SlurmCluster.env`).  Debian's packages: ``slurm-wlm`` and ``munge``
(``scripts/install.sh`` installs them).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo", "srun", "scancel")
#: job states of a job that has not ended yet
ACTIVE_STATES = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING",
                 "SIGNALING", "STAGE_OUT", "STOPPED")


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None and not os.path.exists(f"/usr/sbin/{b}")]


def install_binaries() -> str:
    """Install Debian's slurm-wlm and munge if they are missing; '' on success, else why not."""
    if not missing_binaries():
        return ""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "slurm-wlm/munge are not installed and cannot be (needs root and apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "slurm-wlm", "munge"],
                          capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0 or missing_binaries():
        return f"apt-get install slurm-wlm munge failed: {proc.stderr[-500:]}"
    return ""


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _sbin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class SlurmCluster:
    """``start()`` the daemons, ``stop()`` them; ``env`` for sbatch and friends."""

    def __init__(self, root: Path, cpus: int = 2):
        self.root, self.cpus = Path(root), cpus
        self.node = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.sock"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        for var in [k for k in self.env if k.startswith("SLURM_") and k != "SLURM_CONF"]:
            del self.env[var]          # a test run inside a real Slurm job must not leak into ours

    def _write_config(self) -> None:
        for d in ("munge", "state", "spool", "log"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        (self.root / "munge").chmod(0o700)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        ctld_port, d_port = _free_ports(2)
        r = self.root
        self.conf.write_text(f"""\
ClusterName=tfxrtest
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
ReturnToService=2
SlurmUser=root
SlurmdUser=root
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmdSpoolDir={r}/spool
StateSaveLocation={r}/state
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} Sockets=1 CoresPerSocket={self.cpus} ThreadsPerCore=1 RealMemory=1 State=UNKNOWN
PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
""")

    def _run(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), capture_output=True, text=True, env=self.env, timeout=timeout)

    def start(self, timeout: float = 120) -> None:
        self._write_config()
        m = self.root / "munge"
        self._check(self._run(_sbin("munged"), "--force", f"--socket={self.munge_socket}",
                              f"--key-file={m / 'munge.key'}", f"--pid-file={m / 'munged.pid'}",
                              f"--log-file={m / 'munged.log'}", f"--seed-file={m / 'munge.seed'}"), "munged")
        self._check(self._run(_sbin("slurmctld"), "-i"), "slurmctld")
        self._check(self._run(_sbin("slurmd"), "-N", self.node), "slurmd")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self._run("sinfo", "-h", "-N", "-o", "%T").stdout.strip()
            if state in ("idle", "mixed", "allocated"):
                return
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"the test Slurm node did not come up (state {state!r}); logs in {self.root / 'log'}")

    def _check(self, proc: subprocess.CompletedProcess, what: str) -> None:
        if proc.returncode != 0:
            self.stop()
            raise RuntimeError(f"{what} did not start: {proc.stdout}{proc.stderr}")

    def stop(self) -> None:
        """Stop slurmd, slurmctld and munged (by their pid files) and wait for them to exit."""
        for pidfile in (self.root / "slurmd.pid", self.root / "slurmctld.pid", self.root / "munge" / "munged.pid"):
            try:
                pid = int(pidfile.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(150):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def sbatch(self, *args: str, cwd: Path, env: dict | None = None, timeout: float = 1800
               ) -> subprocess.CompletedProcess:
        """Submit ``sbatch ARGS`` from ``cwd`` and return when the job has ended, with the job's
        exit code as ``returncode`` (what ``sbatch --wait`` returns).

        The job's state is polled here each half second: ``sbatch --wait`` polls at growing
        intervals (2 s, then several times that), so it notices a short job's end late."""
        env = {**self.env, **(env or {})}
        submit = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, cwd=cwd,
                                env=env, timeout=60)
        if submit.returncode != 0:
            return submit
        job = submit.stdout.strip().split(";")[0]
        deadline = time.monotonic() + timeout
        while True:
            fields = dict(f.split("=", 1) for f in self._run("scontrol", "-o", "show", "job", job).stdout.split()
                          if "=" in f)
            if fields.get("JobState", "PENDING") not in ACTIVE_STATES:
                break
            if time.monotonic() > deadline:
                self._run("scancel", job)
                raise subprocess.TimeoutExpired(["sbatch", *args], timeout)
            time.sleep(0.5)
        code, _, signal_number = fields.get("ExitCode", "1:0").partition(":")
        returncode = int(code) or (128 + int(signal_number) if signal_number not in ("", "0") else 0)
        if fields.get("JobState") != "COMPLETED" and returncode == 0:
            returncode = 1
        return subprocess.CompletedProcess(submit.args, returncode,
                                           submit.stdout + f"job {job}: {fields.get('JobState')}\n", submit.stderr)

    def hostnames(self) -> list[str]:
        nodelist = self._run("sinfo", "-h", "-o", "%N").stdout.strip()
        return self._run("scontrol", "show", "hostnames", nodelist).stdout.split()
