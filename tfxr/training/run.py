"""The one run scaffold every tfxr trainer plugs into (the classifier, the GAN, the detector).

A trainer owns its networks, optimizers and step; this module owns everything around them,
so that every trainer seeds, broadcasts, loops, logs, checkpoints, resumes and stops the
same way.  :meth:`Run.fit` does, in order:

1. **The run folder** (:class:`RunFolder`): one lock per ``--out`` (``fcntl.flock`` on
   ``OUT/.tfxr-run.lock``, released on exit and by the kernel on a kill), so a second run
   into the same folder is refused while the first one runs; a folder that already holds a
   run (``config.yaml`` or ``history.json``) is refused unless ``--resume`` (continue it)
   or ``--overwrite`` (remove that run's files first).
2. **Resume** (``--resume``): the newest checkpoint of ``OUT/checkpoints``
   (:class:`~tfxr.training.checkpoints.CheckpointStore`: model, optimizer and the run
   state in one file); refused when the config differs from the run's ``config.yaml`` in
   anything but the config class's ``RESUME_SAFE`` fields (e.g. more epochs), listing what
   differs; what did change is recorded under ``_resumed`` in ``config.yaml``.
3. ``config.yaml`` (:class:`~tfxr.training.runlog.RunLog`), then rank 0's variables on every
   rank (``# HVD`` broadcast), per-rank seed states excepted.
4. **The epoch loop**: the trainer's steps (a progress bar on rank 0), its end-of-epoch
   numbers (validation), a NaN/inf check of the losses and weights (a diverged run stops
   with :class:`~tfxr.errors.TrainingDiverged`, exit 3, before anything of that epoch is
   saved), the stopping policy (:class:`~tfxr.training.schedule.PlateauPolicy`: best
   epoch, reduce-on-plateau, early stopping), the history, the checkpoint, ``history.json``,
   TensorBoard and one console line (rank 0).
5. The trainer's final outputs (rank 0), the lock released.

With ``elastic=true`` (a job of Horovod's elastic driver) the same loop runs inside
``hvd.elastic.run``'s loop, committed after every epoch and, with ``elastic_commit_steps=N``,
every N steps inside one: see :meth:`Run._fit_elastic`.  Every trainer's ``train_epoch``
loops over :class:`EpochSteps`, which is what lets an epoch go on from a commit inside it.

Seeding lives here too: :func:`init_process` (Horovod, the logger's rank),
:func:`seed_process` (one global seed, op determinism) and :func:`offset_seed_states`
(each rank's own dropout stream, ``RANK_SEED_STRIDE`` apart).

How a trainer plugs in (the :class:`Task` protocol; ``training/classifier.py`` and
``training/gan.py`` are the two examples)::

    class MyTrainer:
        def __init__(self, cfg: MyConfig):             # MyConfig in tfxr/configs.py, with
            self.rank, self.world = init_process()     #   out, epochs, seed, resume, overwrite,
            seed_process(cfg.seed, cfg.deterministic)  #   keep_checkpoints, progress, RESUME_SAFE
            ...build networks, optimizers, the step...
            self.state = new_run_state()               # epoch, global_step, history (+ own keys)
            offset_seed_states(self.seed_variables(), self.rank)
        def fit(self):
            return Run(self.cfg, self.rank, self.world).fit(self)
        # and the Task methods below: checkpoint_objects, seed_variables, broadcast_variables,
        # finite_variables, resolved, outputs, begin, describe, train_epoch, end_epoch,
        # after_epoch, finish, summary

Everything a trainer checks (options, data) it checks in ``__init__``, before ``fit``
writes anything.  Collectives (allreduce, gather) belong in ``train_epoch`` and
``end_epoch``, which every rank runs; ``after_epoch``, ``finish`` and ``summary`` run on
rank 0 only (so ``end_epoch`` may add rank-0-only numbers, as the GAN's diversity ratio).
Also set ``self.steps`` (steps per epoch, at the latest in ``begin``) and
``self.global_batch`` (images per step over all ranks).
A trainer with one model and one optimizer inherits most Task methods from
:class:`OneModelTask`; every step inherits its host side (gradient accumulation, the stall
watchdog, the elastic world) from :class:`AccumulatedStep` and sizes its epoch with
:func:`whole_updates`.
"""
from __future__ import annotations

import errno
import fcntl
import math
import os
import shutil
import time
from typing import Any, Callable, Protocol

import keras
import numpy as np
import tensorflow as tf
import yaml

from tfxr import distributed as dist
from tfxr import log
from tfxr.config import renamed_paths, to_dict
from tfxr.errors import ConfigError, RunFolderError, TfxrError, TrainingDiverged
from tfxr.files import atomic_path, remove_stale_temporaries
from tfxr.progress import progress_bar
from tfxr.training.checkpoints import CheckpointStore, read_index, variables_by_path
from tfxr.training.runlog import RunLog
from tfxr.training.schedule import Decision, PlateauPolicy, WarmupSchedule

#: added to a rank's seed states (dropout) per rank, so ranks draw different masks
RANK_SEED_STRIDE = 1_000_003

#: the lock file of a run folder
LOCK_NAME = ".tfxr-run.lock"

#: files whose presence makes a folder a run folder
RUN_MARKERS = ("config.yaml", "history.json")

