"""The distributed DCGAN loop: exact 2-rank steps, exact resume, and that training helps."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import ONE_THREAD, load_arrays, tfxr

@pytest.mark.mpi
def test_two_rank_gan_step_equals_one_process_on_union(tmp_path):
    """Both tapes are allreduced: ranks end identical and equal one process on both batches."""
    d = tfxr("tests.mpi_scripts.gan_step_check", str(tmp_path), "dist", np=2, env=ONE_THREAD)
    assert "world 2" in d.stdout
    u = tfxr("tests.mpi_scripts.gan_step_check", str(tmp_path), "union", env=ONE_THREAD)
    assert "world 1" in u.stdout
    r0, r1 = load_arrays(tmp_path / "gan-dist-adam-0.npz"), load_arrays(tmp_path / "gan-dist-adam-1.npz")
    ref = load_arrays(tmp_path / "gan-union-adam-0.npz")
    assert len(r0) == len(ref) > 8      # generator and discriminator weights
    for a, b, c in zip(r0, r1, ref):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=2e-6)


def _phantom_images(n=48, size=28, seed=0):
    """Small grey 'X-ray-like' images in [-1, 1]: a bright body with two dark lung fields."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    images = []
    for _ in range(n):
        cx, r = 0.5 + rng.normal(0, 0.03), 0.22 + rng.normal(0, 0.02)
        body = np.exp(-(((xx - 0.5) / 0.42) ** 2 + ((yy - 0.5) / 0.48) ** 2) ** 2)
        lungs = sum(np.exp(-(((xx - cx + s * 0.2) / 0.12) ** 2 + ((yy - 0.45) / r) ** 2)) for s in (-1, 1))
        img = 0.9 * body - 0.6 * lungs + rng.normal(0, 0.03, (size, size))
        images.append(np.clip(img * 2 - 1, -1, 1))
    return np.asarray(images, np.float32)[..., None]


def _cfg(tmp_path, **kw):
    from tfxr.training.gan import GanConfig

    base = dict(out=str(tmp_path), batch_size=8, epochs=3, g_filters=8, d_filters=8, seed=11,
                deterministic=True, progress=False, instance_noise=0.05, label_smoothing=0.1)
    return GanConfig(**{**base, **kw})


def _weights(trainer):
    return [v.numpy() for v in trainer.generator.variables + trainer.discriminator.variables
            + trainer.g_optimizer.variables + trainer.d_optimizer.variables]


class _Interrupted(Exception):
    pass


@pytest.mark.parametrize("optimizer", ["rmsprop"])
def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path, optimizer, monkeypatch):
    """Killed right after epoch 2's checkpoint, resumed from a relative --out (typed from
    the folder above the run, as a user would): the weights of the uninterrupted run."""
    from tfxr.training.checkpoints import CheckpointStore
    from tfxr.training.gan import GanTrainer

    images = _phantom_images(24)
    full = GanTrainer(_cfg(tmp_path / "full", optimizer=optimizer), images=images)
    full.fit()
    monkeypatch.chdir(tmp_path)
    first = GanTrainer(_cfg("cut", optimizer=optimizer), images=images)
    save = CheckpointStore.save

    def save_then_die(store, step, state):   # the run is killed right after epoch 2's checkpoint
        save(store, step, state)
        if step == 2:
            raise _Interrupted
    with monkeypatch.context() as patch:
        patch.setattr(CheckpointStore, "save", save_then_die)
        with pytest.raises(_Interrupted):
            first.fit()
    assert not (tmp_path / "cut" / ".tfxr-run.lock").exists()    # the lock went with the run
    resumed = GanTrainer(_cfg("cut", optimizer=optimizer, resume=True), images=images)
    state = resumed.fit()
    assert state["epoch"] == 3 and len(state["history"]) == 3
    for a, b in zip(_weights(full), _weights(resumed)):
        np.testing.assert_array_equal(a, b)
    assert (tmp_path / "cut" / "generator.keras").exists()
    assert (tmp_path / "cut" / "samples" / "epoch-0003.png").exists()
    assert [r["g_loss"] for r in state["history"]] == [r["g_loss"] for r in full.state["history"]]
    import yaml

    resumes = yaml.safe_load((tmp_path / "cut" / "config.yaml").read_text())["_resumed"]
    assert resumes == [{"epoch": 2, "checkpoint": "ckpt-2", "changed": {"resume": [False, True]}}]


def test_gan_run_has_tensorboard_and_the_runlog_history(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tfxr.training.gan import GanTrainer

    trainer = GanTrainer(_cfg(tmp_path / "run", epochs=2), images=_phantom_images(16))
    trainer.fit()
    import json

    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and history == trainer.state["history"]
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    assert {"d_loss", "g_loss", "diversity_ratio"} <= set(events.Tags()["tensors"])
    assert [e.step for e in events.Tensors("g_loss")] == [1, 2]


def test_short_training_moves_samples_toward_the_real_images(tmp_path):
    """Asserted number: the mean absolute gap between the mean generated image and the mean
    real image (in [-1, 1] units) shrinks by more than a third after 64 steps."""
    from tfxr.training.gan import GanTrainer

    images = _phantom_images(64, seed=1)
    trainer = GanTrainer(_cfg(tmp_path, epochs=16, batch_size=16, g_filters=16, d_filters=16,
                              loss="hinge", g_lr=2e-3, d_lr=5e-4), images=images)
    real_mean = images.mean(axis=0)

    def gap():
        return float(np.abs(trainer.samples().mean(axis=0) - real_mean).mean())

    before = gap()
    trainer.fit()
    after = gap()
    assert before > 0.2                        # an untrained generator is far from the real images
    assert after < 0.66 * before, (before, after)
    history = trainer.state["history"]
    assert all(np.isfinite([r["d_loss"], r["g_loss"]]).all() for r in history)
    assert 0 < history[-1]["diversity_ratio"]


def test_losses_bce_and_hinge_values():
    import tensorflow as tf

    from tfxr.training.gan import gan_losses

    real, fake = tf.constant([[2.0], [0.0]]), tf.constant([[-1.0], [0.5]])
    d, g = gan_losses("hinge", real, fake)
    assert float(d) == pytest.approx(np.mean([0.0, 1.0]) + np.mean([0.0, 1.5]))
    assert float(g) == pytest.approx(-np.mean([-1.0, 0.5]))
    d, g = gan_losses("bce", real, fake, smoothing=0.1)
    sp = lambda x: np.log1p(np.exp(x))   # noqa: E731 - softplus
    d_real = np.mean([0.9 * sp(-2.0) + 0.1 * sp(2.0), 0.9 * sp(0.0) + 0.1 * sp(0.0)])
    assert float(d) == pytest.approx(d_real + np.mean([sp(-1.0), sp(0.5)]), rel=1e-5)
    assert float(g) == pytest.approx(np.mean([sp(1.0), sp(-0.5)]), rel=1e-5)


def test_diversity_indicator_flags_a_collapsed_batch():
    from tfxr.training.gan import mean_pairwise_distance

    rng = np.random.default_rng(0)
    varied = rng.normal(size=(16, 8, 8, 1))
    same = np.repeat(varied[:1], 16, axis=0)
    assert mean_pairwise_distance(same) == 0.0
    assert mean_pairwise_distance(varied) == pytest.approx(np.sqrt(2 * 64), rel=0.1)


def test_loss_plot_is_redrawn_every_tenth_sample_and_last_epoch():
    from tfxr.training.gan import plot_due

    due = [epoch for epoch in range(1, 26) if plot_due(epoch, {1, 7}, last_epoch=25)]
    assert due == [1, 7, 10, 20, 25]
