"""The box detector: KerasCV 0.9's YOLOv8 (anchor-free, task-aligned assignment, CIoU +
distribution-focal box loss) with a small randomly initialised ``YOLOV8Backbone``.

Why this library (measured on this machine, TensorFlow 2.18.1 / Keras 3.10.0, 2 CPU cores)
-----------------------------------------------------------------------------------------
Candidates were KerasCV 0.9.0 (``YOLOV8Detector``, ``RetinaNet``) and KerasHub 0.21.1
(``RetinaNetObjectDetector``), each driven the way tfxr trains: a ``tf.GradientTape``
step inside ``tf.function`` that calls the model's own ``compute_loss`` (what Horovod's
``DistributedGradientTape`` wraps), not ``fit``.

* KerasCV ``YOLOV8Detector`` with the backbone below ("tiny", 16-128 channels): 0.99 M
  parameters at 128 px grey-scale; a tape step on phantoms took the loss from 2611 to 41
  in 15 epochs of 207 images, and ``decode_predictions`` (its NMS decoder) returns boxes
  in tfxr's normalised ``rel_xyxy`` coordinates.  One defect found and worked around:
  padding the ground truth with KerasCV's documented ``-1`` boxes (zero width and height)
  makes the loss NaN under ``tf.function`` (eager is finite): the CIoU of the padded
  boxes divides 0 by a height of ``-128 - (-128) + 1e-7``, which graph rewriting cancels
  to 0.  tfxr pads with a non-degenerate box outside the image (:data:`PAD_BOX`), which
  the library masks out the same way (any coordinate <= -1), and the loss is finite.
* KerasHub ``RetinaNetObjectDetector`` with a ResNet-18 encoder: 19.2 M parameters and
  4.5 GFLOPs per 256-px image (about 20x the YOLOv8 "tiny" here), too heavy for 2 cores;
  its loss is exactly 0 for a batch without boxes (its weights are divided by the
  positive count and zeroed when there is none), so negative-only batches teach it
  nothing, and most RSNA images are negatives; its relative box formats fail in its
  anchor generator (``convert_format`` without a height); it also pulls ``tensorflow-text``
  (which requires the full ``tensorflow`` wheel beside ``tensorflow-cpu``).

So tfxr uses KerasCV 0.9's YOLOv8.  KerasCV is in maintenance (its models move to
KerasHub, whose YOLOv8 port is not released for Keras 3.10 / TF 2.18); 0.9.0 is pinned.

Input and output
----------------
Images are float grey-scale ``(S, S, 1)`` in [0, 1] (``S`` a multiple of 32, 64-1024;
256-512 for radiographs).  Training targets are ``{"boxes": (B, MAX_BOXES, 4) rel_xyxy,
"classes": (B, MAX_BOXES)}`` padded with :data:`PAD_BOX` / ``-1``; images without a box
are negatives (all padding).  :func:`decode` returns NMS'd boxes (``rel_xyxy``), scores
and classes, padded with -1 to ``max_detections``.

``backbone_weights``: a ``.weights.h5`` file of a ``YOLOV8Backbone`` of the same
architecture and channels (``backbone.save_weights(path)``).  None can be downloaded
here; a missing or mismatching file is a ConfigError with the remedy.
"""
from __future__ import annotations

import os

import keras
import keras_cv   # noqa: F401 - the detector library (registers its serialisable classes)
import numpy as np
import yaml

from tfxr.data.pipeline import PAD_BOX, pad_boxes  # noqa: F401 - the targets' padding (re-exported)
from tfxr.errors import ConfigError

#: backbone name -> (stackwise_channels, stackwise_depth) of a YOLOV8Backbone.  "xs", "s"
#: and "m" are KerasCV's preset architectures (yolo_v8_*_backbone), randomly initialised.
BACKBONES: dict[str, tuple[list[int], list[int]]] = {
    "tiny": ([16, 32, 64, 128], [1, 1, 1, 1]),
    "xs": ([32, 64, 128, 256], [1, 2, 2, 1]),
    "s": ([64, 128, 256, 512], [1, 2, 2, 1]),
    "m": ([96, 192, 384, 576], [2, 4, 4, 2]),
}
#: ground-truth boxes per image the targets hold (boxes past it are dropped)
MAX_BOXES = 16
BOX_FORMAT = "rel_xyxy"


def check_image_size(size: int) -> int:
    if not isinstance(size, int) or isinstance(size, bool) or size % 32 or not 64 <= size <= 1024:
        raise ConfigError(f"image size {size!r}: the detector needs a multiple of 32 in 64..1024 "
                          f"(its feature maps have strides 8, 16 and 32), e.g. 256 or 512")
    return size


def build_backbone(image_size: int, channels: int = 1, backbone: str = "tiny") -> keras.Model:
    if backbone not in BACKBONES:
        raise ConfigError(f"backbone: unknown value {backbone!r} (allowed: {', '.join(BACKBONES)})")
    widths, depths = BACKBONES[backbone]
    return keras_cv.models.YOLOV8Backbone(stackwise_channels=widths, stackwise_depth=depths,
                                          include_rescaling=False,
                                          input_shape=(check_image_size(image_size), image_size, channels))


def load_backbone_weights(model: keras.Model, path: str, backbone: str) -> None:
    """Load ``path`` into ``model``; a missing or mismatching file is one clear ConfigError."""
    remedy = (f"pretrained weights cannot be downloaded here: copy a {backbone!r} YOLOV8Backbone weights "
              f"file (saved with backbone.save_weights('NAME.weights.h5'), same channels) onto this machine, "
              f"or leave --backbone-weights empty to start from random weights")
    if not os.path.isfile(path):
        raise ConfigError(f"--backbone-weights {path}: no such file; {remedy}")
    if not path.endswith(".weights.h5"):
        raise ConfigError(f"--backbone-weights {path}: not a Keras .weights.h5 file; {remedy}")
    try:
        model.load_weights(path)
    except Exception as e:  # noqa: BLE001 - h5py/Keras raise OSError, ValueError, KeyError here
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ConfigError(f"--backbone-weights {path}: does not fit the {backbone!r} backbone "
                          f"({first}); {remedy}") from None


