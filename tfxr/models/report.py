"""Parameter and FLOP counts of a built Keras model.

FLOPs are counted analytically from the layer shapes, per image (batch size 1), as
2 x multiply-accumulates (MACs) of the layers that do the arithmetic:

* ``Conv1D/2D/3D``: output positions x kernel size (kh x kw x C_in/groups x C_out);
* ``DepthwiseConv1D/2D``: output positions x kh x kw x C_in x depth_multiplier;
* ``SeparableConv1D/2D``: the depthwise part plus the 1x1 pointwise part;
* ``Conv1D/2D/3DTranspose``: input positions x kernel size;
* ``Dense``: input units x output units (x leading non-batch dims, if any).

Not counted: bias additions, activations, batch normalisation, pooling, padding,
concatenation, normalisation/rescaling and other per-element layers (together well under
1% of the total for these models).  This is the usual convention of published figures,
e.g. DenseNet121 at 224x224x3 = 2.87 G MACs = 5.7 GFLOPs.  Nested models (such as the
DenseNet121 inside CheXNet) are counted recursively.  The model must have a fixed input
size.

Memory accounting (the numbers of docs/SCALING.md), per model:

* gradient bytes per step: what each rank's ring-allreduce averages -- the trainable
  parameters at 4 bytes (fp32) or 2 bytes (Horovod's fp16 compression);
* activation memory per image: the sum of every layer's output sizes in the forward pass
  (nested models counted layer by layer, the input excluded), at 4 bytes -- what
  backpropagation keeps alive in the naive schedule, an estimate: TensorFlow frees or
  fuses some outputs and keeps a few extra (e.g. batch-norm inputs);
* peak memory per rank: measured, the peak resident set size (``ru_maxrss``) of a fresh
  process that builds the model and Adam and runs ``steps`` of the trainers' real training
  steps (the classifier's ``DistributedStep``, the GAN's ``GanStep``) on random data at
  the given batch size, beside its RSS just before the first step.

Command: ``python -m tfxr.report --model chexnet --image-size 224 --batch-size 16
[--measure]`` (:mod:`tfxr.report`; ``python -m tfxr.models.report`` is its older name;
``--model dcgan`` reports the generator and discriminator of a GAN step).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys

import keras

from tfxr.configs import REPORT_MODELS   # what `--model` accepts
from tfxr.errors import ConfigError

FLOAT_BYTES = {"fp32": 4, "fp16": 2}

_TRANSPOSE = tuple(
    getattr(keras.layers, n) for n in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
)
_SEPARABLE = tuple(getattr(keras.layers, n) for n in ("SeparableConv1D", "SeparableConv2D"))
_DEPTHWISE = tuple(getattr(keras.layers, n) for n in ("DepthwiseConv1D", "DepthwiseConv2D"))
_CONV = tuple(getattr(keras.layers, n) for n in ("Conv1D", "Conv2D", "Conv3D"))


def _spatial_positions(shape, data_format: str, layer: keras.layers.Layer, which: str) -> int:
    dims = shape[2:] if data_format == "channels_first" else shape[1:-1]
    if any(d is None for d in dims):
        raise ValueError(
            f"count_flops: layer {layer.name!r} has an unknown {which} size {tuple(shape)}; "
            f"build the model with a fixed input shape"
        )
    return math.prod(dims)


def _layer_macs(layer: keras.layers.Layer) -> int:
    """MACs per image of one (non-nested) layer; 0 for layers that are not counted."""
    if isinstance(layer, _TRANSPOSE):
        return _spatial_positions(layer.input.shape, layer.data_format, layer, "input") * math.prod(
            layer.kernel.shape
        )
    if isinstance(layer, _SEPARABLE):
        positions = _spatial_positions(layer.output.shape, layer.data_format, layer, "output")
        return positions * (math.prod(layer.depthwise_kernel.shape) + math.prod(layer.pointwise_kernel.shape))
    if isinstance(layer, _DEPTHWISE):
        positions = _spatial_positions(layer.output.shape, layer.data_format, layer, "output")
        return positions * math.prod(layer.kernel.shape)
    if isinstance(layer, _CONV):
        # kernel: (*kernel_size, C_in / groups, C_out) -> MACs per output position.
        positions = _spatial_positions(layer.output.shape, layer.data_format, layer, "output")
        return positions * math.prod(layer.kernel.shape)
    if isinstance(layer, keras.layers.Dense):
        leading = layer.output.shape[1:-1]
        if any(d is None for d in leading):
            raise ValueError(f"count_flops: layer {layer.name!r} has an unknown input shape")
        return math.prod(leading) * math.prod(layer.kernel.shape)
    return 0


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates per image of ``model`` (see the module docstring)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_macs(layer)
        else:
            total += _layer_macs(layer)
    return total


def count_flops(model: keras.Model) -> int:
    """FLOPs per image of ``model``: 2 x :func:`count_macs` (see the module docstring)."""
    return 2 * count_macs(model)


def model_report(model: keras.Model) -> dict[str, int]:
    """``{"params", "trainable_params", "flops_per_image"}`` of a built model."""
    return {
        "params": int(model.count_params()),
        "trainable_params": int(sum(math.prod(w.shape) for w in model.trainable_weights)),
        "flops_per_image": count_flops(model),
    }


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} "


def format_report(name: str, model: keras.Model) -> str:
    """One line for logs, e.g. ``tb_cnn: input (128, 128, 1) -> (None, 1), 39,681 params
    (39,681 trainable), 80.25 MFLOPs/image``."""
    r = model_report(model)
    return (
        f"{name}: input {tuple(model.input_shape[1:])} -> {tuple(model.output_shape)}, "
        f"{r['params']:,} params ({r['trainable_params']:,} trainable), "
        f"{_si(r['flops_per_image'])}FLOPs/image"
    )


# ---------------------------------------------------------------------------
# memory accounting


def activation_elements(model: keras.Model) -> int:
    """Floats the forward pass of one image produces: every layer's outputs, summed.

    Nested models (DenseNet121 in CheXNet) are walked layer by layer; input layers are
    not counted.  Raises ValueError for a model without a fixed input size.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            total += activation_elements(layer)
            continue
        outputs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
        for tensor in outputs:
            dims = tuple(tensor.shape[1:])
            if any(d is None for d in dims):
                raise ValueError(f"activation_elements: layer {layer.name!r} has an unknown output size "
                                 f"{tuple(tensor.shape)}; build the model with a fixed input shape")
            total += math.prod(dims)
    return total