#: what the scaffold itself writes into a run folder (``--overwrite`` removes these)
SCAFFOLD_OUTPUTS = ("config.yaml", "history.json", "checkpoints", "tensorboard")


# --------------------------------------------------------------------------- the protocol
class Task(Protocol):
    """What a trainer gives the scaffold (duck-typed: no base class to inherit)."""

    cfg: Any            # its config dataclass (tfxr.configs)
    rank: int
    world: int
    state: dict         # new_run_state() + the trainer's own keys; checkpointed as JSON
    steps: int          # steps per epoch (known after begin())
    global_batch: int   # images per step over all ranks (for images/s)

    def checkpoint_objects(self) -> dict[str, dict]:
        """name -> ``variables_by_path(...)`` of everything a checkpoint holds."""

    def seed_variables(self) -> list:
        """Per-rank seed states (dropout): offset per rank, never broadcast."""

    def broadcast_variables(self) -> list:
        """Rank 0's variables every rank starts from (seed states excluded)."""

    def finite_variables(self) -> list:
        """Weights that must stay finite (checked after every epoch; Keras or tf variables)."""

    def resolved(self) -> dict:
        """``config.yaml``'s ``_resolved`` section: values derived at run time."""

    def outputs(self) -> tuple[str, ...]:
        """Names in OUT the trainer writes beside the scaffold's (``--overwrite`` removes them)."""

    def begin(self) -> None:
        """After restore and broadcast, before the first epoch (datasets, ``steps``)."""

    def describe(self) -> str:
        """The line logged before the first epoch (model size, workers, batch, steps)."""

    def train_epoch(self, epoch: int, progress) -> dict:
        """Every rank: run the steps of epoch ``epoch`` (0-based) by looping over
        ``EpochSteps(self, progress)`` (which advances ``state["global_step"]`` and the
        progress bar, and skips the steps an elastic commit inside the epoch holds already);
        return the epoch's training numbers, averaged over ranks (each checked to be finite)."""

    def end_epoch(self, record: dict) -> dict:
        """Every rank: more numbers for the record (validation); may be empty."""

    def after_epoch(self, record: dict, decision: Decision) -> None:
        """Rank 0, after the record joined the history: best model, sample grids, plots."""

    def finish(self) -> None:
        """Rank 0, after the last epoch: the final models."""

    def summary(self, record: dict) -> str:
        """Rank 0: the epoch's console line."""

    # elastic training only (``elastic=true``, see Run._fit_elastic):
    def adopt_world(self, rank: int, world: int) -> None:
        """Every rank, at every (re)start of an elastic run, before ``begin``: take the live
        rank and world (the learning-rate scale, ``steps``, ``global_batch``, data shards).
        Collectives are allowed here (every live rank calls it together)."""

    def epoch_variables(self) -> list:
        """The tf.Variables the trainer sums the running epoch's numbers in (a loss sum, the
        allreduce counter): committed with the model, so an epoch that goes on from a commit
        inside it reports the whole epoch's numbers.  Optional (default: none)."""


# --------------------------------------------------------------------------- seeding
def new_run_state(**extra) -> dict:
    """The plain-Python state every run checkpoints: epoch, global step, history."""
    return {"epoch": 0, "global_step": 0, "history": [], **extra}


def init_process(**options) -> tuple[int, int]:
    """Start Horovod (or single-process mode) with ``tfxr.distributed.init``'s ``options``;
    returns (rank, world); the logger learns the rank."""
    dist.init(**options)             # refuses a multi-process launch without Horovod
    rank, world = dist.rank(), dist.size()
    log.set_rank(rank)
    return rank, world


def seed_process(seed: int, deterministic: bool) -> None:
    """One global seed for Python, NumPy, TensorFlow and Keras (the same on every rank, so
    every rank builds the same initial weights); op determinism when asked."""
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)


def seed_states(model) -> list:
    """A Keras model's seed-generator states (dropout, noise layers)."""
    return [v for v in model.non_trainable_variables if "seed_generator_state" in v.path]


def offset_seed_states(variables, rank: int) -> None:
    """Give rank ``rank`` its own streams: ``[seed, counter] -> [seed + rank*K, counter]``.

    Call after building (every rank starts from the same seed) and after a restore (the
    checkpoint holds rank 0's streams)."""
    if rank:
        for v in variables:
            v.assign(v.numpy() + np.array([rank * RANK_SEED_STRIDE, 0]).astype(v.dtype))


# --------------------------------------------------------------------------- the steps of an epoch
#: the run state's key for the running epoch (see EpochSteps); absent between epochs
RUNNING = "running_epoch"


def epoch_position(state: dict, steps: int, multiple: int = 1) -> int:
    """Steps of the running epoch a commit inside it holds already (0 at an epoch's start).

    Only elastic runs commit inside an epoch (``elastic_commit_steps``); a rollback to such a
    commit restarts the epoch there.  When the world changed and the epoch's step count with
    it (``steps_per_epoch=0``: one pass over each worker's share), the position keeps the
    fraction of the epoch done, rounded down to a ``multiple`` (``accumulate_steps``: an
    update boundary).  A trainer's ``begin`` skips that many batches of the epoch's data."""
    running = state.get(RUNNING)
    if not running:
        return 0
    if running["steps"] != steps:
        done = running["step"] * steps // running["steps"]
        running.update(step=done - done % multiple, steps=steps)
    return running["step"]


