"""Tests for tfxr.models: structure, parameter/FLOP counts, weights loading, training, mixed precision.

Hand computations (3x3 'same' convs, 2x2 max-pools, S = image size, C = channels,
n = outputs; params = weights + biases, MACs per image):

tb_cnn
    conv1_16  9*C*16 + 16            MACs S^2      * 16 * 9*C
    conv2_32  9*16*32 + 32 = 4,640   MACs (S/2)^2  * 32 * 9*16
    conv3_64  9*32*64 + 64 = 18,496  MACs (S/4)^2  * 64 * 9*32
    dense     (S/8)^2*64*n + n       MACs (S/8)^2*64 * n
    128x128x1, n=1: 160 + 4,640 + 18,496 + 16,385 = 39,681 params;
    2,359,296 + 18,874,368 + 18,874,368 + 16,384 = 40,124,416 MACs = 80,248,832 FLOPs.

pneumonia_cnn
    conv1_32  9*C*32 + 32            MACs S^2      * 32 * 9*C
    conv2_64  9*32*64 + 64 = 18,496  MACs (S/2)^2  * 64 * 9*32
    fc1_128   (S/4)^2*64*128 + 128   MACs (S/4)^2*64 * 128
    output    128*n + n              MACs 128 * n
    128x128x1, n=1: 320 + 18,496 + 8,388,736 + 129 = 8,407,681 params;
    4,718,592 + 75,497,472 + 8,388,608 + 128 = 88,604,800 MACs = 177,209,600 FLOPs.

None of these tests touches the network: the ImageNet tests point KERAS_HOME at a temporary
directory and replace ``keras.utils.get_file``.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tests.conftest import save_classifier_run  # noqa: E402
from tfxr import models  # noqa: E402
from tfxr.models import (  # noqa: E402
    CHEXNET_LABELS,
    MODELS,
    build_chexnet,
    build_model,
    build_pneumonia_cnn,
    build_tb_cnn,
    count_flops,
    count_macs,
    format_report,
    model_report,
)
from tfxr.models import chexnet as chexnet_module  # noqa: E402


# --------------------------------------------------------------------------- helpers


def tb_cnn_params(size: int, channels: int, n: int) -> int:
    return (9 * channels * 16 + 16) + (9 * 16 * 32 + 32) + (9 * 32 * 64 + 64) + ((size // 8) ** 2 * 64 * n + n)


def tb_cnn_macs(size: int, channels: int, n: int) -> int:
    return (
        size**2 * 16 * 9 * channels
        + (size // 2) ** 2 * 32 * 9 * 16
        + (size // 4) ** 2 * 64 * 9 * 32
        + (size // 8) ** 2 * 64 * n
    )


def pneumonia_params(size: int, channels: int, n: int) -> int:
    return (9 * channels * 32 + 32) + (9 * 32 * 64 + 64) + ((size // 4) ** 2 * 64 * 128 + 128) + (128 * n + n)


def pneumonia_macs(size: int, channels: int, n: int) -> int:
    return (
        size**2 * 32 * 9 * channels
        + (size // 2) ** 2 * 64 * 9 * 32
        + (size // 4) ** 2 * 64 * 128
        + 128 * n
    )


def densenet121_macs(size: int) -> int:
    """Conv MACs of DenseNet121 (no top) from its definition, independently of Keras.

    Stem: zero-pad 3, 7x7/2 conv to 64 channels, zero-pad 1, 3x3/2 max-pool.  Dense blocks
    of 6, 12, 24, 16 layers, each a 1x1 conv to 4*32 channels then a 3x3 conv to 32 new
    channels (growth rate 32); transitions: 1x1 conv halving the channels, 2x2/2 avg-pool.
    """
    s = (size + 6 - 7) // 2 + 1
    macs = s * s * 64 * 7 * 7 * 3
    s = (s + 2 - 3) // 2 + 1
    channels = 64
    for i, layers in enumerate((6, 12, 24, 16)):
        for _ in range(layers):
            macs += s * s * channels * 128 + s * s * 128 * 9 * 32
            channels += 32
        if i < 3:
            macs += s * s * channels * (channels // 2)
            channels //= 2
            s //= 2
    assert channels == 1024
    return macs


def weighted_layers(model):
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def assert_sigmoid_head(model, name: str, n: int) -> None:
    head = model.layers[-1]
    assert head.name == name
    assert isinstance(head, keras.layers.Dense)
    assert head.units == n
    assert head.activation is keras.activations.sigmoid
    assert head.dtype_policy.name == "float32"
    assert model.output_shape == (None, n)


def assert_probabilities(model, shape, n: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, size=(2, *shape)).astype("float32")
    x_big = (x * 50.0).astype("float32")  # saturating inputs must still give [0, 1]
    for batch in (x, x_big):
        y = model.predict(batch, verbose=0)
        assert y.shape == (2, n)
        assert y.dtype == np.float32
        assert np.all(np.isfinite(y)) and np.all(y >= 0.0) and np.all(y <= 1.0)


@pytest.fixture
def mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(scope="module")
def chexnet64():
    """A 64x64 grey CheXNet with random weights, shared by the tests that only read it."""
    keras.utils.set_random_seed(1)
    return build_chexnet(input_shape=(64, 64, 1))


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Empty Keras cache and a get_file that fails like an offline download; records calls."""
    home = tmp_path / "keras_home"
    home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(home))
    calls = []

    def no_network(fname, origin=None, **kwargs):
        calls.append((fname, origin, kwargs))
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    return home, calls


