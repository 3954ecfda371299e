"""The Horovod runtime: the only module of tfxr that imports Horovod.

Initialisation (with bounded stalls and the optional timeline), rank and size, the
gradient allreduce, broadcasts and gathers.  Horovod is unmaintained upstream, so the
rest of tfxr sees only these functions.  Launched without a launcher (a notebook, a plain
``python -m``), the same calls run single-process.  Each Horovod touch point is marked
``# HVD``.  How ranks are *started* is :mod:`tfxr.launch`; ``python -m tfxr.distributed
--np N -- MODULE ARGS`` is kept as another name of ``python -m tfxr.launch``.

Keras 3 note (measured): Horovod's Keras callbacks and ``DistributedOptimizer`` break
on Keras 3 variables.  The exact path is a ``tf.GradientTape`` wrapped by
``DistributedGradientTape``, with the Keras variables' backing ``tf.Variable``s
(``v.value``) given to ``broadcast_variables`` and used as gradient sources.

No silent hangs, two mechanisms for two kinds of stall:

* a rank that is alive but does not submit a tensor the others wait on (a different code
  path, a lock): Horovod's stall inspector, which :func:`init` turns on
  (``HOROVOD_STALL_CHECK_TIME_SECONDS``: rank 0 prints the missing ranks) with its shutdown
  (``HOROVOD_STALL_SHUTDOWN_TIME_SECONDS``: the job ends with an error), unless exported;
* a rank whose process stopped (SIGSTOP, a frozen node, swapped to death): the others then
  block inside MPI, Horovod's background thread with them, so its inspector never runs.
  :class:`StallWatchdog` covers this: every rank's watchdog thread touches a heartbeat file
  each second and, when one training step has run longer than the bound, prints which
  ranks' heartbeats stopped and ends its process, and the launcher ends the job.

Elastic training (``horovodrun --gloo --min-np --max-np --host-discovery-script``, the
run scaffold's ``elastic=true``): :func:`elastic_run` runs a function under Horovod's
elastic loop (``hvd.elastic.run``'s semantics: a lost worker rolls every rank back to the
last commit and goes on with the rest, a new host joins at the next commit) with the state
of :func:`elastic_state`.  Horovod's ``TensorFlowKerasState`` calls ``optimizer.variables()``,
a list in Keras 3 (measured: TypeError), and its ``TensorFlowState`` broadcasts nothing at a
sync in eager mode; tfxr's state is Horovod's ``ObjectState`` (plain Python, deep-copied)
plus the variables' backing ``tf.Variable``s, copied to host memory at a commit and
broadcast from rank 0 at a sync.
"""
from __future__ import annotations

import copy
import os
import sys
import threading
import time
import warnings

from tfxr import log
from tfxr.cpu import configure_tensorflow_threads
# launch detection lives in tfxr.launch; these names stay importable from here
from tfxr.launch import LaunchError, launched_under_mpi, launched_world_size, mpi_comm  # noqa: F401
from tfxr.launch import main as launch_cli

#: seconds a rank may lag behind the others in a collective before rank 0 names it
DEFAULT_STALL_CHECK_S = 60
#: seconds after which a stalled job is ended (0: wait forever)
DEFAULT_STALL_SHUTDOWN_S = 600

#: seconds an elastic worker waits in Gloo's rendezvous for the others (Horovod's default: 30)
ELASTIC_RENDEZVOUS_S = 600

_hvd = None          # the horovod.tensorflow module once init() ran with it
_initialized = False