class EpochSteps:
    """The steps of a trainer's running epoch: what every ``train_epoch`` loops over.

    ``for step in EpochSteps(task, progress):`` yields the step numbers (0-based, within the
    epoch) still to run -- all of ``range(task.steps)``, or, after an elastic restart from a
    commit inside the epoch, those after the commit -- and after each step advances
    ``state["global_step"]`` and the progress bar and calls the scaffold's step hook
    (``progress.after_step(steps done)``: the elastic commit every ``elastic_commit_steps``).

    ``running``: the running epoch's plain-Python values in the run state (``state[RUNNING]``:
    its position, and what a trainer keeps over the epoch, e.g. the GAN's per-step numbers),
    committed with it and removed by the scaffold when the epoch's steps are done, so an
    end-of-epoch checkpoint never holds it.  ``first``: the step this call starts at; ``run``:
    the steps the epoch has run so far, restarts included (the divisor of its mean loss).
    """

    def __init__(self, task, progress, multiple: int = 1):
        self.task, self.progress = task, progress
        state = task.state
        self.first = epoch_position(state, task.steps, multiple)
        if self.first == 0:      # a new epoch (or one whose commit inside it held no step)
            state[RUNNING] = {"step": 0, "steps": task.steps, "run": 0}
        self.running = state[RUNNING]

    def __iter__(self):
        state, running, hook = self.task.state, self.running, getattr(self.progress, "after_step", None)
        for step in range(self.first, self.task.steps):
            yield step
            state["global_step"] += 1
            running["step"], running["run"] = step + 1, running["run"] + 1
            self.progress.update(1)
            if hook is not None:
                hook(step + 1)

    @property
    def run(self) -> int:
        return self.running["run"]


class OneModelTask:
    """The :class:`Task` methods of a trainer with one ``self.model`` and one ``self.optimizer``
    (the classifier, the detector): what is checkpointed, broadcast, NaN-checked and offset
    per rank, the learning-rate scale and, in elastic runs, the world it follows (``self.step``
    with ``adopt_world``, ``self.data_cfg``), and the epoch of steps (``train_epoch``: the
    trainer gives ``train_step``, ``lr_at`` and ``_batches``).  A trainer with more networks
    (the GAN) writes its own."""

    def checkpoint_objects(self) -> dict:
        return {"model": variables_by_path(self.model.variables),
                "optimizer": variables_by_path(self.optimizer.variables)}

    def seed_variables(self) -> list:
        return seed_states(self.model)

    def broadcast_variables(self) -> list:
        return list(self.model.variables) + list(self.optimizer.variables)

    def finite_variables(self) -> list:
        return list(self.model.weights)

    def epoch_variables(self) -> list:
        """The step's running sums: the epoch's loss sum and the allreduce counter."""
        return [self.step.loss_sum, self.step.allreduces]

    def train_epoch(self, epoch: int, progress) -> dict:
        """One epoch of ``self.train_step`` on the batches of ``self._batches``, the learning
        rate of every step from ``self.lr_at(global_step)``: the mean training loss over the
        ranks, the last learning rate and the gradient allreduces run.  In elastic runs it goes
        on from a commit inside the epoch (:class:`EpochSteps`)."""
        steps = EpochSteps(self, progress, self.cfg.accumulate_steps)
        if steps.first == 0:
            self.step.loss_sum.assign(0.0)
        allreduces = steps.running.setdefault("allreduces_before", int(self.step.allreduces.numpy()))
        for _ in steps:
            x, y = next(self._batches)
            self.optimizer.learning_rate.assign(self.lr_at(self.state["global_step"]))
            self.train_step(x, y)
        loss = float(dist.allreduce_mean(self.step.loss_sum.numpy() / steps.run))
        return {"train_loss": loss, "lr": float(self.optimizer.learning_rate.numpy()),
                "allreduces": int(self.step.allreduces.numpy()) - allreduces}   # gradient allreduces run

    def adopt_world(self, rank: int, world: int) -> None:
        """Elastic training (:meth:`Task.adopt_world`): the live rank and world, the learning-rate
        scale, ``global_batch`` and the step (its stall watchdog and accumulation) follow them;
        then :meth:`world_adopted`, the trainer's hook for anything else that depends on the world."""
        self.rank, self.world = rank, world
        self.scale_lr()
        self.global_batch = self.data_cfg.batch_size * world
        self.step.adopt_world(rank, world)
        self.world_adopted()

    def world_adopted(self) -> None:
        """After :meth:`adopt_world` (nothing by default; the classifier recounts its steps)."""

    def scale_lr(self) -> None:
        """The effective batch is accumulate_steps x batch x ranks: lr scaling (when on) and the
        warm-up use it.  Called at start and, in elastic runs, when the world changes."""
        cfg = self.cfg
        self.scale = self.world * cfg.accumulate_steps
        self.base_lr = cfg.lr * (self.scale if cfg.lr_scaling else 1)
        self.schedule = WarmupSchedule(self.base_lr, self.scale, cfg.warmup_epochs, cfg.min_lr)

    def final_as_best(self, final: str, best: str) -> None:
        """Copy ``OUT/final`` to ``OUT/best`` when no epoch saved a best one (no validation:
        the last epoch is the best one known)."""
        best_path = os.path.join(self.cfg.out, best)
        if not os.path.exists(best_path):
            with atomic_path(best_path, suffix=best[best.index("."):]) as tmp:
                shutil.copyfile(os.path.join(self.cfg.out, final), tmp)


