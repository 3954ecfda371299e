"""How ranks are started: launch detection and the one builder of launcher command lines.

    python -m tfxr.launch --np 4 -- tfxr.train --data tfrec/tb --out runs/tb
    python -m tfxr.launch --np 4 --print -- tfxr.train ...        # only print the command
    python -m tfxr.launch --launcher srun --np 8 -- tfxr.train ...  # inside a Slurm job
    python -m tfxr.distributed --np 4 -- tfxr.train ...           # the same (older name)

:func:`launch_command` builds every launcher line tfxr uses -- ``mpirun`` (bound cores on
a workstation, the allocation and ``-x`` exports inside Slurm), ``horovodrun --gloo``
(fixed or elastic) and ``srun --mpi=pmix`` -- so the Slurm scripts, notebooks, tests and
the benchmark all start ranks the same way.  :func:`launch` runs it from Python (with
rank 0's output streamed to a notebook).  :func:`launched_world_size` tells a process
whether a launcher started it, without importing Horovod or MPI.

This module never imports Horovod (that is :mod:`tfxr.distributed`, the runtime).
"""
from __future__ import annotations

import glob
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Callable

from tfxr.cli import run_main
from tfxr.config import parse_config
from tfxr.configs import LAUNCHERS, LaunchConfig
from tfxr.errors import ConfigError


class LaunchError(ConfigError):
    """A multi-process launch that cannot work (no Horovod, or Horovod not seeing the ranks)."""



_LAUNCH_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "HOROVOD_SIZE", "MV2_COMM_WORLD_SIZE")

#: world-size variables of the launchers tfxr knows: Open MPI's mpirun, MPICH/Intel MPI
#: (Hydra, PMI-1/2), horovodrun's Gloo controller, MVAPICH2
_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "HOROVOD_SIZE", "MV2_COMM_WORLD_SIZE")

#: Slurm step ids that are not an ``srun`` task launch (the batch script, the extern step)
_SLURM_NON_TASK_STEPS = ("batch", "extern", "interactive", "4294967294", "4294967291", "4294967290")

_LAUNCH_PREFIXES = ("OMPI_", "PMIX_", "PMI_", "OPAL_", "HOROVOD_", "MV2_", "HYDRA_")

#: variables mpirun exports to the ranks of a Slurm job (``-x``) when they are set: the ones
#: that tune Horovod, NCCL, UCX, tfxr and TensorFlow (remote ranks see nothing else)
_EXPORTED = re.compile(r"^(HOROVOD_|NCCL_|UCX_|TFXR_|TF_(CPP|FORCE|ENABLE|GPU|XLA|DETERMINISTIC|NUM|USE)_?)")


# --------------------------------------------------------------------------- detection
def _slurm_step_tasks() -> int:
    """Tasks of the ``srun`` step this process belongs to, 0 outside one.

    ``srun`` exports ``SLURM_STEP_NUM_TASKS`` and ``SLURM_PROCID`` to each task; a batch
    script running plain ``python`` also sees ``SLURM_NTASKS`` (the allocation's size),
    which says nothing about how many copies of *this* process run, so it is not used.
    """
    step = os.environ.get("SLURM_STEP_ID", "")
    if not os.environ.get("SLURM_STEP_NUM_TASKS") or "SLURM_PROCID" not in os.environ \
            or step in _SLURM_NON_TASK_STEPS:
        return 0
    return int(os.environ["SLURM_STEP_NUM_TASKS"])


def launched_world_size() -> int:
    """World size announced by the launcher's environment (1 when not launched).

    Open MPI, MPICH/Hydra, horovodrun and MVAPICH2 export the size; ``srun`` (PMIx or
    PMI-2 plugin) exports ``SLURM_STEP_NUM_TASKS``.  A PMIx launcher that exports only
    ``PMIX_RANK`` gives at least rank + 1.
    """
    for var in _SIZE_VARS:
        if os.environ.get(var):
            return int(os.environ[var])
    slurm = _slurm_step_tasks()
    if slurm:
        return slurm
    if os.environ.get("PMIX_RANK", "").isdigit():
        return int(os.environ["PMIX_RANK"]) + 1
    return 1


