"""Everything distributed, in one place: the only module of tfxr that imports Horovod.

    python -m tfxr.distributed --np 4 -- tfxr.train --data tfrec/tb --out runs/tb
    python -m tfxr.distributed --np 4 --print -- tfxr.train ...   # only print the command

runs (or prints) the one ``mpirun`` command line tfxr builds (:func:`mpirun_command`),
so shell scripts, notebooks, tests and the benchmark all launch ranks the same way.

Horovod is unmaintained upstream, so the rest of tfxr sees only these functions.
Launched without ``mpirun``/``horovodrun`` (a notebook, a plain ``python -m``), the
same calls run single-process.  Each Horovod touch point is marked ``# HVD``.

Keras 3 note (measured): Horovod's Keras callbacks and ``DistributedOptimizer`` break
on Keras 3 variables.  The exact path is a ``tf.GradientTape`` wrapped by
``DistributedGradientTape``, with the Keras variables' backing ``tf.Variable``s
(``v.value``) given to ``broadcast_variables`` and used as gradient sources.
"""
from __future__ import annotations

import os
import re
import warnings
from typing import Callable

from tfxr.errors import ConfigError


class LaunchError(ConfigError):
    """A multi-process launch that cannot work (no Horovod, or Horovod not seeing the ranks)."""

_LAUNCH_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "HOROVOD_SIZE", "MV2_COMM_WORLD_SIZE")

#: world-size variables of the launchers tfxr knows: Open MPI's mpirun, MPICH/Intel MPI
#: (Hydra, PMI-1/2), horovodrun's Gloo controller, MVAPICH2
_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "HOROVOD_SIZE", "MV2_COMM_WORLD_SIZE")

#: Slurm step ids that are not an ``srun`` task launch (the batch script, the extern step)
_SLURM_NON_TASK_STEPS = ("batch", "extern", "interactive", "4294967294", "4294967291", "4294967290")

_hvd = None          # the horovod.tensorflow module once init() ran with it
_initialized = False


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
    from mpi4py import MPI

    return MPI.COMM_WORLD


_LAUNCH_PREFIXES = ("OMPI_", "PMIX_", "PMI_", "OPAL_", "HOROVOD_", "MV2_", "HYDRA_")


def clean_launch_env(env=None) -> dict:
    """The environment for starting a new MPI job from this process.

    After hvd.init() a process is an MPI singleton whose C-level environment carries
    OMPI_/PMIX_ variables; an mpirun started with them believes it is already inside a
    job and fails.  Python's os.environ snapshot never saw them; drop them anyway.
    """
    env = dict(os.environ if env is None else env)
    return {k: v for k, v in env.items() if not k.startswith(_LAUNCH_PREFIXES)}


def gpus_present() -> bool:
    """Whether this node has an NVIDIA GPU (checked without importing TensorFlow)."""
    import glob
    import shutil

    return bool(glob.glob("/dev/nvidia[0-9]*")) or (shutil.which("nvidia-smi") is not None
                                                     and bool(glob.glob("/proc/driver/nvidia/gpus/*")))


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


def mpirun_command(np_: int, argv: list[str], python: str | None = None,
                   cores_per_rank: int | None = None) -> list[str]:
    """``mpirun -np N python -m ...`` with the flags a workstation or root container needs,
    and core binding for CPU ranks (see :func:`binding_flags`)."""
    import sys

    cmd = ["mpirun", "-np", str(np_), "--oversubscribe", *binding_flags(np_, cores_per_rank)]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    return cmd + [python or sys.executable, "-m", *argv]


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
    import subprocess

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
    import sys

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
        import queue
        import subprocess
        import threading
        import time

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
        import signal

        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        proc.wait()


def init(pin_gpu: bool = True) -> None:
    """Initialise Horovod (or single-process mode) and pin one GPU per local rank."""
    global _hvd, _initialized
    if _initialized:
        return
    launched = launched_world_size()
    try:
        import horovod.tensorflow as hvd  # HVD
    except ImportError as e:
        if launched > 1:
            raise LaunchError(f"launched as {launched} processes but Horovod is not importable ({e}): "
                              f"each would train alone into the same output; run `make install` "
                              f"(Horovod with TensorFlow and MPI/Gloo), or run one process") from None
        warnings.warn("horovod is not installed: running single-process", stacklevel=2)
        hvd = None
    if hvd is not None:
        hvd.init()  # HVD
        if launched > 1 and hvd.size() == 1:  # HVD
            raise LaunchError(f"launched as {launched} processes but Horovod sees a world of 1 (its MPI "
                              f"does not match the launcher's: e.g. srun needs --mpi=pmix or pmi2 and an "
                              f"MPI built for it; or use mpirun / horovodrun)")
        _hvd = hvd
    _initialized = True
    if pin_gpu:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        for g in gpus:
            tf.config.experimental.set_memory_growth(g, True)
        if gpus:  # HVD: one GPU per process, chosen by local rank
            tf.config.set_visible_devices(gpus[local_rank() % len(gpus)], "GPU")
        else:
            # CPU ranks: each computes on its own cores (bound by mpirun, or an even share of
            # the node); TFXR_CPU_THREADS sets the count explicitly.  See tfxr.cpu.
            from tfxr.cpu import configure_tensorflow_threads

            configure_tensorflow_threads(tf, _hvd.local_size() if _hvd else 1)  # HVD