# --------------------------------------------------------------------------- accumulation
def stall_watchdog(cfg, rank: int, world: int):
    """The :class:`~tfxr.distributed.StallWatchdog` of a run with ``cfg.stall_timeout`` (every
    trainer's config has it): a heartbeat folder below ``OUT``; None for one process or a
    bound of 0.  Elastic runs get one even when they start alone (workers may join)."""
    if not cfg.stall_timeout or (world == 1 and not getattr(cfg, "elastic", False)):
        return None
    return dist.StallWatchdog(os.path.join(cfg.out, ".tfxr-heartbeat"), cfg.stall_timeout, rank, world)


def whole_updates(steps: int, accumulate_steps: int, batch_size: int) -> int:
    """An epoch's ``steps`` micro-batches rounded down to whole updates of ``accumulate_steps``
    each (the remainder of a pass is dropped, so that an epoch -- and a checkpoint -- ends on
    an update); ConfigError when the epoch has not even one update (every trainer's check)."""
    if steps < accumulate_steps:
        raise ConfigError(f"accumulate_steps={accumulate_steps}: an epoch has only {steps} batch(es) of "
                          f"{batch_size} per rank; lower accumulate_steps or the batch size")
    return steps - steps % accumulate_steps




class GradientAccumulation:
    """Gradient accumulation and the stall watchdog of every trainer's step (the classifier's,
    the GAN's, the detector's): Horovod's ``backward_passes_per_step``, done in tfxr's steps
    because Horovod's ``DistributedOptimizer`` does not work with Keras 3.

    ``variable_sets``: the backing ``tf.Variable`` lists a step computes gradients for (one
    per optimizer: the GAN has two).  With ``steps`` K > 1, each call is one micro-batch: its
    local gradients are added to accumulators (:meth:`add`, no communication), and every K-th
    call takes their mean over the K micro-batches, allreduces every set in one grouped
    allreduce and hands it to the optimizers (:meth:`mean_allreduced`).  The update then
    equals one step on the K micro-batches together (effective batch K x batch x ranks) for
    a model without batch norm; batch norm statistics and dropout masks stay per micro-batch.
    ``allreduces`` counts the gradient allreduce rounds (one per update, all sets together).

    Host side, :meth:`run` picks the step function of each call (``plain`` with K = 1,
    ``accumulate`` or ``apply``) and runs it under the :class:`~tfxr.distributed.StallWatchdog`
    (``watchdog``, None for none), whose first K calls (tracing) get the longer bound.
    """

    def __init__(self, variable_sets: list[list], steps: int = 1, compression: str = "none", watchdog=None):
        if steps < 1:
            raise ConfigError(f"accumulate_steps: {steps} is below the minimum 1")
        self.steps, self.compression, self.watchdog = steps, compression, watchdog
        self.allreduces = tf.Variable(0, trainable=False, dtype=tf.int64)
        self.accumulators = ([[tf.Variable(tf.zeros_like(v), trainable=False) for v in group]
                              for group in variable_sets] if steps > 1 else [])
        self._micro = 0                       # micro-batches since the last update
        self._calls = 0

    # ---- host side
    def run(self, plain: Callable, accumulate: Callable, apply: Callable, *args):
        """One (micro-)batch: ``plain(*args)`` with K = 1, else ``accumulate`` or (every K-th) ``apply``."""
        self._calls += 1
        if self.watchdog is None:
            return self._pick(plain, accumulate, apply)(*args)
        with self.watchdog.step(tracing=self._calls <= self.steps):
            return self._pick(plain, accumulate, apply)(*args)

    def _pick(self, plain, accumulate, apply):
        if self.steps == 1:
            return plain
        self._micro += 1
        if self._micro < self.steps:
            return accumulate
        self._micro = 0
        return apply

    def adopt_world(self, rank: int, world: int) -> None:
        """Elastic training, at every (re)start: the watchdog's rank and world follow the live
        ones, and a half-accumulated update of a rolled-back attempt is dropped (commits are
        on update boundaries, so the restart begins a new update)."""
        if self.watchdog is not None:
            self.watchdog.rank, self.watchdog.world = rank, world
        self._micro = 0
        for accs in self.accumulators:
            for acc in accs:
                acc.assign(tf.zeros_like(acc))

    def close(self) -> None:
        """Stop the stall watchdog (if any) and remove its heartbeat files."""
        if self.watchdog is not None:
            self.watchdog.close()

    # ---- inside the steps' tf.functions
    def counted(self) -> None:
        """Count one allreduce round made by the step itself (``plain``: Horovod's tapes)."""
        self.allreduces.assign_add(1)

    def add(self, grad_sets: list[list]) -> None:
        """A micro-batch that is not the K-th: its local gradients added, no communication."""
        for accs, grads in zip(self.accumulators, grad_sets):
            for acc, g in zip(accs, grads):
                acc.assign_add(tf.cast(g, acc.dtype))

    def mean_allreduced(self, grad_sets: list[list]) -> list[list]:
        """The K-th micro-batch: the mean of the K gradients of every set, allreduced once
        (one grouped allreduce); the accumulators are zeroed for the next update."""
        means = [[(acc + tf.cast(g, acc.dtype)) / self.steps for acc, g in zip(accs, grads)]
                 for accs, grads in zip(self.accumulators, grad_sets)]
        flat = dist.allreduce_gradients([g for group in means for g in group], self.compression)   # HVD
        self.allreduces.assign_add(1)
        for accs in self.accumulators:
            for acc in accs:
                acc.assign(tf.zeros_like(acc))
        out, start = [], 0
        for group in means:
            out.append(flat[start:start + len(group)])
            start += len(group)
        return out