def stall_environment(stall_timeout: float | None = None, env=None) -> dict:
    """Horovod's stall settings for a run: ``{variable: value}`` to export before hvd.init().

    ``stall_timeout`` (seconds) is when a stalled job ends; the warning naming the stalled
    ranks comes at a quarter of it (at most :data:`DEFAULT_STALL_CHECK_S`, at least 1 s).
    ``None``: the defaults; ``0``: warn after the default time but never shut down.
    A value the user exported wins.
    """
    env = os.environ if env is None else env
    shutdown = DEFAULT_STALL_SHUTDOWN_S if stall_timeout is None else stall_timeout
    check = DEFAULT_STALL_CHECK_S if not shutdown else max(1, min(DEFAULT_STALL_CHECK_S, int(shutdown // 4)))
    wanted = {"HOROVOD_STALL_CHECK_TIME_SECONDS": str(check),
              "HOROVOD_STALL_SHUTDOWN_TIME_SECONDS": str(int(shutdown))}
    return {k: v for k, v in wanted.items() if k not in env}


def init(pin_gpu: bool = True, stall_timeout: float | None = None, timeline: str = "") -> None:
    """Initialise Horovod (or single-process mode) and pin one GPU per local rank.

    ``stall_timeout``: see :func:`stall_environment`.  ``timeline``: a file for Horovod's
    timeline (chrome://tracing JSON, written by rank 0, cycles marked), summarised by
    :func:`tfxr.timeline.summarize`.  Both only take effect on the first call of a process.
    """
    global _hvd, _initialized
    if _initialized:
        return
    os.environ.update(stall_environment(stall_timeout))   # read by Horovod's background thread
    if elastic():
        # after a change of workers, the rendezvous waits for a joining worker that is still
        # starting (TensorFlow, the model): Gloo's 30 s default ended the run here under load
        os.environ.setdefault("HOROVOD_GLOO_TIMEOUT_SECONDS", str(ELASTIC_RENDEZVOUS_S))
    if timeline:
        os.environ["HOROVOD_TIMELINE"] = os.path.abspath(timeline)
        os.environ.setdefault("HOROVOD_TIMELINE_MARK_CYCLES", "1")
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
        import tensorflow as tf   # lazy, as below: launch-only users of this module need no TensorFlow

        gpus = tf.config.list_physical_devices("GPU")
        for g in gpus:
            tf.config.experimental.set_memory_growth(g, True)
        if gpus:  # HVD: one GPU per process, chosen by local rank
            tf.config.set_visible_devices(gpus[local_rank() % len(gpus)], "GPU")
        else:
            # CPU ranks: each computes on its own cores (bound by mpirun, or an even share of
            # the node); TFXR_CPU_THREADS sets the count explicitly.  See tfxr.cpu.
            configure_tensorflow_threads(tf, _hvd.local_size() if _hvd else 1)  # HVD


class StallWatchdog:
    """Ends this rank (exit 1, one line naming the stalled ranks) when a step runs past ``timeout``.

    Used as ``with watchdog.step(): step(...)`` (``step(tracing=True)`` for the first calls,
    which trace and compile the step: they get four times the bound).  A thread touches ``DIR/rank-R`` every
    ``timeout / 8`` seconds (at most 1 s); a step that has been running for ``timeout``
    seconds means a collective is waiting for a rank that will not come, and the ranks
    whose heartbeat is older than half the bound are the ones that stopped.  Steps only:
    validation or a checkpoint on rank 0 can take long, a training step cannot.  ``DIR`` is
    made on the first step (below the run's output folder) and removed by :meth:`close`.
    """

    def __init__(self, directory: str, timeout: float, rank: int, world: int, exit=os._exit):
        self.directory, self.timeout, self.rank, self.world = directory, float(timeout), rank, world
        self.tick = min(1.0, self.timeout / 8)
        self._since: float | None = None       # when the running step started
        self._limit = self.timeout
        self._exit = exit
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def step(self, tracing: bool = False) -> "StallWatchdog":
        self._limit = self.timeout * (4 if tracing else 1)
        return self

    def __enter__(self):
        if self._thread is None:
            os.makedirs(self.directory, exist_ok=True)
            self._beat()
            self._thread = threading.Thread(target=self._watch, name="tfxr-stall-watchdog", daemon=True)
            self._thread.start()
        self._since = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        self._since = None

    def _path(self, rank: int) -> str:
        return os.path.join(self.directory, f"rank-{rank}")

    def _beat(self) -> None:
        with open(self._path(self.rank), "a"):
            os.utime(self._path(self.rank))

    def stalled_ranks(self, now: float | None = None) -> list[int]:
        """Ranks whose heartbeat is older than half the bound (or missing)."""
        now = time.time() if now is None else now
        stale = []
        for r in range(self.world):
            try:
                age = now - os.stat(self._path(r)).st_mtime
            except OSError:
                age = float("inf")
            if age > self.timeout / 2:
                stale.append(r)
        return stale

    def _watch(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self._beat()
            except OSError:
                pass
            since = self._since
            if since is not None and time.monotonic() - since > self._limit:
                stalled = self.stalled_ranks()
                who = (f"rank(s) {', '.join(map(str, stalled))} stopped responding (no heartbeat for "
                       f"{self.timeout / 2:g} s)" if stalled else
                       "every rank is alive: one is not submitting its tensors (Horovod's stall "
                       "warning above names it)")
                log.error(f"rank {self.rank}: a training step has waited {self._limit:g} s "
                      f"(stall_timeout): {who}; ending the job")
                self._exit(1)
                return

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            try:
                os.remove(self._path(self.rank))
                os.rmdir(self.directory)      # the last rank to leave removes the folder
            except OSError:
                pass


def elastic() -> bool:
    """Whether Horovod's elastic driver started this process (``HOROVOD_ELASTIC=1``)."""
    return os.environ.get("HOROVOD_ELASTIC") == "1"


def elastic_state(variables, **objects):
    """The state :func:`elastic_run` keeps across a change of workers.

    ``variables`` (Keras or tf variables): copied to host memory at ``commit()``, written
    back at a rollback, broadcast from rank 0 at every sync.  ``objects``: plain Python
    values (attributes of the state), deep-copied at a commit, so a later in-place change
    (a history list growing) never leaks into the committed copy; broadcast from rank 0 at a
    sync.  ``commit()`` also raises Horovod's ``HostsUpdatedInterrupt`` on every rank when
    the driver announced a host change (the elastic loop then re-forms the world).

    What a commit costs: a host copy of every variable (device to host on a GPU) and the
    deep copy of the objects, plus one small ``broadcast_object`` (Horovod's check for a host
    change); the variables themselves are broadcast only at a sync, when workers re-form.
    """
    _require_init()
    from horovod.common.elastic import ObjectState  # HVD

    class ElasticState(ObjectState):  # HVD
        def __init__(self):
            self._tracked = backing_variables(variables)
            self._values = [v.numpy() for v in self._tracked]
            super().__init__(bcast_object=broadcast_object, get_rank=rank, **copy.deepcopy(objects))

        def save(self):
            self._values = [v.numpy() for v in self._tracked]
            self._saved_state = {k: copy.deepcopy(getattr(self, k)) for k in self._saved_state}

        def restore(self):
            for v, value in zip(self._tracked, self._values):
                v.assign(value)
            self._set_attrs()

        def sync(self):
            broadcast_variables(self._tracked)   # HVD: rank 0's values on every rank
            super().sync()                       # rank 0's objects
            self.save()

        def _set_attrs(self):
            for k, value in self._saved_state.items():
                setattr(self, k, copy.deepcopy(value))

    return ElasticState()


def elastic_run(func, state):
    """``func(state)`` under Horovod's elastic loop (``hvd.elastic.run``), returning its result.

    Before each (re)start the state is synchronised from rank 0.  A collective that fails
    because a worker died (TensorFlow's ``OpError`` from a Horovod op) rolls the state back
    to its last commit (``HorovodInternalError``); a host change announced at a commit
    keeps the committed state (``HostsUpdatedInterrupt``); either way Horovod is shut down
    and initialised again with the workers that are there, and ``func`` starts over.
    """
    _require_init()
    import tensorflow as tf   # lazy (see init)
    from horovod.common.elastic import run_fn  # HVD
    from horovod.common.exceptions import HorovodInternalError  # HVD

    def guarded(state):
        try:
            return func(state)
        except tf.errors.OpError as e:   # a Horovod op whose peer is gone
            if "horovod" in str(e).lower():
                raise HorovodInternalError(e) from e
            raise

    def reset():
        _hvd.shutdown()  # HVD
        _hvd.init()  # HVD: a new world, with the workers the driver has now

    return run_fn(guarded, reset)(state)


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


def local_size() -> int:
    """Ranks on this node (1 before :func:`init` or without Horovod)."""
    if not _initialized:
        return 1
    return _hvd.local_size() if _hvd else 1  # HVD


def is_chief() -> bool:
    return rank() == 0


def backing_variables(variables) -> list:
    """The tf.Variables behind Keras 3 variables (what Horovod and tapes need)."""
    import keras   # lazy: importing this module must not load Keras/TensorFlow

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
    """Wrap a GradientTape so that gradient() returns rank-averaged gradients (ring-allreduce).

    A world of one gets the tape itself: Horovod's wrapper would return the same gradients
    (its per-gradient ``tf.cond`` takes the identity branch unless ``HOROVOD_ELASTIC`` lets
    the world grow), but tracing one ``tf.cond`` per variable is a quarter of tracing a
    YOLOv8 step."""
    _require_init()
    if not _hvd or (_hvd.size() == 1 and not int(os.environ.get("HOROVOD_ELASTIC", 0))):  # HVD
        return tape
    return _hvd.DistributedGradientTape(tape, compression=_compression(compression))  # HVD


def allreduce_gradients(grads, compression: str = "none") -> list:
    """Average a list of gradients over ranks in one grouped ring-allreduce.

    The same collective DistributedGradientTape issues; used where the gradient
    computation is XLA-compiled, since Horovod's ops have no XLA kernels on CPU.
    """
    _require_init()
    if not _hvd or (_hvd.size() == 1 and not elastic()):   # elastic: the world may grow after tracing
        return list(grads)
    return _hvd.grouped_allreduce(list(grads), op=_hvd.Average,
                                  compression=_compression(compression))  # HVD


def allreduce_mean(value, name: str | None = None):
    """Average a tensor (or Python number) over ranks."""
    _require_init()
    if not _hvd or _hvd.size() == 1:
        return value
    import tensorflow as tf   # lazy (see init)

    return _hvd.allreduce(tf.convert_to_tensor(value), op=_hvd.Average, name=name)  # HVD


def allgather_object(obj) -> list:
    """Every rank's Python object, in rank order, on every rank."""
    _require_init()
    if not _hvd or _hvd.size() == 1:
        return [obj]
    return _hvd.allgather_object(obj)  # HVD


def allgather_records(mine: list, key=None) -> list:
    """Every rank's records (a list each: predictions, detections, scored boxes) as one list,
    the same on every rank: sorted by ``key`` (e.g. the image id), so the result does not
    depend on how many ranks read the data, or in rank order when ``key`` is None.  The one
    way tfxr gathers results across ranks; a single process (Horovod not started) gets
    ``mine`` back."""
    parts = allgather_object(mine) if _initialized and _hvd and _hvd.size() > 1 else [mine]
    records = [r for part in parts for r in part]
    return records if key is None else sorted(records, key=key)


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


if __name__ == "__main__":   # python -m tfxr.distributed ...: the older name of python -m tfxr.launch
    sys.exit(launch_cli(prog="python -m tfxr.distributed"))
