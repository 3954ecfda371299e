"""Inception Score and FID: the mathematics against closed forms, and both feature paths."""
from __future__ import annotations

import numpy as np
import pytest

from tfxr.errors import ConfigError
from tfxr.evaluation import generative


def _rotation(dim: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
    return q


def test_fid_of_gaussians_equals_the_closed_form():
    # Covariances sharing eigenvectors: Tr(S1 + S2 - 2 (S1 S2)^1/2) = sum (sqrt a - sqrt b)^2.
    q = _rotation(6, 0)
    a, b = np.array([1.0, 2, 3, 4, 5, 6]), np.array([6.0, 1, 0.5, 2, 9, 3])
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    mu1, mu2 = np.arange(6.0), np.arange(6.0)[::-1]
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert generative.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    # one dimension: (m1 - m2)^2 + (sigma1 - sigma2)^2
    assert generative.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 1)


def test_fid_of_a_set_with_itself_is_zero_and_samples_approach_the_closed_form():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, 8))
    assert generative.fid_from_features(x, x) == pytest.approx(0.0, abs=1e-6)
    y = rng.standard_normal((20000, 3)) * [1.0, 2.0, 3.0] + [1.0, 0, 0]
    z = rng.standard_normal((20000, 3))
    expected = 1.0 + (2 - 1) ** 2 + (3 - 1) ** 2     # mean shift 1, sd 2 and 3 against 1
    assert generative.fid_from_features(y, z) == pytest.approx(expected, abs=0.15)


def test_fid_is_finite_when_covariances_are_singular():
    rng = np.random.default_rng(2)
    few_a, few_b = rng.standard_normal((5, 20)), rng.standard_normal((5, 20)) + 1.0   # rank 4 of 20
    value = generative.fid_from_features(few_a, few_b)
    assert np.isfinite(value) and value > 0


def test_inception_score_identical_is_one_and_uniform_confident_is_the_class_count():
    same = np.tile([[0.2, 0.3, 0.5]], (50, 1))
    assert generative.inception_score(same) == pytest.approx((1.0, 0.0))
    one_hot = np.eye(10)[np.arange(100) % 10]       # every split holds each class once
    mean, sd = generative.inception_score(one_hot)
    assert mean == pytest.approx(10.0) and sd == pytest.approx(0.0, abs=1e-9)
    assert generative.sigmoid_score(np.full((40, 1), 0.3)) == pytest.approx((1.0, 0.0))
    assert generative.sigmoid_score(np.array([[0.0], [1.0]] * 20))[0] == pytest.approx(2.0)
    with pytest.raises(ConfigError, match="at least 10"):
        generative.inception_score(one_hot[:5])


def test_inception_path_end_to_end_with_random_weights():
    extractor = generative.InceptionExtractor("random", batch_size=8)
    images = np.random.default_rng(0).random((12, 32, 32, 1), dtype=np.float32)
    feats, probs = extractor(images)
    assert feats.shape == (12, 2048) and probs.shape == (12, 1000)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert extractor.label == "FID[random-InceptionV3]"
    x = generative.InceptionExtractor.preprocess(images[:2])
    assert tuple(x.shape) == (2, 299, 299, 3) and float(x.numpy().min()) >= -1.0


def test_missing_inception_weights_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="--inception-weights PATH"):
        generative.resolve_inception_weights("")
    with pytest.raises(ConfigError, match="no such file"):
        generative.resolve_inception_weights(str(tmp_path / "absent.h5"))


def _tiny_generator(latent: int = 8, size: int = 16):
    import keras

    keras.utils.set_random_seed(0)
    noise = keras.Input((latent,))
    x = keras.layers.Dense(size * size)(noise)
    x = keras.layers.Reshape((size, size, 1))(x)
    out = keras.layers.Conv2D(1, 3, padding="same", activation="tanh")(x)
    return keras.Model(noise, out)


def test_generator_sampling_and_png_directories(tmp_path):
    from PIL import Image

    gen = _tiny_generator()
    a, b = generative.sample_generator(gen, 10, seed=4), generative.sample_generator(gen, 10, seed=4)
    assert a.shape == (10, 16, 16, 1) and np.array_equal(a, b)
    assert 0.0 <= a.min() and a.max() <= 1.0 and a.std() > 0
    for i in range(3):
        Image.fromarray((a[i, ..., 0] * 255).astype(np.uint8)).save(tmp_path / f"g{i}.png")
    loaded = generative.load_png_dir(str(tmp_path))
    assert loaded.shape == (3, 16, 16, 1)
    assert np.abs(loaded[0] - a[0]).max() <= 1 / 255 + 1e-6
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no .png"):
        generative.load_png_dir(str(tmp_path / "empty"))


def test_domain_variant_labels_and_baselines(phantom_data, phantom_model):
    from tfxr.evaluation.classifier import load_model

    model = load_model(str(phantom_model))
    extractor = generative.ClassifierExtractor(model, model.name)
    assert extractor.label.startswith("FID_tfxr[tb_cnn")
    real, what = generative.real_images(str(phantom_data), "train", "Effusion", 1.0)
    assert len(real) >= 20 and "Effusion=1" in what
    noise = generative.noise_images(len(real) // 2, real.shape[1], seed=1)
    result = generative.evaluate_generated(extractor, real, {"noise": noise})
    rows = result["rows"]
    assert rows["noise"]["n"] == rows["real (half A) [baseline]"]["n"] == len(real) // 2
    # real-vs-real is far closer than noise-vs-real
    assert rows["real (half A) [baseline]"]["fid"] * 5 < rows["noise"]["fid"]
    assert rows["noise"]["score_mean"] < rows["real (half B) [reference]"]["score_mean"]
    text = generative.format_generative(result, what)
    assert extractor.label in text and "N_ref" in text and "equal N" in text
    assert generative.too_few(1000, 2048) and not generative.too_few(2048, 2048)
    assert generative.too_few(64, 64) and not generative.too_few(65, 64)