class AccumulatedStep:
    """The host side of every trainer's step (the classifier's, the GAN's, the detector's).

    A step's constructor calls :meth:`accumulate_with` with its gradient sources and its
    plain step function (K = 1); that one and the step's ``_step_accumulate`` and
    ``_step_accumulate_apply`` methods become ``tf.function``s, and each call of the step is
    one (micro-)batch run through :class:`GradientAccumulation` (under its stall watchdog)."""

    def accumulate_with(self, variable_sets: list[list], steps: int, compression: str, watchdog,
                        plain: Callable) -> None:
        self.accumulation = GradientAccumulation(variable_sets, steps, compression, watchdog)
        self.allreduces = self.accumulation.allreduces
        self._plain = tf.function(plain, reduce_retracing=True)
        self._accumulate = tf.function(self._step_accumulate, reduce_retracing=True)
        self._apply = tf.function(self._step_accumulate_apply, reduce_retracing=True)

    def __call__(self, *batch):
        """One (micro-)batch on this rank; returns the step function's tensors (no host sync)."""
        return self.accumulation.run(self._plain, self._accumulate, self._apply, *batch)

    def adopt_world(self, rank: int, world: int) -> None:
        """Elastic training: the live rank and world (see :meth:`GradientAccumulation.adopt_world`)."""
        self.accumulation.adopt_world(rank, world)

    def close(self) -> None:
        """Stop the stall watchdog (if any) and remove its heartbeat files."""
        self.accumulation.close()


# --------------------------------------------------------------------------- rank 0 decides
def rank0_decides(chief: bool, decide: Callable[[], Any]) -> Any:
    """Run ``decide`` on rank 0 and give every rank its result, or raise its TfxrError on
    every rank (through ``broadcast_object``, so no rank is left waiting in a collective)."""
    result, problem = None, None
    if chief:
        try:
            result = decide()
        except TfxrError as e:
            problem = (type(e), str(e))
    result, problem = dist.broadcast_object((result, problem))
    if problem:
        error = problem[0](problem[1])
        error.shared = True        # every rank raises it: rank 0 alone prints it
        raise error
    return result


# --------------------------------------------------------------------------- the run folder
class RunFolder:
    """The lock and the existing-run check of one output folder (rank 0 only).

    ``with RunFolder(out, resume=..., overwrite=..., outputs=...):`` holds an exclusive
    ``flock`` on ``OUT/.tfxr-run.lock`` for the run; the kernel drops it when the process
    dies, so a killed run never leaves the folder locked.  On a normal exit the lock file is
    removed (a process that opened it meanwhile sees it was replaced and retries).
    """

    def __init__(self, out: str, *, resume: bool, overwrite: bool, outputs: tuple[str, ...] = ()):
        self.out, self.resume, self.overwrite = out, resume, overwrite
        self.outputs = tuple(SCAFFOLD_OUTPUTS) + tuple(outputs)
        self.lock_path = os.path.join(out, LOCK_NAME)
        self._fd: int | None = None
        self._created = False

    def acquire(self) -> None:
        if os.path.exists(self.out) and not os.path.isdir(self.out):
            raise RunFolderError(f"--out {self.out}: exists and is not a folder")
        self._created = not os.path.exists(self.out)
        try:
            os.makedirs(self.out, exist_ok=True)
            self._lock()
        except OSError as e:
            raise RunFolderError(f"--out {self.out}: cannot create or lock the run folder "
                                 f"({errno.errorcode.get(e.errno, e.errno)}: {e.strerror})") from None
        try:
            self._check()
        except BaseException:
            self.release()
            raise

    def _lock(self) -> None:
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise RunFolderError(f"--out {self.out}: another run is writing into this folder "
                                     f"(pid {holder}, lock {self.lock_path}); wait for it to end, "
                                     f"or use another --out") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:               # else the holder removed the file as we opened it: retry
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def _check(self) -> None:
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other: --resume continues the run "
                              f"in {self.out}, --overwrite replaces it")
        found = [m for m in RUN_MARKERS if os.path.exists(os.path.join(self.out, m))]
        if found and not self.resume and not self.overwrite:
            raise RunFolderError(f"--out {self.out} already holds a run ({', '.join(found)}); use --resume "
                                 f"to continue it, --overwrite to replace it, or another --out")
        if self.overwrite:
            for name in self.outputs:   # only what a run writes: the user's other files stay
                path = os.path.join(self.out, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                elif os.path.lexists(path):
                    os.unlink(path)
        remove_stale_temporaries(self.out)

    def hold(self, holder: bool, wait: float = 30.0) -> None:
        """Elastic training: the lock follows rank 0 to whichever process has it now.

        ``holder`` False releases a lock this process holds (it is no longer rank 0);
        True takes the lock without the existing-run check (the run is this one), waiting
        up to ``wait`` seconds for a previous holder that is still alive to let go (a dead
        one's lock the kernel has dropped already).  Call on every rank, releases first.
        """
        if not holder:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
                self._fd = None
            return
        deadline = time.monotonic() + wait
        while self._fd is None:
            try:
                self._lock()
            except RunFolderError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.lock_path)
        except FileNotFoundError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
        if self._created and not os.listdir(self.out):   # a run that wrote nothing leaves nothing
            os.rmdir(self.out)