# --------------------------------------------------------------------------- tb_cnn


@pytest.mark.parametrize(
    "size,channels,n", [(64, 1, 1), (64, 3, 1), (96, 1, 1), (96, 3, 2), (128, 1, 1), (128, 3, 1)]
)
def test_tb_cnn_structure_params_flops(size, channels, n):
    model = build_tb_cnn(input_shape=(size, size, channels), num_outputs=n)
    layers = weighted_layers(model)
    assert [layer.name for layer in layers] == [
        "standardize", "conv1_16", "pool1", "conv2_32", "pool2", "conv3_64", "pool3", "flatten", "dropout", "tb_probability",
    ]
    convs = [layer for layer in layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [16, 32, 64]
    for conv in convs:
        assert conv.kernel_size == (3, 3) and conv.padding == "same"
        assert conv.activation is keras.activations.relu
        following = layers[layers.index(conv) + 1]
        assert isinstance(following, keras.layers.MaxPooling2D) and following.pool_size == (2, 2)
    dropout = model.get_layer("dropout")
    assert isinstance(dropout, keras.layers.Dropout) and dropout.rate == 0.5
    assert_sigmoid_head(model, "tb_probability", n)

    assert model.count_params() == tb_cnn_params(size, channels, n)
    assert count_macs(model) == tb_cnn_macs(size, channels, n)
    assert count_flops(model) == 2 * tb_cnn_macs(size, channels, n)
    assert_probabilities(model, (size, size, channels), n)


@pytest.mark.parametrize("builder", [build_tb_cnn, build_pneumonia_cnn])
def test_per_image_standardization(builder, tmp_path):
    """The CNNs see each image standardised: invariant to exposure (a*x + b), optional."""
    model = builder(input_shape=(32, 32, 1))
    std_layer = model.get_layer("standardize")
    x = np.random.default_rng(0).random((3, 32, 32, 1)).astype("float32")
    z = np.asarray(std_layer(x))
    np.testing.assert_allclose(z.mean(axis=(1, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(1, 2, 3)), 1, atol=1e-3)
    np.testing.assert_allclose(model.predict(x, verbose=0), model.predict(0.3 * x + 0.5, verbose=0), atol=1e-4)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.models.load_model(path)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    plain = builder(input_shape=(32, 32, 1), standardize=False)
    assert "standardize" not in [layer.name for layer in plain.layers]


def test_tb_cnn_hand_numbers_at_128():
    model = build_tb_cnn()
    assert model.input_shape == (None, 128, 128, 1)
    assert model_report(model) == {"params": 39_681, "trainable_params": 39_681, "flops_per_image": 80_248_832}


# --------------------------------------------------------------------------- pneumonia_cnn


@pytest.mark.parametrize(
    "size,channels,n", [(64, 1, 1), (64, 3, 1), (96, 1, 1), (96, 3, 3), (128, 1, 1), (128, 3, 1)]
)
def test_pneumonia_cnn_structure_params_flops(size, channels, n):
    model = build_pneumonia_cnn(input_shape=(size, size, channels), num_outputs=n)
    layers = weighted_layers(model)
    assert [layer.name for layer in layers] == [
        "standardize", "conv1_32", "pool1", "conv2_64", "pool2", "flatten", "fc1_128", "dropout", "pneumonia_probability",
    ]
    convs = [layer for layer in layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [32, 64]
    for conv in convs:
        assert conv.kernel_size == (3, 3) and conv.padding == "same"
        assert conv.activation is keras.activations.relu
        following = layers[layers.index(conv) + 1]
        assert isinstance(following, keras.layers.MaxPooling2D) and following.pool_size == (2, 2)
    dense = [layer for layer in layers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in dense] == [128, n]
    assert dense[0].activation is keras.activations.relu
    # The dropout sits between the two fully-connected layers.
    assert layers.index(dense[0]) + 1 == layers.index(model.get_layer("dropout"))
    assert model.get_layer("dropout").rate == 0.5
    assert_sigmoid_head(model, "pneumonia_probability", n)

    assert model.count_params() == pneumonia_params(size, channels, n)
    assert count_flops(model) == 2 * pneumonia_macs(size, channels, n)
    assert_probabilities(model, (size, size, channels), n)


def test_pneumonia_cnn_hand_numbers_at_128():
    model = build_pneumonia_cnn()
    assert model_report(model) == {
        "params": 8_407_681,
        "trainable_params": 8_407_681,
        "flops_per_image": 177_209_600,
    }


# --------------------------------------------------------------------------- chexnet


def test_chexnet_labels():
    assert CHEXNET_LABELS == (
        "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
        "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
    )


def test_chexnet_grey_input_structure(chexnet64):
    model = chexnet64
    assert model.input_shape == (None, 64, 64, 1)
    assert [layer.name for layer in weighted_layers(model)] == [
        "grey_to_rgb", "imagenet_normalization", "densenet121", "pathology_probabilities",
    ]
    assert model.get_layer("grey_to_rgb").output.shape == (None, 64, 64, 3)
    backbone = model.get_layer("densenet121")
    assert isinstance(backbone, keras.Model)
    assert backbone.output_shape == (None, 1024)
    assert_sigmoid_head(model, "pathology_probabilities", len(CHEXNET_LABELS))
    assert_probabilities(model, (64, 64, 1), 14)


def test_chexnet_normalisation_uses_imagenet_statistics(chexnet64):
    norm = chexnet64.get_layer("imagenet_normalization")
    mean = np.array(chexnet_module.IMAGENET_MEAN, "float32").reshape(1, 1, 1, 3)
    std = np.array(chexnet_module.IMAGENET_STD, "float32").reshape(1, 1, 1, 3)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(norm(mean)), 0.0, atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(norm(mean + std)), 1.0, atol=1e-5)


def test_chexnet_grey_to_rgb_repeats_the_channel(chexnet64):
    grey_to_rgb = keras.Model(chexnet64.input, chexnet64.get_layer("grey_to_rgb").output)
    x = np.random.default_rng(0).uniform(size=(1, 64, 64, 1)).astype("float32")
    np.testing.assert_array_equal(grey_to_rgb.predict(x, verbose=0), np.repeat(x, 3, axis=-1))


def test_chexnet_rgb_input_and_build_model():
    model = build_model("chexnet", 96, channels=3, num_outputs=14, dropout=0.2)
    assert model.input_shape == (None, 96, 96, 3)
    assert isinstance(model.get_layer("grey_to_rgb"), keras.layers.Identity)
    assert model.get_layer("dropout").rate == 0.2
    assert_sigmoid_head(model, "pathology_probabilities", 14)
    assert_probabilities(model, (96, 96, 3), 14)


def test_chexnet_flops_and_params_at_224():
    model = build_chexnet(input_shape=(224, 224, 1))
    backbone = model.get_layer("densenet121")
    backbone_macs = count_macs(backbone)
    assert backbone_macs == densenet121_macs(224) == 2_833_137_664
    # Published figure: about 2.87 G MACs (5.7 GFLOPs); tools that quote 2.87-2.88 G also
    # count batch norm, ReLU and pooling, which count_flops leaves out (~1.3% here).
    assert abs(backbone_macs - 2.87e9) / 2.87e9 < 0.02, backbone_macs
    assert count_macs(model) == backbone_macs + 1024 * 14  # grey_to_rgb/normalisation: no MACs
    report = model_report(model)
    assert report["flops_per_image"] == 2 * count_macs(model)
    # keras.applications.DenseNet121(include_top=False): 7,037,504 params, 83,648 of them
    # the non-trainable BatchNorm moving statistics; head 1024 * 14 + 14.
    assert report["params"] == 7_037_504 + 14_350
    assert report["trainable_params"] == 7_037_504 - 83_648 + 14_350


@pytest.mark.parametrize("bad", [{"input_shape": (64, 64, 2)}, {"input_shape": (16, 16, 1)}, {"dropout": 1.0},
                                 {"num_outputs": 0}, {"weights": "imagenet21k"}])
def test_chexnet_rejects_bad_arguments(bad):
    kwargs = {"input_shape": (64, 64, 1), **bad}
    with pytest.raises(ValueError):
        build_chexnet(**kwargs)


# --------------------------------------------------------------------------- ImageNet weights


def test_chexnet_imagenet_offline_raises_with_remedy(offline):
    home, calls = offline
    with pytest.raises(RuntimeError) as info:
        build_chexnet(input_shape=(64, 64, 1), weights="imagenet")
    message = str(info.value)
    assert "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert "~/.keras/models/" in message and str(home / "models") in message
    assert "--weights PATH" in message
    assert "Temporary failure in name resolution" in message
    assert isinstance(info.value.__cause__, Exception)
    # The download was attempted once, into the (empty) cache that KERAS_HOME names.
    [(fname, origin, kwargs)] = calls
    assert fname == chexnet_module.IMAGENET_WEIGHTS_FILE
    assert origin == chexnet_module.IMAGENET_WEIGHTS_URL
    assert kwargs["cache_dir"] == str(home) and kwargs["cache_subdir"] == "models"


def test_imagenet_constants_match_keras():
    from keras.src.applications import densenet

    assert chexnet_module.IMAGENET_WEIGHTS_URL == densenet.DENSENET121_WEIGHT_PATH_NO_TOP


def test_chexnet_imagenet_uses_a_preplaced_file_offline(offline):
    home, calls = offline
    keras.utils.set_random_seed(7)
    # Stand-in for the real file: a DenseNet121 (no top) saved in the legacy HDF5 format.
    reference = keras.applications.DenseNet121(
        include_top=False, weights=None, input_shape=(64, 64, 3), pooling="avg"
    )
    (home / "models").mkdir()
    reference.save(str(home / "models" / chexnet_module.IMAGENET_WEIGHTS_FILE))

    model = build_chexnet(input_shape=(64, 64, 1), weights="imagenet")
    assert calls == []  # the cache was used, no download attempted
    loaded = model.get_layer("densenet121").get_weights()
    expected = reference.get_weights()
    assert len(loaded) == len(expected)
    for a, b in zip(loaded, expected):
        np.testing.assert_array_equal(a, b)


def test_chexnet_imagenet_corrupt_cached_file_names_it(offline):
    home, _ = offline
    (home / "models").mkdir()
    bad = home / "models" / chexnet_module.IMAGENET_WEIGHTS_FILE
    bad.write_bytes(b"this is not an HDF5 file")
    with pytest.raises(ValueError, match="download"):
        try:
            build_chexnet(input_shape=(64, 64, 1), weights="imagenet")
        except ValueError as e:
            assert str(bad) in str(e)
            raise


# --------------------------------------------------------------------------- weights from a file


def test_chexnet_weights_h5_roundtrip(chexnet64, tmp_path):
    path = tmp_path / "chexnet.weights.h5"
    chexnet64.save_weights(str(path))
    x = np.random.default_rng(3).uniform(size=(2, 64, 64, 1)).astype("float32")
    reloaded = build_model("chexnet", 64, num_outputs=14, weights=str(path))
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), chexnet64.predict(x, verbose=0))


