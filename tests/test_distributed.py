"""tfxr.distributed (the Horovod runtime): exact averaged-gradient training under mpirun -np 2,
disjoint and complete rank shards, the no-Horovod fallback, horovodrun.  Launching: test_launch.py."""
from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from tests.conftest import ONE_THREAD, load_arrays, run, tfxr
from tfxr import distributed as dist

@pytest.mark.mpi
def test_two_ranks_equal_single_process_on_union_of_batches(synthetic_tfrec, tmp_path):
    d = tfxr("tests.mpi_scripts.step_check", str(synthetic_tfrec), str(tmp_path), "dist", np=2, env=ONE_THREAD)
    assert "world 2" in d.stdout
    u = tfxr("tests.mpi_scripts.step_check", str(synthetic_tfrec), str(tmp_path), "union", env=ONE_THREAD)
    assert "world 1" in u.stdout
    r0, r1 = load_arrays(tmp_path / "weights-dist-0.npz"), load_arrays(tmp_path / "weights-dist-1.npz")
    ref = load_arrays(tmp_path / "weights-union-0.npz")
    for a, b in zip(r0, r1):
        np.testing.assert_array_equal(a, b)                      # identical on both ranks
    for a, c in zip(r0, ref):
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=2e-6)   # = one process on both batches
    # and training moved every weight away from the common initialisation
    init = load_arrays(tmp_path / "weights-dist-init-0.npz")
    assert len(init) == len(r0) and all(np.isfinite(a).all() for a in r0)
    assert all(np.abs(a - i).max() > 1e-5 for a, i in zip(r0, init))


# These paths are checked with SGD, whose update is linear in the gradient: Adam's normalised
# update turns rounding noise in near-zero gradients (fp16 compression, XLA's own reduction
# order) into full-size steps.
@pytest.mark.mpi
@pytest.mark.parametrize("opts,rtol,atol", [(["xla=1", "deterministic=0", "optimizer=sgd"], 1e-4, 2e-6),
                                            (["compression=fp16", "optimizer=sgd"], 1e-2, 1e-5)])
def test_xla_and_fp16_allreduce_paths(synthetic_tfrec, tmp_path, opts, rtol, atol):
    """XLA-compiled gradients + grouped allreduce, and fp16-compressed allreduce, under -np 2."""
    same = [o for o in opts if not o.startswith("compression=")]   # the reference runs the same code path
    tfxr("tests.mpi_scripts.step_check", str(synthetic_tfrec), str(tmp_path), "dist", *opts, "tag=x", np=2,
         env=ONE_THREAD)
    tfxr("tests.mpi_scripts.step_check", str(synthetic_tfrec), str(tmp_path), "union", *same, "tag=x",
         env=ONE_THREAD)
    r0, r1 = load_arrays(tmp_path / "weights-distx-0.npz"), load_arrays(tmp_path / "weights-distx-1.npz")
    ref = load_arrays(tmp_path / "weights-unionx-0.npz")
    for a, b, c in zip(r0, r1, ref):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=rtol, atol=atol)


# --------------------------------------------------------------------------- rank shards
@pytest.fixture(scope="module")
def three_shard_data(tmp_path_factory):
    """Synthetic data with 3 train shards, plus views of it listing only 1 or 2 of them."""
    root = tmp_path_factory.mktemp("shards")
    tfxr("tfxr.tfrecords", "write", "--source", "synthetic", "--num-images", "60", "--image-size", "32",
         "--shards", "3", "--out", str(root / "s3"), "--quiet")
    manifest = json.loads((root / "s3" / "manifest.json").read_text())
    assert len(manifest["splits"]["train"]["shards"]) == 3
    for keep in (1, 2):
        view = root / f"s{keep}"
        shutil.copytree(root / "s3", view)
        train = manifest["splits"]["train"]
        shards = train["shards"][:keep]
        for dropped in train["shards"][keep:]:
            (view / dropped["file"]).unlink()
        m = json.loads(json.dumps(manifest))
        m["splits"]["train"].update(shards=shards, count=sum(s["count"] for s in shards))
        (view / "manifest.json").write_text(json.dumps(m))
    return root


