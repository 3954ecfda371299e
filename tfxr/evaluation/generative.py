"""Inception Score and FID of generated radiographs, with InceptionV3 or a tfxr classifier.

Definitions (as the papers compute them):

* Inception Score (Salimans et al. 2016): ``exp(E_x KL(p(y|x) || p(y)))``, computed on
  10 equal splits of the images and reported as mean ± standard deviation over the splits.
* FID (Heusel et al. 2017, TTUR): the Fréchet distance between Gaussians fitted to
  pool3 features, ``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``.  The matrix square
  root is ``scipy.linalg.sqrtm``; when the product is singular (non-finite root) an
  ``eps`` is added to both diagonals, and the (tiny) imaginary part from round-off is
  dropped.  FID is biased by the sample size, so N is reported beside every value;
  TTUR recommends at least 10,000 images and below 2,048 (the feature dimension) the
  covariance is rank-deficient, which is warned about (for a narrower domain feature
  space: below its dimension + 1).

Feature extractors:

* :class:`InceptionExtractor` -- ``keras.applications.InceptionV3`` with ImageNet weights
  from ``--inception-weights PATH`` or Keras' cache; grey images are replicated to 3
  channels and resized to 299x299 with **bicubic interpolation with antialiasing**
  (``tf.image.resize(method="bicubic", antialias=True)``, close to PIL's bicubic, which
  clean-fid found to be the faithful choice), then scaled to [-1, 1].  Keras' model
  has 1000 classes (the original IS graph had 1008), so IS values are close to, not
  identical with, the TF1 reference implementation.
* :class:`ClassifierExtractor` -- a trained tfxr classifier: its penultimate layer as
  features (when that is wider than 2048, a Flatten head, the last convolution's map
  global-average-pooled instead, named ``<model>:<layer>-avg``), its sigmoid outputs
  for the score.  Every number it gives is labelled
  ``FID_tfxr[<model>]`` / ``IS_tfxr[<model>]``: a domain metric, not comparable with
  ImageNet-Inception values.  With sigmoid outputs each label is a two-class
  distribution; the score is ``exp(E_x sum_labels KL(Bern(p_xl) || Bern(mean_l)))``,
  so a one-label classifier gives values in [1, 2].
"""
from __future__ import annotations

import math
import os
import warnings

import keras
import numpy as np
import tensorflow as tf
from PIL import Image
from scipy import linalg

from tfxr import log
from tfxr.data.balance import class_images
from tfxr.data.records import read_manifest
from tfxr.errors import ConfigError
from tfxr.evaluation.cam import find_last_conv_layer
from tfxr.models import dcgan
from tfxr.models.chexnet import keras_cache_dir

#: Below this many images the 2048-d pool3 covariance is rank-deficient (TTUR's warning).
MIN_FID_IMAGES = 2048
#: Wider penultimate layers (Flatten heads) are replaced by the last feature map, averaged.
MAX_DOMAIN_FEATURES = 2048
INCEPTION_SIZE = 299
INCEPTION_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"
INCEPTION_WEIGHTS_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/"
                         "inception_v3/" + INCEPTION_WEIGHTS_FILE)