def _require_init():
    if not _initialized:
        init()


def rank() -> int:
    _require_init()
    return _hvd.rank() if _hvd else 0  # HVD


def size() -> int:
    _require_init()
    return _hvd.size() if _hvd else 1  # HVD


def local_rank() -> int:
    if not _initialized:
        return 0
    return _hvd.local_rank() if _hvd else 0  # HVD


def is_chief() -> bool:
    return rank() == 0


def backing_variables(variables) -> list:
    """The tf.Variables behind Keras 3 variables (what Horovod and tapes need)."""
    import keras

    return [v.value if isinstance(v, keras.Variable) else v for v in variables]


def broadcast_variables(variables, root: int = 0) -> None:
    """Make every rank's variables equal to root's (model and optimizer state)."""
    _require_init()
    if _hvd and _hvd.size() > 1:
        _hvd.broadcast_variables(backing_variables(variables), root_rank=root)  # HVD


def _compression(name: str):
    """Horovod's allreduce compression for 'none' or 'fp16'."""
    return _hvd.Compression.fp16 if name == "fp16" else _hvd.Compression.none  # HVD


def distributed_tape(tape, compression: str = "none"):
    """Wrap a GradientTape so that gradient() returns rank-averaged gradients (ring-allreduce)."""
    _require_init()
    if not _hvd:
        return tape
    return _hvd.DistributedGradientTape(tape, compression=_compression(compression))  # HVD


def allreduce_gradients(grads, compression: str = "none") -> list:
    """Average a list of gradients over ranks in one grouped ring-allreduce.

    The same collective DistributedGradientTape issues; used where the gradient
    computation is XLA-compiled, since Horovod's ops have no XLA kernels on CPU.
    """
    _require_init()
    if not _hvd or _hvd.size() == 1:
        return list(grads)
    return _hvd.grouped_allreduce(list(grads), op=_hvd.Average,
                                  compression=_compression(compression))  # HVD


def allreduce_mean(value, name: str | None = None):
    """Average a tensor (or Python number) over ranks."""
    _require_init()
    if not _hvd or _hvd.size() == 1:
        return value
    import tensorflow as tf

    return _hvd.allreduce(tf.convert_to_tensor(value), op=_hvd.Average, name=name)  # HVD


def allgather_object(obj) -> list:
    """Every rank's Python object, in rank order, on every rank."""
    _require_init()
    if not _hvd or _hvd.size() == 1:
        return [obj]
    return _hvd.allgather_object(obj)  # HVD


def broadcast_object(obj, root: int = 0):
    _require_init()
    if not _hvd or _hvd.size() == 1:
        return obj
    return _hvd.broadcast_object(obj, root_rank=root)  # HVD


def barrier() -> None:
    _require_init()
    if _hvd and _hvd.size() > 1:
        allgather_object(None)  # a collective every rank must reach


def shutdown() -> None:
    """End a multi-process Horovod job.  A world of one stays initialised: MPI cannot be
    initialised twice in a process, and a notebook or test may run several commands."""
    global _hvd, _initialized
    if _hvd and _hvd.size() > 1:  # HVD
        _hvd.shutdown()  # HVD
    _hvd, _initialized = None, False


def command_for(np_: int, argv: list[str]) -> list[str]:
    """``python -m argv...`` for one process, the :func:`mpirun_command` line for more."""
    import sys

    return mpirun_command(np_, argv) if np_ > 1 else [sys.executable, "-m", *argv]


def main(argv: list[str] | None = None) -> int:
    """``python -m tfxr.distributed --np N [--print] -- MODULE ARGS...``"""
    import argparse
    import shlex
    import subprocess
    import sys

    from tfxr.cli import run_main

    argv = sys.argv[1:] if argv is None else list(argv)

    def body() -> int:
        ours, module = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
        parser = argparse.ArgumentParser(prog="python -m tfxr.distributed", description=main.__doc__ + (
            "\n\nRuns `python -m MODULE ARGS` on N ranks with the mpirun flags tfxr uses everywhere."))
        parser.add_argument("--np", type=int, required=True, help="number of ranks (processes)")
        parser.add_argument("--print", action="store_true", help="print the command instead of running it")
        args = parser.parse_args(ours)
        if args.np < 1:
            raise ConfigError(f"--np: {args.np} is below the minimum 1")
        if not module:
            raise ConfigError("give the module to run after `--`, e.g. -- tfxr.train --data DIR")
        cmd = command_for(args.np, module)
        if args.print:
            print(shlex.join(cmd))
            return 0
        return subprocess.run(cmd, env=clean_launch_env()).returncode
    return run_main(body)


if __name__ == "__main__":
    import sys

    sys.exit(main())
