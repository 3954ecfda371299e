"""Parameter, FLOP and memory accounting of tfxr.models.report, and its command."""
from __future__ import annotations

import json
import sys

import keras
import pytest

from tests.conftest import run
from tfxr.config import ConfigError
from tfxr.models.report import (activation_elements, build_for_report, count_flops, measure_peak_memory,
                                memory_report)


def _tiny(batch_norm: bool = False) -> keras.Model:
    image = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(image)       # 8*8*4 = 256 floats
    if batch_norm:
        x = keras.layers.BatchNormalization()(x)                # 256 more
    x = keras.layers.MaxPooling2D()(x)                          # 4*4*4 = 64
    x = keras.layers.Flatten()(x)                               # 64
    return keras.Model(image, keras.layers.Dense(2)(x))         # 2


def test_activation_elements_sum_every_layer_output_once():
    assert activation_elements(_tiny()) == 256 + 64 + 64 + 2
    assert activation_elements(_tiny(batch_norm=True)) == 256 + 256 + 64 + 64 + 2
    outer_in = keras.Input((8, 8, 1))
    nested = keras.Model(outer_in, keras.layers.Activation("sigmoid")(_tiny()(outer_in)))
    assert activation_elements(nested) == 256 + 64 + 64 + 2 + 2  # walked into, not counted as one


def test_memory_report_counts_trainable_gradients_only():
    model = _tiny(batch_norm=True)
    trainable = (3 * 3 * 1 * 4 + 4) + (4 + 4) + (64 * 2 + 2)    # conv, BN gamma/beta, dense
    r = memory_report(model, batch_size=16)
    assert r["trainable_params"] == trainable and r["params"] == trainable + 8  # BN moving mean/var
    assert r["gradient_bytes_fp32"] == 4 * trainable and r["gradient_bytes_fp16"] == 2 * trainable
    assert r["adam_state_bytes"] == 8 * trainable
    assert r["activation_bytes_per_image"] == 4 * 642
    assert r["activation_bytes_per_batch"] == 16 * 4 * 642


def test_densenet_size_matches_the_published_architecture():
    chexnet = build_for_report("chexnet", 224)["model"]
    r = memory_report(chexnet, batch_size=1)
    # DenseNet121 has 6,953,856 trainable parameters without its 1000-way head; +14 sigmoid units.
    assert r["trainable_params"] == 6_953_856 + 1024 * 14 + 14
    assert 2.8e9 < count_flops(chexnet) / 2 < 2.9e9          # 2.87 G MACs at 224 px
    # Activations grow with the pixel count: 512 px holds (512/224)^2 as much per image.
    at_512 = activation_elements(build_for_report("chexnet", 512)["model"])
    assert at_512 / activation_elements(chexnet) == pytest.approx((512 / 224) ** 2, rel=0.03)


def test_bad_model_or_size_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown value 'resnet'"):
        build_for_report("resnet", 128)
    with pytest.raises(ConfigError, match="image-size 7 for tb_cnn"):
        build_for_report("tb_cnn", 7)


def test_dcgan_reports_both_networks():
    nets = build_for_report("dcgan", 64)
    assert set(nets) == {"generator", "discriminator"}
    assert nets["generator"].output_shape[1:] == (64, 64, 1)


def test_peak_memory_is_measured_in_a_fresh_process():
    """The step's growth holds at least the batch's activations (kept for the backward pass):
    152 MiB for tb_cnn at 128 px x 64, far above the allocator's noise."""
    measured = measure_peak_memory("tb_cnn", 128, batch_size=64, steps=1)
    activations = memory_report(build_for_report("tb_cnn", 128)["model"], 64)["activation_bytes_per_batch"]
    assert measured["rss_before_training_bytes"] > 100 * 2**20                                   # TF loaded
    assert measured["peak_rss_bytes"] - measured["rss_before_training_bytes"] >= 0.75 * activations
    # the real step ran: binary cross-entropy of an untrained net on random labels is near ln 2
    assert len(measured["losses"]) == 1 and 0.5 < measured["losses"][0] < 0.9


def test_gan_memory_is_measured_through_the_gan_step():
    measured = measure_peak_memory("dcgan", 28, batch_size=4, steps=1)
    # the discriminator's loss: BCE on real plus BCE on fake, each near ln 2 untrained
    assert measured["steps"] == 1 and 1.0 < measured["losses"][0] < 1.8


def test_command_prints_and_writes_the_numbers(tmp_path):
    out = tmp_path / "report.json"
    r = run([sys.executable, "-m", "tfxr.models.report", "--model", "tb_cnn", "--image-size", "64",
             "--batch-size", "4", "--json", str(out)])
    assert "gradients per step (allreduce)" in r.stdout and "RuntimeWarning" not in r.stderr
    saved = json.loads(out.read_text())
    expected = memory_report(build_for_report("tb_cnn", 64)["model"], 4)
    assert {k: saved["networks"]["model"][k] for k in expected} == expected
    bad = run([sys.executable, "-m", "tfxr.models.report", "--model", "vgg"], check=False)
    assert bad.returncode == 2 and "tfxr: error: --model: unknown value 'vgg'" in bad.stderr