# --------------------------------------------------------------------------- resume
def _flat(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _same(key: str, old: Any, new: Any) -> bool:
    if key == "data" and isinstance(old, str) and isinstance(new, str) and old and new:
        return os.path.realpath(old) == os.path.realpath(new)   # the folder, however typed
    return old == new


def config_changes(old: dict, new: dict, renamed: dict[str, str] | None = None) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old, new)}`` of two ``config.yaml`` contents (the user's fields and
    the world size; the other ``_resolved`` values follow from them).  ``renamed``: former
    dotted keys an older ``old`` may use -> today's (:func:`tfxr.config.renamed_paths`)."""
    def comparable(config):
        flat = {(renamed or {}).get(k, k): v
                for k, v in _flat({k: v for k, v in config.items() if not k.startswith("_")}).items()}
        flat["_resolved.workers"] = (config.get("_resolved") or {}).get("workers")
        return flat
    a, b = comparable(old), comparable(yaml.safe_load(yaml.safe_dump(new, sort_keys=False)))
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if not _same(k, a.get(k), b.get(k))}


def check_resume_config(path: str, config: dict, safe: frozenset,
                        renamed: dict[str, str] | None = None) -> dict[str, tuple[Any, Any]]:
    """The safe changes of a resumed run against the run's ``config.yaml`` at ``path``;
    RunFolderError listing every unsafe one."""
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            old = yaml.safe_load(fh)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise RunFolderError(f"--resume: cannot read {path} ({e}); the run's settings are unknown") from None
    if not isinstance(old, dict):
        raise RunFolderError(f"--resume: {path} is not a run config (expected a mapping)")
    changes = config_changes(old, config, renamed)
    unsafe = {k: v for k, v in changes.items() if k.split(".")[0] not in safe}
    if unsafe:
        listed = "; ".join(f"{k.replace('_resolved.workers', 'workers')}: {a!r} -> {b!r}"
                           for k, (a, b) in unsafe.items())
        raise RunFolderError(f"--resume: these settings differ from the run in {os.path.dirname(path) or '.'} "
                             f"({os.path.basename(path)}): {listed}. Resume with the run's settings (only "
                             f"{', '.join(sorted(safe - {'out', 'resume', 'overwrite'}))} may change), "
                             f"or start a new run in another --out")
    return changes


