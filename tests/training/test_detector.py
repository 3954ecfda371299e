"""The detector trainer: data-parallel step = one process on the union, exact resume, and a
short training on phantoms far above the random-box floor."""
import json

import numpy as np
import pytest

from tests.conftest import ONE_THREAD, load_arrays, tfxr


@pytest.mark.mpi
@pytest.mark.slow
def test_two_ranks_equal_single_process_on_union(synthetic_tfrec, tmp_path):
    d = tfxr("tests.mpi_scripts.detector_step_check", str(synthetic_tfrec), str(tmp_path), "dist", np=2,
             env=ONE_THREAD, timeout=1800)
    assert "world 2" in d.stdout
    u = tfxr("tests.mpi_scripts.detector_step_check", str(synthetic_tfrec), str(tmp_path), "union",
             env=ONE_THREAD, timeout=1800)
    assert "world 1" in u.stdout
    r0, r1, ref = (load_arrays(tmp_path / f"det-{m}.npz") for m in ("dist-0", "dist-1", "union-0"))
    for a, b in zip(r0, r1):
        np.testing.assert_array_equal(a, b)                       # identical on both ranks
    for a, c in zip(r0, ref):
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-6)    # = one process on both batches
    assert all(np.isfinite(a).all() for a in r0)
    losses = [float(v) for v in d.stdout.split("losses [")[1].split("]")[0].split(",")]
    assert len(losses) == 3 and all(np.isfinite(losses))


def _train(data, out, *extra, np_=1, cwd=None):
    return tfxr("tfxr.detect", "train", "--data", str(data), "--out", str(out), "--no-progress", "--deterministic",
                "--batch-size", "8", *extra, np=np_, timeout=2400, cwd=cwd)


@pytest.mark.slow
def test_resume_equals_uninterrupted_run(synthetic_tfrec, tmp_path):
    from tfxr.models.detector import load_detector

    common = ["--steps-per-epoch", "3", "--val-split", "", "--seed", "3"]
    _train(synthetic_tfrec, "full", "--epochs", "2", *common, cwd=tmp_path)
    _train(synthetic_tfrec, "part", "--epochs", "1", *common, cwd=tmp_path)
    r = _train(synthetic_tfrec, "part", "--epochs", "2", "--resume", *common, cwd=tmp_path)
    assert "resumed from" in r.stderr
    full, part = (load_detector(str(tmp_path / name), "final") for name in ("full", "part"))
    for a, b in zip(full.weights, part.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    history = json.loads((tmp_path / "part" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    full_history = json.loads((tmp_path / "full" / "history.json").read_text())
    assert [h["train_loss"] for h in history] == [h["train_loss"] for h in full_history]