def build_detector(image_size: int = 256, num_classes: int = 1, channels: int = 1, backbone: str = "tiny",
                   backbone_weights: str = "", fpn_depth: int = 1, score_threshold: float = 0.01,
                   nms_iou: float = 0.5, max_detections: int = 100) -> keras.Model:
    """A compiled ``keras_cv.models.YOLOV8Detector`` (compiled: ``compute_loss`` needs its losses).

    ``score_threshold``/``nms_iou``/``max_detections`` configure the decoder: a low score
    threshold keeps the low-confidence boxes that AP and FROC curves need.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive int, got {num_classes!r}")
    net = build_backbone(image_size, channels, backbone)
    if backbone_weights:
        load_backbone_weights(net, backbone_weights, backbone)
    decoder = keras_cv.layers.NonMaxSuppression(bounding_box_format=BOX_FORMAT, from_logits=False,
                                                confidence_threshold=score_threshold, iou_threshold=nms_iou,
                                                max_detections=max_detections)
    model = keras_cv.models.YOLOV8Detector(num_classes=num_classes, bounding_box_format=BOX_FORMAT,
                                           backbone=net, fpn_depth=fpn_depth, prediction_decoder=decoder,
                                           name=f"yolov8_{backbone}")
    compile_detector(model)
    return model


def compile_detector(model: keras.Model) -> None:
    """The library's losses (CIoU box loss, BCE class loss, YOLOv8's weights 7.5 / 0.5).

    The optimizer is tfxr's (applied in the tape step), not the compiled one."""
    model.compile(box_loss="ciou", classification_loss="binary_crossentropy", optimizer="sgd")


def detection_loss(model: keras.Model, images, targets: dict, training: bool = True):
    """The detector's loss for one batch (the library's ``compute_loss``), for a tape step."""
    return model.compute_loss(x=images, y=targets, y_pred=model(images, training=training))


def build_loss(model: keras.Model) -> None:
    """Build the compiled loss now, outside any ``tf.function``.

    Keras builds it on the first ``compute_loss``, creating its loss trackers (variables);
    a first call inside a ``tf.function`` that creates variables makes TensorFlow trace the
    function a second time, and tracing the YOLOv8 step is most of a short run's time.  One
    eager loss of one blank image without boxes, in inference mode: no weight, batch-norm
    statistic or optimizer state changes (the trackers are reset after it).
    """
    _, height, width, channels = model.input_shape
    detection_loss(model, np.zeros((1, height, width, channels), np.float32), pack_targets([[]], 1),
                   training=False)
    model.reset_metrics()


def decode(model: keras.Model, images, predictions=None) -> dict:
    """NMS'd detections: ``boxes`` (B, N, 4) rel_xyxy, ``confidence`` (B, N), ``classes``
    (B, N), ``num_detections`` (B,); slots past ``num_detections`` are -1."""
    if predictions is None:
        predictions = model(images, training=False)
    return model.decode_predictions(predictions, images)


def pack_targets(boxes_per_image: list, max_boxes: int = MAX_BOXES) -> dict[str, np.ndarray]:
    """NumPy targets from ``[[(label, (xmin, ymin, xmax, ymax)), ...] per image]`` (tests, tools)."""
    out_boxes = np.tile(np.asarray(PAD_BOX, np.float32), (len(boxes_per_image), max_boxes, 1))
    out_classes = -np.ones((len(boxes_per_image), max_boxes), np.float32)
    for i, boxes in enumerate(boxes_per_image):
        for j, (label, box) in enumerate(list(boxes)[:max_boxes]):
            out_boxes[i, j], out_classes[i, j] = box, label
    return {"boxes": out_boxes, "classes": out_classes}


def load_detector(run_dir: str, which: str = "best") -> keras.Model:
    """The detector of a ``tfxr.detect train`` run: rebuilt from the run's ``config.yaml``
    (backbone, FPN depth, image size, labels) and loaded from ``OUT/<which>.weights.h5``.

    Only weights are read (no deserialisation of code from a model file).  ``run_dir`` may
    also name the weights file itself, beside its ``config.yaml``.
    """
    if os.path.isfile(run_dir) and run_dir.endswith(".weights.h5"):
        run_dir, weights = os.path.dirname(run_dir) or ".", run_dir
    else:
        weights = os.path.join(run_dir, f"{which}.weights.h5")
    config_path = os.path.join(run_dir, "config.yaml")
    try:
        with open(config_path, encoding="utf-8") as fh:
            config = yaml.safe_load(fh)
        resolved = config["_resolved"]
        size, names = int(resolved["image_size"]), list(resolved["label_names"])
        backbone, fpn_depth = str(config["backbone"]), int(config["fpn_depth"])
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"--detector {run_dir}: not a detector run folder ({config_path}: "
                          f"{type(e).__name__}: {e}); train one with `python -m tfxr.detect train`") from None
    if not os.path.isfile(weights):
        raise ConfigError(f"--detector {run_dir}: {weights} is missing (the run has not finished an epoch?)")
    model = build_detector(size, num_classes=len(names), backbone=backbone, fpn_depth=fpn_depth)
    try:
        model.load_weights(weights)
    except Exception as e:  # noqa: BLE001 - h5py/Keras errors of a damaged or foreign file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ConfigError(f"--detector {weights}: does not fit the run's detector ({first})") from None
    model.label_names = names
    return model