def test_chexnet_keras_file_roundtrip_and_rgb(chexnet64, tmp_path):
    path = save_classifier_run(chexnet64, tmp_path / "run", "chexnet", 64, CHEXNET_LABELS)
    x = np.random.default_rng(4).uniform(size=(2, 64, 64, 1)).astype("float32")
    expected = chexnet64.predict(x, verbose=0)
    reloaded = build_chexnet(input_shape=(64, 64, 1), weights=path)
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), expected)
    # Layer-by-layer copy: the same weights fit an RGB model, which gives the same answer
    # for a grey image repeated to three channels.
    rgb = build_chexnet(input_shape=(64, 64, 3), weights=path)
    np.testing.assert_allclose(rgb.predict(np.repeat(x, 3, axis=-1), verbose=0), expected, atol=1e-6)


def test_chexnet_wrong_weights_files_give_clear_errors(tmp_path):
    tb = build_tb_cnn(input_shape=(64, 64, 1))
    wrong_h5 = tmp_path / "tb.weights.h5"
    tb.save_weights(str(wrong_h5))
    wrong_keras = tmp_path / "tb.keras"
    tb.save(str(wrong_keras))
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"not an hdf5 file at all")
    for path in (wrong_h5, wrong_keras, junk):
        with pytest.raises(ValueError) as info:
            build_chexnet(input_shape=(64, 64, 1), weights=str(path))
        assert str(path) in str(info.value)

    with pytest.raises(FileNotFoundError, match="missing.weights.h5"):
        build_chexnet(input_shape=(64, 64, 1), weights=str(tmp_path / "missing.weights.h5"))
    with pytest.raises(ValueError, match=r"\.weights\.h5 or \.keras"):
        build_chexnet(input_shape=(64, 64, 1), weights=str(tmp_path / "model.h5"))