def launched_under_mpi() -> bool:
    return any(os.environ.get(v) for v in _LAUNCH_VARS if v != "HOROVOD_SIZE")


def mpi_comm():
    """mpi4py's COMM_WORLD when launched by an MPI launcher, else None (no MPI init)."""
    if not launched_under_mpi():
        return None
    from mpi4py import MPI   # lazy: importing mpi4py initialises MPI, only wanted under a launcher

    return MPI.COMM_WORLD


def in_slurm_job(env=None) -> bool:
    """Whether this process runs inside a Slurm allocation (a batch script, salloc)."""
    return bool((os.environ if env is None else env).get("SLURM_JOB_ID"))


def clean_launch_env(env=None) -> dict:
    """The environment for starting a new MPI job from this process.

    After hvd.init() a process is an MPI singleton whose C-level environment carries
    OMPI_/PMIX_ variables; an mpirun started with them believes it is already inside a
    job and fails.  Python's os.environ snapshot never saw them; drop them anyway.
    Horovod's tuning variables (``HOROVOD_FUSION_THRESHOLD``, ...) are not job variables
    and are kept; horovodrun's own (``HOROVOD_RANK``, ``HOROVOD_SIZE``, ...) are dropped.
    """
    env = dict(os.environ if env is None else env)
    return {k: v for k, v in env.items()
            if not k.startswith(_LAUNCH_PREFIXES) or _is_horovod_setting(k)}


_HOROVOD_JOB_VARS = ("HOROVOD_RANK", "HOROVOD_SIZE", "HOROVOD_LOCAL_RANK", "HOROVOD_LOCAL_SIZE",
                     "HOROVOD_CROSS_RANK", "HOROVOD_CROSS_SIZE", "HOROVOD_HOSTNAME", "HOROVOD_GLOO_",
                     "HOROVOD_CONTROLLER", "HOROVOD_CPU_OPERATIONS", "HOROVOD_ELASTIC")


def _is_horovod_setting(name: str) -> bool:
    return name.startswith("HOROVOD_") and not name.startswith(_HOROVOD_JOB_VARS)


def gpus_present() -> bool:
    """Whether this node has an NVIDIA GPU (checked without importing TensorFlow)."""
    return bool(glob.glob("/dev/nvidia[0-9]*")) or (shutil.which("nvidia-smi") is not None
                                                     and bool(glob.glob("/proc/driver/nvidia/gpus/*")))


