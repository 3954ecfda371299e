"""The detector trainer: data-parallel step = one process on the union, exact resume, and a
short training on phantoms far above the random-box floor."""
import json

import numpy as np
import pytest

from tests.conftest import ONE_THREAD, copy_run_after_checkpoint, load_arrays, tfxr


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


@pytest.mark.slow
def test_resume_equals_uninterrupted_run(synthetic_tfrec, tmp_path, monkeypatch, capsys):
    """The run killed right after epoch 1's checkpoint (its folder copied at that moment),
    resumed from a relative --out, ends with the uninterrupted run's weights and losses.

    In-process (the subject is the resume, not the command line; ``tfxr.detect train`` runs
    as a user types it in tests/test_detect.py)."""
    from tfxr.configs import DetectorConfig
    from tfxr.data.pipeline import DataConfig
    from tfxr.models.detector import load_detector
    from tfxr.training.detector import DetectorTrainer

    def cfg(out, **kw):
        return DetectorConfig(data=str(synthetic_tfrec), out=out, epochs=2, steps_per_epoch=3, val_split="", seed=3,
                              progress=False, pipeline=DataConfig(batch_size=8, deterministic=True), **kw)

    monkeypatch.chdir(tmp_path)
    with monkeypatch.context() as patch:
        copy_run_after_checkpoint(patch, 1, tmp_path / "full", tmp_path / "part")
        DetectorTrainer(cfg("full")).fit()
    assert (tmp_path / "part" / "checkpoints").is_dir() and not (tmp_path / "part" / "final.weights.h5").exists()
    capsys.readouterr()
    DetectorTrainer(cfg("part", resume=True)).fit()
    assert "resumed from" in capsys.readouterr().err
    full, part = (load_detector(str(tmp_path / name), "final") for name in ("full", "part"))
    for a, b in zip(full.weights, part.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    history = json.loads((tmp_path / "part" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    full_history = json.loads((tmp_path / "full" / "history.json").read_text())
    assert [h["train_loss"] for h in history] == [h["train_loss"] for h in full_history]