def test_chexnet_wrong_head_size_in_weights_file(chexnet64, tmp_path):
    path = save_classifier_run(chexnet64, tmp_path / "run", "chexnet", 64, CHEXNET_LABELS)
    with pytest.raises(ValueError, match="pathology_probabilities") as info:
        build_chexnet(input_shape=(64, 64, 1), num_outputs=5, weights=path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_load_weights_file_works_for_any_model(tmp_path, suffix):
    keras.utils.set_random_seed(5)
    source = build_pneumonia_cnn(input_shape=(32, 32, 1))
    if suffix == ".weights.h5":
        path = tmp_path / f"pneumonia{suffix}"
        source.save_weights(str(path))
    else:   # a .keras file is read only from a tfxr run folder (config.yaml beside it)
        path = save_classifier_run(source, tmp_path / "run", "pneumonia_cnn", 32, ["pneumonia"],
                                   file=f"pneumonia{suffix}")
    target = build_pneumonia_cnn(input_shape=(32, 32, 1))
    models.load_weights_file(target, path)
    x = np.random.default_rng(5).uniform(size=(2, 32, 32, 1)).astype("float32")
    np.testing.assert_array_equal(target.predict(x, verbose=0), source.predict(x, verbose=0))
    with pytest.raises(ValueError, match=str(path)):
        models.load_weights_file(build_tb_cnn(input_shape=(32, 32, 1)), path)


# --------------------------------------------------------------------------- training


def toy_square_batch(n: int = 32, size: int = 32, seed: int = 0):
    """Half the images have a bright 8x8 square somewhere on a noisy background (label 1)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 0.3, size=(n, size, size, 1)).astype("float32")
    y = np.zeros((n, 1), "float32")
    for i in range(0, n, 2):
        r, c = rng.integers(0, size - 8, size=2)
        x[i, r : r + 8, c : c + 8, 0] = 1.0
        y[i] = 1.0
    return x, y


@pytest.mark.parametrize("name", ["tb_cnn", "pneumonia_cnn"])
def test_loss_goes_down(name):
    keras.utils.set_random_seed(0)
    x, y = toy_square_batch()
    model = build_model(name, 32)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    before = model.evaluate(x, y, verbose=0)
    for _ in range(30):
        model.train_on_batch(x, y)
    after = model.evaluate(x, y, verbose=0)
    assert np.isfinite(after)
    # Measured over seeds 0-3: tb_cnn 0.69 -> ~0.35, pneumonia_cnn 0.69 -> ~0.01.
    assert after < 0.75 * before, (before, after)


# --------------------------------------------------------------------------- mixed precision


@pytest.mark.parametrize("name,size", [("tb_cnn", 64), ("pneumonia_cnn", 64), ("chexnet", 64)])
def test_mixed_bfloat16_builds_and_outputs_float32(mixed_bfloat16, name, size):
    model = build_model(name, size, num_outputs=2)
    assert model.layers[-1].dtype_policy.name == "float32"
    compute_dtypes = {layer.compute_dtype for layer in weighted_layers(model)[:-1] if layer.weights}
    assert compute_dtypes == {"bfloat16"}
    x = np.random.default_rng(0).uniform(size=(2, size, size, 1)).astype("float32")
    y = model(x, training=False)
    assert keras.backend.standardize_dtype(y.dtype) == "float32"
    y = keras.ops.convert_to_numpy(y)
    assert y.shape == (2, 2) and np.all((y >= 0) & (y <= 1))
    if name != "chexnet":  # a training step runs too (loss computed from float32 outputs)
        model.compile(optimizer="adam", loss="binary_crossentropy")
        loss = model.train_on_batch(x, np.ones((2, 2), "float32"))
        assert np.isfinite(loss)


def test_policy_is_float32_outside_the_fixture():
    assert keras.mixed_precision.global_policy().name == "float32"


# --------------------------------------------------------------------------- registry & reports


def test_registry_and_unknown_name():
    assert set(MODELS) == {"tb_cnn", "pneumonia_cnn", "chexnet"}
    assert MODELS["tb_cnn"] is build_tb_cnn and models.build_model is build_model
    with pytest.raises(ValueError) as info:
        build_model("resnet50", 128)
    for name in MODELS:
        assert name in str(info.value)


def test_build_model_passes_shape_outputs_and_kwargs():
    model = build_model("tb_cnn", (96, 64), channels=3, num_outputs=2, dropout=0.25)
    assert model.input_shape == (None, 96, 64, 3)
    assert model.output_shape == (None, 2)
    assert model.get_layer("dropout").rate == 0.25


@pytest.mark.parametrize(
    "builder,kwargs",
    [(build_tb_cnn, {"input_shape": (4, 4, 1)}), (build_tb_cnn, {"dropout": 1.0}),
     (build_pneumonia_cnn, {"num_outputs": 0}), (build_pneumonia_cnn, {"input_shape": (64, 64)})],
)
def test_cnns_reject_bad_arguments(builder, kwargs):
    with pytest.raises(ValueError):
        builder(**kwargs)


def test_format_report_one_line():
    line = format_report("tb_cnn", build_tb_cnn())
    assert "\n" not in line
    assert line.startswith("tb_cnn: ")
    assert "39,681 params" in line and "80.25 MFLOPs" in line


def test_count_flops_other_layer_types_and_nesting():
    inner = keras.Sequential(
        [keras.Input((8, 8, 8)), keras.layers.SeparableConv2D(16, 3, padding="same", depth_multiplier=2)],
        name="inner",
    )
    inputs = keras.Input((16, 16, 4))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(inputs)  # -> 8x8x8
    x = inner(x)  # -> 8x8x16
    x = keras.layers.DepthwiseConv2D(3, padding="valid")(x)  # -> 6x6x16
    x = keras.layers.Conv2DTranspose(4, 2, strides=2)(x)  # -> 12x12x4
    x = keras.layers.Conv2D(6, 1, groups=2)(x)  # -> 12x12x6
    x = keras.layers.Dense(5)(x)  # applied per position
    model = keras.Model(inputs, x)
    expected = (
        8 * 8 * 8 * (3 * 3 * 4)  # strided conv
        + 8 * 8 * (3 * 3 * 8 * 2) + 8 * 8 * (16 * 16)  # separable: depthwise + pointwise
        + 6 * 6 * 16 * 3 * 3  # depthwise
        + 6 * 6 * (2 * 2 * 4 * 16)  # transpose: input positions x kernel
        + 12 * 12 * 6 * (1 * 1 * 4 // 2)  # grouped 1x1
        + 12 * 12 * 6 * 5  # dense per position
    )
    assert count_macs(model) == expected
    assert count_flops(model) == 2 * expected


def test_count_flops_needs_a_fixed_input_size():
    inputs = keras.Input((None, None, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs))
    with pytest.raises(ValueError, match="fixed input shape"):
        count_flops(model)


def test_the_configs_name_the_registrys_models():
    """tfxr.configs names the classifiers without importing Keras: the same names as MODELS."""
    from tfxr.configs import MODEL_NAMES, REPORT_MODELS
    from tfxr.models import MODELS

    assert MODEL_NAMES == tuple(MODELS)
    assert set(MODEL_NAMES) < set(REPORT_MODELS)