def srun_has_pmix() -> bool:
    """Whether ``srun --mpi=list`` offers a PMIx plugin ("pmix", or only a versioned "pmix_v4")."""
    if not shutil.which("srun"):
        return False
    try:
        proc = subprocess.run(["srun", "--mpi=list"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return re.search(r"(^|[\s:])pmix", proc.stdout + proc.stderr) is not None


# --------------------------------------------------------------------------- the builder
def binding_flags(np_: int, cores_per_rank: int | None = None, cores: int | None = None,
                  gpus: bool | None = None) -> list[str]:
    """OpenMPI 4.1 placement flags for ``np_`` local ranks.

    CPU ranks: ``--map-by slot:PE=k --bind-to core`` gives each rank its own k cores
    (k = ``cores_per_rank``, default the node's cores // ranks), so TensorFlow's threads
    of different ranks never share a core.  GPU ranks, or more ranks than cores
    (oversubscribed tests): ``--bind-to none``, the OS places threads.  Also
    ``--mca mpi_yield_when_idle 1``: a rank waiting in an MPI call yields its core instead
    of busy-polling it, which on a CPU node steals cycles from the computing threads.
    """
    cores = cores or len(os.sched_getaffinity(0))
    gpus = gpus_present() if gpus is None else gpus
    per_rank = cores_per_rank or cores // max(1, np_)
    flags = ["--mca", "mpi_yield_when_idle", "1"]
    if gpus or per_rank < 1 or per_rank * np_ > cores:
        return flags + ["--bind-to", "none"]
    return flags + ["--map-by", f"slot:PE={per_rank}", "--bind-to", "core",
                    "-x", f"OMP_NUM_THREADS={per_rank}"]


def _slurm_mpirun_flags(env: dict, gpus: bool) -> list[str]:
    """mpirun inside a Slurm job: Open MPI reads the allocation (nodes, slots); the ranks on
    other nodes get the environment only through ``-x``.  CPU tasks with ``--cpus-per-task``
    are bound to their cores; GPU tasks are not bound (the OS places their threads)."""
    flags = ["-x", f"NCCL_DEBUG={env.get('NCCL_DEBUG') or 'INFO'}"]
    if "LD_LIBRARY_PATH" in env:        # -x of an unset variable only makes Open MPI warn
        flags += ["-x", "LD_LIBRARY_PATH"]
    flags += ["-x", "PATH", "-x", "PYTHONPATH"]
    for name in sorted(k for k in env if _EXPORTED.match(k) and k != "NCCL_DEBUG"):
        flags += ["-x", name]
    per_task = env.get("SLURM_CPUS_PER_TASK", "")
    if not gpus and per_task.isdigit() and int(per_task) >= 1:
        return ["--map-by", f"slot:PE={per_task}", "--bind-to", "core", *flags,
                "-x", f"OMP_NUM_THREADS={per_task}"]
    return ["--bind-to", "none", "--map-by", "slot", *flags]


def launch_command(np_: int, argv: list[str], launcher: str = "auto", *, python: str | None = None,
                   cores_per_rank: int | None = None, hosts: str | None = None,
                   min_np: int | None = None, max_np: int | None = None,
                   discovery_script: str | None = None, env: dict | None = None,
                   gpus: bool | None = None, mpirun: str = "mpirun") -> list[str]:
    """The command line that runs ``python -m argv...`` on ``np_`` ranks: tfxr's one builder.

    ``launcher``:

    * ``mpirun`` -- outside Slurm: ``--oversubscribe``, CPU ranks bound to their own cores
      (:func:`binding_flags`); inside a Slurm job (``SLURM_JOB_ID`` set): the allocation,
      ``-x`` exports for the other nodes, CPU tasks bound to their ``--cpus-per-task`` cores.
      ``--allow-run-as-root`` for root (containers).  ``mpirun`` may carry its own flags
      (e.g. ``"mpirun -mca pml ob1"``).
    * ``srun`` -- ``srun --mpi=pmix --kill-on-bad-exit=1 --ntasks=N`` (and the job's
      ``--cpus-per-task``, which srun no longer inherits from sbatch since Slurm 22.05;
      CPU tasks bound with ``--cpu-bind=cores``).
    * ``horovodrun`` -- ``horovodrun --gloo -np N -H localhost:N`` (or ``hosts``); elastic
      with ``min_np``/``max_np``/``discovery_script`` (``--host-discovery-script``).
    * ``python`` -- one process, no launcher.
    * ``auto`` -- srun inside a Slurm job if its PMIx plugin exists, else mpirun; outside
      Slurm, plain python for one rank and mpirun for more.
    """
    env = dict(os.environ if env is None else env)
    if launcher not in LAUNCHERS:
        raise ConfigError(f"launcher: unknown value {launcher!r} (allowed: {', '.join(LAUNCHERS)})")
    if np_ < 1:
        raise ConfigError(f"--np: {np_} is below the minimum 1")
    python = python or sys.executable
    slurm = in_slurm_job(env)
    elastic = min_np is not None or max_np is not None or discovery_script is not None
    if launcher == "auto":
        if slurm:
            launcher = "srun" if srun_has_pmix() else "mpirun"
        elif elastic:
            launcher = "horovodrun"
        else:
            launcher = "mpirun" if np_ > 1 else "python"
    if elastic and launcher != "horovodrun":
        raise ConfigError("--min-np/--max-np/--host-discovery-script need --launcher horovodrun "
                          "(Horovod's elastic driver)")
    gpus = gpus_present() if gpus is None else gpus
    program = [python, "-m", *argv]
    if launcher == "python":
        if np_ != 1:
            raise ConfigError(f"--launcher python runs one process, not --np {np_}")
        return program
    if launcher == "srun":
        cmd = ["srun", "--mpi=pmix", "--kill-on-bad-exit=1", f"--ntasks={np_}"]
        per_task = env.get("SLURM_CPUS_PER_TASK", "")
        if per_task.isdigit():
            cmd.append(f"--cpus-per-task={per_task}")
        if not gpus:
            cmd.append("--cpu-bind=cores")
        return cmd + program
    if launcher == "horovodrun":
        horovodrun = shutil.which("horovodrun") or os.path.join(os.path.dirname(python), "horovodrun")
        cmd = [horovodrun, "--gloo", "-np", str(np_)]
        if elastic:
            if not discovery_script:
                raise ConfigError("elastic horovodrun needs --host-discovery-script")
            cmd += ["--min-np", str(min_np or 1), "--max-np", str(max_np or np_),
                    "--host-discovery-script", discovery_script]
        else:
            cmd += ["-H", hosts or f"localhost:{np_}"]
        return cmd + program
    cmd = [*shlex.split(mpirun), "-np", str(np_)]
    if slurm:
        cmd += _slurm_mpirun_flags(env, gpus)
    else:
        cmd += ["--oversubscribe", *binding_flags(np_, cores_per_rank, gpus=gpus)]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    return cmd + program


def mpirun_command(np_: int, argv: list[str], python: str | None = None,
                   cores_per_rank: int | None = None) -> list[str]:
    """``launch_command(np_, argv, "mpirun", ...)`` (the name older callers use)."""
    return launch_command(np_, argv, "mpirun", python=python, cores_per_rank=cores_per_rank)


def command_for(np_: int, argv: list[str]) -> list[str]:
    """``python -m argv...`` for one process, the mpirun line for more (outside Slurm)."""
    return launch_command(np_, argv, "mpirun" if np_ > 1 else "python", env=clean_launch_env())


# --------------------------------------------------------------------------- running it
_TAG = re.compile(r"\[(\d+),(\d+)\]<(stdout|stderr)>:")  # mpirun --tag-output


def launch(np_: int, argv: list[str], stream: bool = False, show_rank: int = 0,
           on_line: Callable[[int | None, str, str], None] | None = None, **kw):
    """Run ``python -m argv...`` on np_ ranks (e.g. from a notebook); returns CompletedProcess.

    By default the output is captured and returned at the end.  With ``stream=True``
    the job runs under ``mpirun --tag-output`` and each line of rank ``show_rank`` (and
    every line of mpirun itself, which carries launch errors) is handed to ``on_line``
    as it arrives -- by default printed, so a notebook shows live progress of rank 0
    instead of a silent cell.  ``on_line(rank, stream_name, text)`` gets ``rank=None``
    for mpirun's own lines.  The returned CompletedProcess holds every rank's lines with
    the tags removed (``stdout``/``stderr``), as in the captured mode; ``timeout`` and
    ``check`` behave as in ``subprocess.run``; ``env`` is cleaned of any MPI job
    variables as always.
    """
    env = clean_launch_env(kw.pop("env", None))
    if not stream:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(mpirun_command(np_, argv), env=env, **kw)
    unsupported = set(kw) - {"cwd", "timeout", "check"}
    if unsupported:
        raise TypeError(f"launch(stream=True) does not take {sorted(unsupported)}")
    cmd = mpirun_command(np_, argv)
    cmd.insert(cmd.index("-np"), "--tag-output")
    return _StreamedJob(cmd, env, kw.get("cwd"), show_rank, on_line or _print_line).run(
        timeout=kw.get("timeout"), check=kw.get("check", False))


def _print_line(rank: int | None, stream_name: str, text: str) -> None:
    print(text, file=sys.stderr if stream_name == "stderr" else sys.stdout, flush=True)


class _StreamedJob:
    """An mpirun child whose tagged output is read line by line as it arrives.

    One reader thread per pipe puts lines on a queue; the caller's thread takes them off
    and calls ``on_line`` -- so output appears in the calling thread (a notebook cell's
    output area), never from a background thread.
    """

    def __init__(self, cmd: list[str], env: dict, cwd, show_rank: int, on_line) -> None:
        self.cmd, self.env, self.cwd = cmd, env, cwd
        self.show_rank, self.on_line = show_rank, on_line
        self.collected = {"stdout": [], "stderr": []}
        self.pending: dict = {}      # (rank, stream) -> text not yet ended by a newline

    def run(self, timeout: float | None, check: bool):
        proc = subprocess.Popen(self.cmd, env=self.env, cwd=self.cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, bufsize=1, start_new_session=True)
        lines: queue.Queue = queue.Queue()

        def read(pipe, name):
            for line in pipe:
                lines.put((name, line))
            lines.put((name, None))

        for pipe, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
            threading.Thread(target=read, args=(pipe, name), daemon=True).start()
        deadline = None if timeout is None else time.monotonic() + timeout
        open_pipes = 2
        while open_pipes:
            wait = None if deadline is None else deadline - time.monotonic()
            try:
                if wait is not None and wait <= 0:
                    raise queue.Empty
                name, line = lines.get(timeout=wait)
            except queue.Empty:
                self._kill(proc)
                raise subprocess.TimeoutExpired(self.cmd, timeout, "".join(self.collected["stdout"]),
                                                "".join(self.collected["stderr"])) from None
            if line is None:
                open_pipes -= 1
            else:
                self._handle(name, line)
        self._flush()
        returncode = proc.wait()
        result = subprocess.CompletedProcess(self.cmd, returncode, "".join(self.collected["stdout"]),
                                             "".join(self.collected["stderr"]))
        if check:
            result.check_returncode()
        return result

    def _handle(self, pipe_name: str, raw: str) -> None:
        """Split one raw line of mpirun's pipe into per-rank text.

        OpenMPI tags every chunk a rank wrote, not every line: an unbuffered
        ``print`` writes the text and its newline separately, arriving as
        ``[1,0]<stdout>:text[1,0]<stdout>:\\n``.  So text is appended to a buffer per
        (rank, stream) and handed on when its newline arrives.
        """
        position, source = 0, None  # text before any tag is mpirun's own
        for tag in _TAG.finditer(raw):
            self._append(source, pipe_name, raw[position:tag.start()])
            source = (int(tag.group(2)), tag.group(3))
            position = tag.end()
        self._append(source, pipe_name, raw[position:])

    def _append(self, source, pipe_name: str, text: str) -> None:
        if not text:
            return
        if source is None:  # mpirun's own message (launch failure, abort notice)
            source = (None, pipe_name)
        pending = self.pending.get(source, "") + text
        *complete, rest = pending.split("\n")
        self.pending[source] = rest
        for line in complete:
            self._emit(source, line)

    def _emit(self, source, line: str) -> None:
        rank, stream_name = source
        self.collected[stream_name].append(line + "\n")
        if rank is None or rank == self.show_rank:
            self.on_line(rank, stream_name, line)

    def _flush(self) -> None:
        for source, rest in self.pending.items():
            if rest:
                self._emit(source, rest)
        self.pending.clear()

    @staticmethod
    def _kill(proc) -> None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        proc.wait()


def main(argv: list[str] | None = None, prog: str = "python -m tfxr.launch") -> int:
    """``python -m tfxr.launch --np N [--launcher L] [--print] -- MODULE ARGS...``"""
    argv = sys.argv[1:] if argv is None else list(argv)

    def body() -> int:
        ours, module = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
        args, _ = parse_config(LaunchConfig, ours, prog, main.__doc__ + (
            "\n\nRuns `python -m MODULE ARGS` on N ranks with the launcher line tfxr builds everywhere "
            "(printed on stderr first, so a job log shows it).  The options are tfxr.configs.LaunchConfig's."))
        if not module:
            raise ConfigError("give the module to run after `--`, e.g. -- tfxr.train --data DIR")
        script = args.host_discovery_script or None
        if script is not None and not os.access(script, os.X_OK):
            raise ConfigError(f"--host-discovery-script {script}: not an executable file")
        cmd = launch_command(args.np, module, args.launcher, min_np=args.min_np, max_np=args.max_np,
                             discovery_script=os.path.abspath(script) if script else None,
                             mpirun=args.mpirun)
        if args.print:
            print(shlex.join(cmd))
            return 0
        print(f"[tfxr] launcher: {shlex.join(cmd)}", file=sys.stderr, flush=True)
        if shutil.which(cmd[0]) is None:
            raise LaunchError(f"{cmd[0]}: not found on PATH (needed to start {args.np} rank(s))")
        return subprocess.run(cmd, env=clean_launch_env()).returncode
    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