# --------------------------------------------------------------------------- mathematics
def inception_score(probs: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """(mean, sd) over ``splits`` equal parts of exp(E KL(p(y|x) || p(y))); rows are
    class distributions (softmax outputs)."""
    probs = np.asarray(probs, np.float64)
    if len(probs) < splits:
        raise ConfigError(f"Inception Score needs at least {splits} images (one per split), got {len(probs)}")
    scores = []
    for part in np.array_split(probs, splits):
        marginal = part.mean(axis=0, keepdims=True)
        kl = np.sum(part * (_safe_log(part) - _safe_log(marginal)), axis=1)
        scores.append(math.exp(float(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))


def sigmoid_score(probs: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """The Inception-Score analogue of sigmoid (multi-label) outputs: each label is a
    Bernoulli distribution, KLs summed over labels (see the module docstring)."""
    probs = np.clip(np.asarray(probs, np.float64), 0.0, 1.0)
    two_class = np.stack([1.0 - probs, probs], axis=-1)        # (N, labels, 2)
    if len(probs) < splits:
        raise ConfigError(f"the score needs at least {splits} images (one per split), got {len(probs)}")
    scores = []
    for part in np.array_split(two_class, splits):
        marginal = part.mean(axis=0, keepdims=True)
        kl = np.sum(part * (_safe_log(part) - _safe_log(marginal)), axis=(1, 2))
        scores.append(math.exp(float(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))


def _safe_log(x: np.ndarray) -> np.ndarray:
    return np.log(np.clip(x, 1e-12, None))


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of feature rows."""
    features = np.asarray(features, np.float64)
    if len(features) < 2:
        raise ConfigError(f"FID needs at least 2 images per set, got {len(features)}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (numerically safe)."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    diff = mu1 - mu2
    product = sigma1.dot(sigma2)
    with warnings.catch_warnings():     # a singular product is handled just below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(product)
        if not np.isfinite(covmean).all() or _sqrtm_error(covmean, product) > 1e-3:
            offset = np.eye(sigma1.shape[0]) * eps   # singular product: offset both diagonals
            covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def _sqrtm_error(root: np.ndarray, matrix: np.ndarray) -> float:
    """Relative error of a matrix square root, |X X - A|_F / |A|_F."""
    scale = np.linalg.norm(matrix)
    return float(np.linalg.norm(root.dot(root) - matrix) / scale) if scale > 0 else 0.0


def fid_from_features(features_a: np.ndarray, features_b: np.ndarray) -> float:
    return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))


# --------------------------------------------------------------------------- feature extractors
class InceptionExtractor:
    """InceptionV3 pool3 features (2048-d) and ImageNet class probabilities."""

    def __init__(self, weights: str = "", batch_size: int = 32):
        self.weights_path = resolve_inception_weights(weights)
        self.label = "FID" if self.weights_path != "random" else "FID[random-InceptionV3]"
        self.score_label = "IS" if self.weights_path != "random" else "IS[random-InceptionV3]"
        self.batch_size = batch_size
        net = keras.applications.InceptionV3(include_top=True, weights=None)
        if self.weights_path != "random":
            try:
                net.load_weights(self.weights_path)
            except Exception as e:  # noqa: BLE001 - a wrong/damaged file is a user error
                raise ConfigError(f"--inception-weights {self.weights_path}: cannot load InceptionV3 "
                                  f"weights ({type(e).__name__}: {e})") from None
        pool = net.get_layer("avg_pool").output
        self.model = keras.Model(net.inputs, [pool, net.output])

    @staticmethod
    def preprocess(images: np.ndarray):
        """[0, 1] grey (N, H, W, 1) or RGB -> [-1, 1] RGB 299x299 (bicubic, antialiased)."""
        x = tf.convert_to_tensor(images, tf.float32)
        if x.shape[-1] == 1:
            x = tf.repeat(x, 3, axis=-1)
        x = tf.image.resize(x, [INCEPTION_SIZE, INCEPTION_SIZE], method="bicubic", antialias=True)
        return tf.clip_by_value(x, 0.0, 1.0) * 2.0 - 1.0

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feats, probs = [], []
        for start in range(0, len(images), self.batch_size):
            pool, pred = self.model(self.preprocess(images[start:start + self.batch_size]), training=False)
            feats.append(np.asarray(pool, np.float64))
            probs.append(np.asarray(pred, np.float64))
        return np.concatenate(feats), np.concatenate(probs)

    def score(self, probs: np.ndarray) -> tuple[float, float]:
        return inception_score(probs)


class ClassifierExtractor:
    """A trained tfxr classifier: penultimate-layer features, sigmoid outputs for the score."""

    def __init__(self, model, name: str, batch_size: int = 64):
        self.batch_size = batch_size
        last = model.layers[-1]
        features = last.input
        if int(np.prod(features.shape[1:])) > MAX_DOMAIN_FEATURES:
            # A Flatten head (tb_cnn: 4096-d at 64 px): too wide for a covariance of a few
            # thousand images; use the last feature map, global-average-pooled, instead.
            conv = find_last_conv_layer(model)
            features = keras.layers.GlobalAveragePooling2D()(model.get_layer(conv).output)
            name = f"{name}:{conv}-avg"
        self.name = name
        self.label = f"FID_tfxr[{name}]"
        self.score_label = f"IS_tfxr[{name}]"
        self.model = keras.Model(model.inputs, [features, model.output])
        self.size, self.channels = int(model.input_shape[1]), int(model.input_shape[-1])

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feats, probs = [], []
        for start in range(0, len(images), self.batch_size):
            x = tf.convert_to_tensor(images[start:start + self.batch_size], tf.float32)
            if x.shape[1] != self.size:
                x = tf.image.resize(x, [self.size, self.size], method="bicubic", antialias=True)
                x = tf.clip_by_value(x, 0.0, 1.0)
            if x.shape[-1] != self.channels:
                x = tf.repeat(x[..., :1], self.channels, axis=-1)
            feat, pred = self.model(x, training=False)
            feats.append(np.asarray(feat, np.float64).reshape(len(x), -1))
            probs.append(np.asarray(pred, np.float64))
        return np.concatenate(feats), np.concatenate(probs)

    def score(self, probs: np.ndarray) -> tuple[float, float]:
        return sigmoid_score(probs)


def resolve_inception_weights(path: str) -> str:
    """The weights file to use: ``path``, else Keras' cache; ``random`` for tests only."""
    if path == "random":
        return "random"
    if path:
        if not os.path.isfile(path):
            raise ConfigError(f"--inception-weights {path}: no such file")
        return path

    cache = str(keras_cache_dir() / "models" / INCEPTION_WEIGHTS_FILE)
    if os.path.isfile(cache):
        return cache
    raise ConfigError(f"no InceptionV3 ImageNet weights: download {INCEPTION_WEIGHTS_URL} on a machine with "
                      f"internet and pass --inception-weights PATH (or copy it to {cache}); or use the "
                      f"offline domain metric with --feature-model RUN_DIR_OR_KERAS")


# --------------------------------------------------------------------------- image sets
#: the largest generated image accepted (pixels), checked from the PNG header before decoding
MAX_GENERATED_PIXELS = 4096 * 4096


def load_png_dir(path: str, limit: int = 0) -> np.ndarray:
    """Grey [0, 1] images (N, H, W, 1) of every PNG in a directory (sorted by name).

    Each image's size is read from its header first: one above ``MAX_GENERATED_PIXELS``
    (a decompression bomb, or simply not a generated image) is refused before decoding.
    """
    names = sorted(n for n in os.listdir(path) if n.lower().endswith(".png"))
    if limit:
        names = names[:limit]
    if not names:
        raise ConfigError(f"--generated {path}: no .png images in this directory")
    images = []
    for name in names:
        file = os.path.join(path, name)
        try:
            with warnings.catch_warnings():
                # the size is checked right below, so Pillow's own warning would only be noise
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(file)
            with img:
                width, height = img.size
                if width * height > MAX_GENERATED_PIXELS:
                    raise ConfigError(f"--generated {file}: {width}x{height} pixels, more than the "
                                      f"{MAX_GENERATED_PIXELS:,} tfxr accepts for a generated image")
                images.append(np.asarray(img.convert("L"), np.float32) / 255.0)
        except Image.DecompressionBombError as e:   # Pillow's own limit, hit while opening
            raise ConfigError(f"--generated {file}: refused as a decompression bomb ({e})") from None
        except (OSError, SyntaxError, ValueError) as e:   # PIL raises these for damaged files
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"--generated {file}: unreadable image ({e})") from None
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ConfigError(f"--generated {path}: images of different sizes {sorted(shapes)}")
    return np.stack(images)[..., None]


def sample_generator(generator, count: int, seed: int = 0, batch_size: int = 256) -> np.ndarray:
    """``count`` images from a noise -> image generator (:func:`tfxr.models.dcgan.generate`,
    the sampler ``tfxr.gan sample`` writes with: the same seed, the same images), mapped to
    [0, 1] grey.

    A generator ending in tanh (values in [-1, 1], the DCGAN convention) is rescaled;
    one ending in sigmoid is used as is.
    """
    activation = getattr(generator.layers[-1], "activation", None)
    tanh = getattr(activation, "__name__", "") == "tanh"
    images = dcgan.generate(generator, count, seed, batch_size)
    if tanh or images.min() < 0.0:
        images = (images + 1.0) / 2.0
    return np.clip(images[..., :1], 0.0, 1.0)


def noise_images(count: int, size: int, seed: int = 0) -> np.ndarray:
    """Uniform noise images: the 'nothing learnt' baseline of every score."""
    return np.random.default_rng(seed).random((count, size, size, 1), dtype=np.float32)


def real_images(data_dir: str, split: str, label: str = "", class_value: float | None = None,
                limit: int = 0) -> tuple[np.ndarray, str]:
    """Real images of a split (optionally those whose ``label`` equals ``class_value``)."""
    manifest = read_manifest(data_dir)
    names = list(manifest["label_names"])
    column = None
    if class_value is not None:
        label = label or names[0]
        if label not in names:
            raise ConfigError(f"--label {label}: not a label of {data_dir} (has {', '.join(names)})")
        column = names.index(label)
    # the GAN's one loader (real shards only), as the pipeline scales images: uint8 / 255
    result = class_images(data_dir, split, column, class_value, manifest=manifest, limit=limit)
    result = result.astype(np.float32) / np.float32(255.0)
    what = f"{split}" + (f", {label}={class_value:g}" if column is not None else "")
    if len(result) < 20:
        raise ConfigError(f"--real {data_dir} ({what}): only {len(result)} images; need at least 20 "
                          f"(two halves of 10 for the real-vs-real baseline)")
    return result, what


# --------------------------------------------------------------------------- the report
def too_few(n: int, dim: int) -> bool:
    """Fewer images than pool3's 2048 dimensions (or than a narrower feature space's): the
    covariance is rank-deficient and FID biased upwards."""
    return n < max(MIN_FID_IMAGES if dim >= MIN_FID_IMAGES else dim + 1, 2)


def warn_small(n: int, dim: int, what: str) -> None:
    """One warning line on stderr when a FID rests on too few images for its features."""
    if too_few(n, dim):
        log.warning(f"{what}: FID on {n} images of {dim}-d features: rank-deficient covariance, "
              f"biased upwards (TTUR: >= 10,000 images for InceptionV3)")


def evaluate_generated(extractor, real: np.ndarray, generated: dict[str, np.ndarray],
                       seed: int = 0) -> dict:
    """Scores of each generated set against the real set, with the real-vs-real baseline.

    The real set is split at random into two disjoint halves A and B.  Every set's FID
    is computed against half B, and the baseline is FID(A, B): a generator that matches
    the real distribution scores about the baseline at the same N.
    """
    order = np.random.default_rng(seed).permutation(len(real))
    half = len(real) // 2
    real_a, real_b = real[order[:half]], real[order[half:2 * half]]
    feats_b, probs_b = extractor(real_b)
    stats_b = feature_statistics(feats_b)
    rows = {}
    sets = {"real (half A) [baseline]": real_a, **generated}
    for name, images in sets.items():
        feats, probs = extractor(images)
        fid = frechet_distance(*feature_statistics(feats), *stats_b)
        mean, sd = extractor.score(probs)
        warn_small(min(len(images), len(real_b)), feats.shape[1], name)
        rows[name] = {"n": int(len(images)), "n_reference": int(len(real_b)), "fid": fid,
                      "score_mean": mean, "score_sd": sd, "feature_dim": int(feats.shape[1])}
    real_score = extractor.score(probs_b)
    rows["real (half B) [reference]"] = {"n": int(len(real_b)), "n_reference": int(len(real_b)),
                                         "fid": 0.0, "score_mean": real_score[0], "score_sd": real_score[1],
                                         "feature_dim": int(feats_b.shape[1])}
    return {"fid_label": extractor.label, "score_label": extractor.score_label, "rows": rows}


def format_generative(result: dict, what: str = "") -> str:
    fid, score = result["fid_label"], result["score_label"]
    lines = [f"{fid} and {score} against real {what} half B (lower FID is better; "
             f"baseline = real half A vs half B)",
             f"{'set':<34}  {fid:>22}  {'N':>6}  {'N_ref':>6}  {score + ' (mean ± sd, 10 splits)':>30}"]
    for name, r in result["rows"].items():
        score_text = f"{r['score_mean']:.3f} ± {r['score_sd']:.3f}"
        lines.append(f"{name:<34}  {r['fid']:>22.4g}  {r['n']:>6d}  {r['n_reference']:>6d}  "
                     f"{score_text:>30}")
    if any(too_few(min(r["n"], r["n_reference"]), r["feature_dim"]) for r in result["rows"].values()):
        dim = next(iter(result["rows"].values()))["feature_dim"]
        lines.append(f"warning: fewer images than needed for {dim}-d features: FID values are biased "
                     f"upwards; compare only at equal N")
    lines.append("FID depends on N: compare values only at equal N (printed beside each)")
    return "\n".join(lines)


