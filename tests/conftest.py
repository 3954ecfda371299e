"""Shared test fixtures: the real data beside the checkout, synthetic data, mpirun, a run copied
as if killed after a checkpoint, and CPU seconds per test (TFXR_TEST_CPU=FILE)."""
from __future__ import annotations

import hashlib
import os
import resource
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tfxr.launch import command_for

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TFXR_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


#: one intra-op thread in every process (TensorFlow's and OpenMP's): float reductions run in the
#: same order, so a 2-rank result can be compared with one process to 1e-4 (Adam amplifies
#: reordering noise)
ONE_THREAD = {"TFXR_CPU_THREADS": "1", "OMP_NUM_THREADS": "1"}


def load_arrays(path) -> list[np.ndarray]:
    """The arrays of an ``np.savez(path, *arrays)`` file, in order."""
    with np.load(path) as z:
        return [z[f"arr_{i}"] for i in range(len(z.files))]


def shard_hashes(d: Path) -> dict[str, str]:
    """sha256 of every ``*.tfrecord`` shard in ``d``, by file name."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.glob("*.tfrecord"))}


def shared(*parts: str) -> Path:
    """A path under ../shared/data, skipping the test when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not present: {p}")
    return p


def run(cmd: list[str], timeout: int = 600, check: bool = True, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **kw.pop("env", {})}
    r = subprocess.run(cmd, cwd=kw.pop("cwd", REPO), env=env, capture_output=True, text=True,
                       timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}\nstdout:\n{r.stdout[-4000:]}\n"
                             f"stderr:\n{r.stderr[-6000:]}")
    return r


def tfxr(*args: str, np: int = 1, **kw) -> subprocess.CompletedProcess:
    """Run `python -m <args>` (under mpirun -np N when np > 1: tfxr's one launcher builder)."""
    return run(command_for(np, list(args)), **kw)


@pytest.fixture(scope="session")
def synthetic_tfrec(tmp_path_factory) -> Path:
    """A small synthetic TB-phantom TFRecord set (64 px, 4 shards per split)."""
    out = tmp_path_factory.mktemp("synthetic") / "tfrec"
    tfxr("tfxr.tfrecords", "write", "--source", "synthetic", "--num-images", "240", "--image-size", "64",
         "--shards", "4", "--out", str(out), "--quiet")
    return out


def save_classifier_run(model, folder, name: str, image_size: int, label_names, channels: int = 1,
                        dropout: float | None = None, file: str = "best.keras") -> Path:
    """Save ``model`` as a tfxr classifier run would: ``folder/file`` beside a ``config.yaml``
    with the keys :mod:`tfxr.models.loading` rebuilds it from (for models trained in a test
    with keras ``fit`` instead of ``tfxr.train``)."""
    import yaml

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({
        "model": name, "dropout": dropout, "pipeline": {"channels": channels},
        "_resolved": {"image_size": image_size, "label_names": list(label_names)}}))
    model.save(str(folder / file))
    return folder / file


def save_generator_run(generator, folder, image_size: int, latent_dim: int = 100, g_filters: int = 64,
                       batch_norm: bool = True) -> Path:
    """Save a DCGAN generator as ``tfxr.gan train`` would: ``folder/generator.keras`` + config.yaml."""
    import yaml

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({
        "latent_dim": latent_dim, "g_filters": g_filters, "batch_norm": batch_norm, "d_filters": 64,
        "d_dropout": 0.3, "_resolved": {"image_size": image_size}}))
    generator.save(str(folder / "generator.keras"))
    return folder / "generator.keras"


def copy_run_after_checkpoint(monkeypatch, epoch: int, run_dir, copy_to) -> None:
    """While a run trains in this process, copy its whole folder to ``copy_to`` right after
    it saved epoch ``epoch``'s checkpoint: the folder of that run killed at that moment (its
    lock is an ``flock``, which a copy does not hold), to resume as a user would.  One
    uninterrupted training then serves both sides of a resume-equality test."""
    from tfxr.training.checkpoints import CheckpointStore   # lazy: TensorFlow, only for the tests that train

    save = CheckpointStore.save
    source = Path(run_dir).resolve()

    def save_then_copy(store, step, state):
        path = save(store, step, state)
        if step == epoch and Path(store.directory).resolve().parent == source:
            shutil.copytree(source, copy_to)
        return path

    monkeypatch.setattr(CheckpointStore, "save", save_then_copy)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A private one-node Slurm (this host, CPUs=2) for the session; skipped only when Debian's
    slurm-wlm/munge are missing and cannot be installed."""
    from tests.slurm_cluster import SlurmCluster, install_binaries

    why = install_binaries()
    if why:
        pytest.skip(why)
    if os.geteuid() != 0:
        pytest.skip("the test Slurm runs its daemons as root")
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


# ---------------------------------------------------------------- the long files first
def pytest_collection_modifyitems(config, items):
    """Files with the most ``slow`` tests first (stable: the rest, and the tests inside a file,
    in path order).  Under ``make test``'s two workers (pytest-xdist ``--dist loadfile
    --no-loadscope-reorder``: whole files, in this order) the long files start at once and
    the short ones fill in at the end, instead of a long file starting last."""
    slow: dict = {}
    for item in items:
        slow[item.path] = slow.get(item.path, 0) + (item.get_closest_marker("slow") is not None)
    items.sort(key=lambda item: -slow[item.path])


# ---------------------------------------------------------------- CPU seconds per test (opt-in)
#: TFXR_TEST_CPU=FILE appends one line per test phase to FILE: "<cpu seconds> <phase> <node id>",
#: the user+system time of the pytest process and of its reaped children (subprocesses, mpirun
#: ranks) during that phase: a measure of a test's cost that other load on the machine does not
#: inflate the way it does wall time.
CPU_LOG = os.environ.get("TFXR_TEST_CPU", "")


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if CPU_LOG:
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(item):
        start = _cpu_seconds()
        yield
        _log_cpu(item, "setup", start)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(item):
        start = _cpu_seconds()
        yield
        _log_cpu(item, "call", start)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_teardown(item):
        start = _cpu_seconds()
        yield
        _log_cpu(item, "teardown", start)

    def _log_cpu(item, phase: str, start: float) -> None:
        with open(CPU_LOG, "a", encoding="utf-8") as fh:
            fh.write(f"{_cpu_seconds() - start:.2f} {phase} {item.nodeid}\n")


# ---------------------------------------------------------------- the checkout stays as it was
#: written below the checkout by its own tooling, not by tfxr's commands
_CHECKOUT_OWN = {".git", ".venv", "__pycache__", ".pytest_cache", "tfxr.egg-info"}


def _checkout_files() -> set[str]:
    """Every path below the checkout except git's, the environment's and Python's caches."""
    found = set()
    for top, dirs, names in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in _CHECKOUT_OWN]
        found.update(os.path.relpath(os.path.join(top, n), REPO) for n in dirs + names)
    return found


@pytest.fixture(autouse=True)
def _the_checkout_is_left_alone():
    """Every test: nothing new appears in the checkout (a command the test ran that wrote to a
    default folder such as ``runs/`` in the working directory, outside the folders it named)."""
    before = _checkout_files()
    yield
    new = sorted(_checkout_files() - before)
    if new:
        pytest.fail(f"the test left new files in the checkout {REPO}: {', '.join(new[:10])}", pytrace=False)