@pytest.mark.mpi
@pytest.mark.parametrize("shards,ranks", [(2, 3), (1, 2), (3, 2)])
def test_training_rank_shares_are_disjoint_and_complete(three_shard_data, tmp_path, shards, ranks):
    from tfxr.data.pipeline import DataConfig, build_dataset

    data = three_shard_data / f"s{shards}"
    # launched through the CLI the shell scripts use: python -m tfxr.launch --np N -- MODULE ...
    run([sys.executable, "-m", "tfxr.launch", "--np", str(ranks), "--", "tests.mpi_scripts.rank_records",
         str(data), str(tmp_path)])
    parts = [(tmp_path / f"ids-{r}.txt").read_text().split() for r in range(ranks)]
    every = [i.decode() for b in build_dataset(str(data), "train", DataConfig(batch_size=16), training=False,
                                               with_meta=True) for i in b["image_id"].numpy()]
    assert len(every) == json.loads((data / "manifest.json").read_text())["splits"]["train"]["count"]
    assert all(parts) and sum(map(len, parts)) == len(every)        # no record twice
    assert set().union(*map(set, parts)) == set(every)             # none missed


LAUNCH_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "HOROVOD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_RANK",
               "SLURM_STEP_NUM_TASKS", "SLURM_STEP_ID", "SLURM_PROCID", "SLURM_NTASKS")


HIDE_HOROVOD = ("import sys; sys.modules['horovod'] = None; sys.modules['horovod.tensorflow'] = None; "
                "from tfxr.train import main; sys.exit(main(sys.argv[1:]))")


def _train_without_horovod(data, out, env):
    base = {k: "" for k in LAUNCH_VARS}
    return run([sys.executable, "-c", HIDE_HOROVOD, "--data", str(data), "--out", str(out), "--epochs", "1",
                "--batch-size", "8", "--val-split", "", "--set", "steps_per_epoch=2", "--no-progress"],
               env={**base, **env}, check=False)


def test_without_horovod_one_process_warns_and_trains(synthetic_tfrec, tmp_path):
    r = _train_without_horovod(synthetic_tfrec, tmp_path / "run", {})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "horovod is not installed: running single-process" in r.stderr and "1 worker(s)" in r.stderr
    assert json.loads((tmp_path / "run" / "history.json").read_text())[0]["epoch"] == 1


@pytest.mark.parametrize("env", [{"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1"},
                                 {"PMIX_RANK": "0", "SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_ID": "0",
                                  "SLURM_PROCID": "0"}])
def test_without_horovod_a_multi_process_launch_stops_before_writing(synthetic_tfrec, tmp_path, env):
    r = _train_without_horovod(synthetic_tfrec, tmp_path / "run", env)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "launched as 2 processes but Horovod is not importable" in r.stderr
    assert not (tmp_path / "run").exists()


def test_distributed_module_single_process_fallbacks():
    dist.init()
    assert dist.size() == 1 and dist.rank() == 0 and dist.is_chief()
    assert dist.allgather_object({"a": 1}) == [{"a": 1}]
    assert float(dist.allreduce_mean(3.0)) == 3.0
    assert dist.broadcast_object([1, 2]) == [1, 2]


@pytest.mark.mpi
def test_horovodrun_gloo_launch(synthetic_tfrec, tmp_path):
    """`horovodrun -np 2` (Gloo controller, no mpirun) runs the same training entry point."""
    from pathlib import Path

    beside_python = Path(sys.executable).parent / "horovodrun"      # the venv tfxr runs in
    hvdrun = str(beside_python) if beside_python.exists() else shutil.which("horovodrun")
    assert hvdrun, "horovodrun is missing: `make install` installs Horovod (and its horovodrun) with tfxr"
    out = tmp_path / "run"
    r = run([hvdrun, "-np", "2", "-H", "localhost:2", "--gloo", sys.executable, "-m", "tfxr.train",
             "--model", "tb_cnn", "--data", str(synthetic_tfrec), "--out", str(out), "--epochs", "1",
             "--batch-size", "8", "--no-progress", "--set", "steps_per_epoch=3"])
    assert "2 worker(s)" in r.stdout + r.stderr
    assert (out / "history.json").exists() and (out / "best.keras").exists()