# --------------------------------------------------------------------------- the scaffold
class Run:
    """The epoch loop around one trainer (see the module docstring)."""

    def __init__(self, cfg, rank: int, world: int, policy: PlateauPolicy | None = None,
                 tensorboard: bool = True):
        self.cfg, self.rank, self.world, self.policy = cfg, rank, world, policy
        self.chief = rank == 0
        self.tensorboard = tensorboard

    def fit(self, task: Task) -> dict:
        """Train ``task`` from its state (or its newest checkpoint with ``--resume``) to
        ``cfg.epochs``; returns the final run state."""
        cfg = self.cfg
        folder = RunFolder(cfg.out, resume=cfg.resume, overwrite=getattr(cfg, "overwrite", False),
                           outputs=task.outputs())
        if getattr(cfg, "elastic", False):
            return self._fit_elastic(task, folder)
        rank0_decides(self.chief, folder.acquire)
        try:
            return self._fit(task)
        finally:
            folder.release()

    def _prepare(self, task: Task) -> tuple[CheckpointStore, RunLog]:
        """The checkpoint store, the resume, ``config.yaml``: every rank together."""
        cfg, chief = self.cfg, self.chief
        directory = os.path.join(cfg.out, "checkpoints")
        rank0_decides(chief, lambda: read_index(directory))   # a damaged index: one line, every rank
        store = CheckpointStore(directory, task.checkpoint_objects(), max_to_keep=cfg.keep_checkpoints,
                                writer=chief)
        config = {**to_dict(cfg), "_resolved": task.resolved()}
        resumed = None
        if cfg.resume:
            # elastic mode and its commit interval change no result: a run may be resumed with or without them
            safe = getattr(type(cfg), "RESUME_SAFE", frozenset()) | {"elastic", "elastic_commit_steps"}
            if getattr(cfg, "elastic", False):
                safe = safe | {"_resolved"}    # an elastic run's world (and what follows from it) moves
            resumed, changes = rank0_decides(chief, lambda: (
                store.resume_point(os.path.join(cfg.out, "history.json")),
                check_resume_config(os.path.join(cfg.out, "config.yaml"), config, safe,
                                    renamed_paths(type(cfg)))))
            if resumed:
                task.state = {**task.state, **store.restore(resumed)}
                offset_seed_states(task.seed_variables(), self.rank)   # the checkpoint holds rank 0's
                config["_resumed"] = _previous_resumes(cfg.out, chief) + [
                    {"epoch": task.state["epoch"], "checkpoint": os.path.basename(resumed),
                     "changed": {k: [a, b] for k, (a, b) in changes.items()}}]
        runlog = RunLog(cfg.out, enabled=chief, tensorboard=self.tensorboard)
        runlog.start(config)
        if resumed:
            log.info(f"resumed from {resumed} (epoch {task.state['epoch']})")
        return store, runlog

    def _fit(self, task: Task) -> dict:
        store, runlog = self._prepare(task)
        broadcast(task)   # HVD: identical start on every rank
        task.begin()
        log.info(task.describe())
        try:
            self._epochs(task, store, runlog)
            if self.chief:
                task.finish()
        finally:
            runlog.close()
        return task.state

    # ---- elastic training
    def _fit_elastic(self, task: Task, folder: RunFolder) -> dict:
        """The epoch loop under Horovod's elastic driver (``elastic=true``).

        The state (every variable the run broadcasts, the task's ``epoch_variables``, the run
        state) is committed after every epoch's checkpoint and, with
        ``elastic_commit_steps=N``, after every N-th step of an epoch.  A commit copies every
        variable to host memory (a device-to-host copy of the model and optimizer: the
        cost to weigh against the steps a lost worker costs, at most N) and takes one small
        broadcast (Horovod's check for a host change); the broadcast of the variables
        themselves happens only at a restart.  A worker lost mid-epoch rolls every rank back
        to the last commit and the epoch goes on from there with the workers left: the
        committed steps are not run again, the trainers' ``begin`` skips that many batches of
        the epoch's data (deterministic per seed and epoch, as for ``--resume``), so with an
        unchanged world the steps after it see exactly the batches of an uninterrupted run.
        A host the discovery script adds joins at the next commit.  At each (re)start the run
        adopts the live world: rank and world, rank 0's role (run-folder lock, checkpoints,
        history.json), per-rank seed streams, the task's world-dependent values
        (``adopt_world``: learning rate scaled by the workers, steps, its data shards).  Every
        epoch's record carries ``world`` and ``global_step``; the first after a change of
        workers carries ``world_change`` (the last one, if several came in one epoch).

        Only collectives inside the elastic loop: a worker that joins later runs the task's
        ``__init__`` (no collectives there) and meets the others at the loop's sync; the
        launch work (lock, resume, ``config.yaml``) is done once, by the first workers.
        """
        if not dist.elastic():
            raise ConfigError("elastic=true: this process was not started by Horovod's elastic driver; launch "
                              "with `python -m tfxr.launch --launcher horovodrun --np N --min-np M --max-np N "
                              "--host-discovery-script SCRIPT -- ...` (docs/SCALING.md)")
        every, k = getattr(self.cfg, "elastic_commit_steps", 0), getattr(self.cfg, "accumulate_steps", 1)
        if every % k:
            raise ConfigError(f"elastic_commit_steps={every}: not a multiple of accumulate_steps={k} (a commit "
                              f"must fall between two updates)")
        own = {id(v) for v in task.seed_variables()}
        epoch_variables = list(getattr(task, "epoch_variables", list)())
        variables = ([v for v in task.broadcast_variables() if id(v) not in own] + list(task.seed_variables())
                     + epoch_variables)
        elastic = dist.elastic_state(variables, run=task.state, started=False, world=None)
        parts: dict = {}

        def body(elastic):
            self.rank, self.world = dist.rank(), dist.size()   # HVD: the live world
            self.chief = self.rank == 0
            log.set_rank(self.rank)
            task.adopt_world(self.rank, self.world)   # may gather (every live rank is here)
            if not elastic.started:          # the launch: every first worker is here
                rank0_decides(self.chief, folder.acquire)
                parts["store"], parts["runlog"] = self._prepare(task)
                broadcast(task)   # HVD
                elastic.run, elastic.started, elastic.world = task.state, True, self.world
                elastic.save()
            else:                            # a restart, or a worker that joined
                task.state = elastic.run
                offset_seed_states(task.seed_variables(), self.rank)   # the sync gave every rank rank 0's
            if "store" not in parts:         # a joiner: its own (non-writing) store and log
                parts["store"] = CheckpointStore(os.path.join(self.cfg.out, "checkpoints"), task.checkpoint_objects(),
                                                 max_to_keep=self.cfg.keep_checkpoints, writer=False)
                parts["runlog"] = RunLog(self.cfg.out, enabled=False, tensorboard=self.tensorboard)
            if not self.chief:
                folder.hold(False)
            dist.barrier()                   # HVD: a renumbered old rank 0 let go first
            if self.chief:
                folder.hold(True)
            parts["store"].set_writer(self.chief)
            parts["runlog"].enabled = self.chief
            if elastic.world not in (None, self.world):   # the world of the last commit
                epoch, step = task.state["epoch"], (task.state.get(RUNNING) or {}).get("step", 0)
                parts["change"] = {"from": elastic.world, "to": self.world, "restarted_epoch": epoch + 1,
                                   "committed_epoch": epoch, "committed_step": step}
                log.info(f"world size changed: {elastic.world} -> {self.world} worker(s); epoch {epoch + 1} "
                         f"goes on from the last commit (epoch {epoch} done"
                         f"{f', and {step} step(s) of epoch {epoch + 1}' if step else ''})")
            elastic.world = self.world
            task.begin()
            log.info(task.describe())

            def commit():
                elastic.run = task.state
                elastic.commit()             # HVD: may raise HostsUpdatedInterrupt (a host joins)

            def after_step(done: int) -> None:   # the commit every N steps inside an epoch
                if every and done % every == 0 and done < task.steps:
                    commit()
            self._epochs(task, parts["store"], parts["runlog"], commit=commit, pending=parts, after_step=after_step)

        try:
            dist.elastic_run(body, elastic)
            if self.chief:
                task.finish()
        finally:
            if "runlog" in parts:
                parts["runlog"].close()
            folder.release()
        return task.state

    def _epochs(self, task: Task, store: CheckpointStore, runlog: RunLog, commit: Callable[[], None] | None = None,
                pending: dict | None = None, after_step: Callable[[int], None] | None = None) -> None:
        cfg, chief, state = self.cfg, self.chief, task.state
        while state["epoch"] < cfg.epochs:
            epoch = state["epoch"]
            start = time.perf_counter()
            first = epoch_position(state, task.steps, getattr(cfg, "accumulate_steps", 1))   # elastic: committed
            bar = progress_bar(task.steps - first, f"epoch {epoch + 1}/{cfg.epochs}", enabled=chief and cfg.progress,
                               unit="step")
            try:
                numbers = task.train_epoch(epoch, _Progress(bar, after_step))
            finally:             # elastic: a commit inside the epoch may interrupt it
                bar.close()
            state.pop(RUNNING, None)     # the epoch's steps are done: its checkpoint holds none of it
            seconds = time.perf_counter() - start
            check_finite(task, epoch + 1, numbers)
            record = {"epoch": epoch + 1, **numbers,
                      "images_per_s": (task.steps - first) * task.global_batch / seconds}
            validation = task.end_epoch(record)
            record["epoch_time_s"] = time.perf_counter() - start   # the whole epoch, validation included
            record.update(validation)
            if commit is not None:       # elastic: who trained it, and a change of workers before it
                record["world"], record["global_step"] = self.world, state["global_step"]
                if pending and "change" in pending:
                    record["world_change"] = pending.pop("change")
            decision = (self.policy.update(state, record) if self.policy is not None
                        else Decision(improved=False, stop=False))
            state["history"].append(record)
            state["epoch"] = record["epoch"]
            if chief:
                task.after_epoch(record, decision)
            store.save(state["epoch"], state)
            if chief:   # other ranks' records may lack rank-0-only numbers
                runlog.epoch(state["history"], task.summary(record))
            if commit is not None:
                commit()
            if decision.stop:
                log.info(f"early stopping after epoch {record['epoch']} (best epoch {state['best_epoch']})")
                break