def memory_report(model: keras.Model, batch_size: int) -> dict[str, int]:
    """Bytes a data-parallel rank holds and sends for ``model`` at ``batch_size``.

    ``adam_state_bytes`` are Adam's two fp32 moments per trainable parameter;
    ``gradient_bytes_*`` what one step's allreduce averages.
    """
    trainable = int(sum(math.prod(w.shape) for w in model.trainable_weights))
    per_image = activation_elements(model) * FLOAT_BYTES["fp32"]
    return {
        "params": int(model.count_params()),
        "trainable_params": trainable,
        "weight_bytes": int(model.count_params()) * FLOAT_BYTES["fp32"],
        "adam_state_bytes": 2 * trainable * FLOAT_BYTES["fp32"],
        "gradient_bytes_fp32": trainable * FLOAT_BYTES["fp32"],
        "gradient_bytes_fp16": trainable * FLOAT_BYTES["fp16"],
        "activation_bytes_per_image": per_image,
        "activation_bytes_per_batch": per_image * batch_size,
        "batch_size": batch_size,
    }


def build_for_report(name: str, image_size: int, channels: int = 1) -> dict[str, keras.Model]:
    """The networks one training step of ``name`` runs: ``{"model": m}``, or the DCGAN's
    ``{"generator": g, "discriminator": d}``.  Bad sizes raise ConfigError."""
    if name not in REPORT_MODELS:
        raise ConfigError(f"model: unknown value {name!r} (allowed: {', '.join(REPORT_MODELS)})")
    try:
        if name == "dcgan":
            try:
                from tfxr.models import dcgan
            except ImportError:
                raise ConfigError("model: dcgan needs tfxr/models/dcgan.py, not in this checkout") from None
            return {"generator": dcgan.build_generator(image_size),
                    "discriminator": dcgan.build_discriminator(image_size)}
        if name == "detector":   # KerasCV's YOLOv8 (tfxr/models/detector.py), one class
            from tfxr.models.detector import build_detector

            return {"model": build_detector(image_size, num_classes=1, channels=channels)}
        from tfxr.models import CHEXNET_LABELS, build_model

        outputs = len(CHEXNET_LABELS) if name == "chexnet" else 1  # the 14 ChestX-ray14 findings
        return {"model": build_model(name, image_size, channels=channels, num_outputs=outputs)}
    except ValueError as e:
        raise ConfigError(f"image-size {image_size} for {name}: {e}") from None