class _Progress:
    """What ``train_epoch`` gets as ``progress``: the epoch's bar and the scaffold's step hook
    (``after_step(steps done)``, called by :class:`EpochSteps`; None outside elastic runs)."""

    def __init__(self, bar, after_step: Callable[[int], None] | None = None):
        self.bar, self.after_step = bar, after_step

    def update(self, n: int = 1) -> None:
        self.bar.update(n)


def _previous_resumes(out: str, chief: bool) -> list:
    if not chief:
        return []
    try:
        with open(os.path.join(out, "config.yaml"), encoding="utf-8") as fh:
            old = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError):
        return []
    return list(old.get("_resumed") or []) if isinstance(old, dict) else []


def broadcast(task: Task) -> None:
    """Rank 0's variables on every rank; per-rank seed states keep their own values."""
    own = {id(v) for v in task.seed_variables()}
    dist.broadcast_variables([v for v in task.broadcast_variables() if id(v) not in own])   # HVD


def check_finite(task: Task, epoch: int, numbers: dict) -> None:
    """TrainingDiverged (exit 3) when an epoch's training numbers or the weights are NaN/inf.

    Every rank takes the same decision: the numbers are averaged over ranks and the weight
    check is allreduced too, so no rank goes on alone."""
    bad = sorted(k for k, v in numbers.items() if isinstance(v, float) and not math.isfinite(v))
    weights = [v for v in dist.backing_variables(task.finite_variables()) if v.dtype.is_floating]
    local = sum(not bool(tf.reduce_all(tf.math.is_finite(v))) for v in weights)
    nonfinite = float(dist.allreduce_mean(float(local), name="tfxr_nonfinite_weights")) > 0
    if bad or nonfinite:
        what = ", ".join([f"{k} = {numbers[k]}" for k in bad] + (["weights"] if nonfinite else []))
        raise TrainingDiverged(f"training diverged in epoch {epoch}: {what} not finite (too high a learning "
                               f"rate?); nothing of that epoch was saved, the last checkpoint is epoch "
                               f"{epoch - 1}")


__all__ = ["LOCK_NAME", "RANK_SEED_STRIDE", "RUNNING", "EpochSteps", "GradientAccumulation", "Run", "RunFolder", "Task",
           "broadcast", "check_finite", "check_resume_config", "config_changes", "epoch_position", "init_process",
           "stall_watchdog", "new_run_state", "offset_seed_states", "rank0_decides", "seed_process", "seed_states"]