def _rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _peak_rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _classifier_step(model: keras.Model, batch_size: int):
    """The classifier's real training step (``DistributedStep``: tape, allreduce, Adam) on
    one random batch."""
    import tensorflow as tf

    # lazy: tfxr.training imports tfxr.models, whose model_report is this module (a cycle)
    from tfxr.training.classifier import DistributedStep

    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    images = tf.random.uniform((batch_size, *model.input_shape[1:]))
    labels = tf.cast(tf.random.uniform((batch_size, *model.output_shape[1:])) > 0.5, tf.float32)
    step = DistributedStep(model, optimizer, keras.losses.BinaryCrossentropy())
    return lambda: step(images, labels)


def _detector_step(model: keras.Model, batch_size: int):
    """One detector step: the library's loss on random images, one random box each."""
    import tensorflow as tf

    from tfxr.models.detector import detection_loss, pack_targets

    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    images = tf.random.uniform((batch_size, *model.input_shape[1:]))
    targets = {k: tf.constant(v) for k, v in pack_targets([[(0, (0.2, 0.3, 0.5, 0.6))]] * batch_size).items()}

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = detection_loss(model, images, targets)
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    return step


def _gan_step(generator: keras.Model, discriminator: keras.Model, batch_size: int):
    """The DCGAN's real training step (``GanStep``: both networks' forward and backward
    passes, both allreduces, both Adams) on one random batch."""
    import tensorflow as tf

    # lazy: tfxr.training imports tfxr.models, whose model_report is this module (a cycle)
    from tfxr.training.gan import GanStep

    g_opt, d_opt = keras.optimizers.Adam(), keras.optimizers.Adam()
    g_opt.build(generator.trainable_variables)
    d_opt.build(discriminator.trainable_variables)
    real = tf.random.uniform((batch_size, *discriminator.input_shape[1:]), -1.0, 1.0)
    noise = tf.random.normal((batch_size, *generator.input_shape[1:]))
    step = GanStep(generator, discriminator, g_opt, d_opt)
    sigma, number = tf.constant(0.0), tf.constant(0, tf.int64)
    return lambda: step(real, noise, sigma, number)[0]


def measure_in_this_process(name: str, image_size: int, batch_size: int, steps: int) -> dict[str, int]:
    """Build, run ``steps`` training steps, return RSS before the first step and the peak.

    Meaningful only in a fresh process (the peak of a long-lived one includes whatever it
    did before): :func:`measure_peak_memory` runs it in a subprocess.
    """
    nets = build_for_report(name, image_size)
    if name == "dcgan":
        step = _gan_step(nets["generator"], nets["discriminator"], batch_size)
    elif name == "detector":
        step = _detector_step(nets["model"], batch_size)
    else:
        step = _classifier_step(nets["model"], batch_size)
    before = _rss_bytes()
    losses = [float(step()) for _ in range(steps)]
    return {"rss_before_training_bytes": before, "peak_rss_bytes": _peak_rss_bytes(), "steps": steps,
            "losses": losses}


def measure_peak_memory(name: str, image_size: int, batch_size: int, steps: int = 2) -> dict[str, int]:
    """Peak resident memory of one training process (one rank) for ``name``: runs
    :func:`measure_in_this_process` in a fresh single-threaded-launch Python process."""
    code = ("import json, sys; from tfxr.models.report import measure_in_this_process as m; "
            f"print('TFXR_MEMORY', json.dumps(m({name!r}, {image_size}, {batch_size}, {steps})))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"memory measurement of {name} failed:\n{r.stderr[-3000:]}")
    line = next(x for x in r.stdout.splitlines() if x.startswith("TFXR_MEMORY "))
    return json.loads(line.split(" ", 1)[1])


def mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def format_memory(name: str, nets: dict[str, keras.Model], batch_size: int) -> list[str]:
    lines = []
    for part, model in nets.items():
        r = memory_report(model, batch_size)
        label = name if part == "model" else f"{name} {part}"
        lines.append(
            f"{label}: input {tuple(model.input_shape[1:])}, {r['params']:,} params "
            f"({r['trainable_params']:,} trainable), {_si(count_flops(model))}FLOPs/image\n"
            f"  gradients per step (allreduce): {mib(r['gradient_bytes_fp32'])} fp32, "
            f"{mib(r['gradient_bytes_fp16'])} fp16\n"
            f"  weights {mib(r['weight_bytes'])}, Adam state {mib(r['adam_state_bytes'])}\n"
            f"  activations (forward layer outputs, fp32): {mib(r['activation_bytes_per_image'])}/image, "
            f"{mib(r['activation_bytes_per_batch'])} per batch of {batch_size}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m tfxr.models.report``, the older name of ``python -m tfxr.report``: :func:`tfxr.report.main`."""
    from tfxr.report import main as command   # lazy: the library does not import its command line

    return command(argv)


if __name__ == "__main__":
    sys.exit(main())
