"""``python -m tfxr.evaluate``: evaluate a trained model the way papers report it.

Classifier (the default):

    python -m tfxr.evaluate --model runs/tb/best.keras --data tfrec/tb --split test
    mpirun -np 2 python -m tfxr.evaluate --model runs/chexnet --data tfrec/nih224

  writes ``OUT/metrics.json`` (per label: AUROC with bootstrap 95% CI, AUPRC, n+ and
  prevalence, sensitivity/specificity/precision/F1/accuracy at 0.5 and at the Youden
  threshold chosen on the validation split), ``OUT/report.md`` (CheXNet's label order),
  ``OUT/roc.png`` and ``OUT/predictions.csv``; prints the table.  Labels with no positive
  or no negative image are "undefined" and left out of the means.  Predictions are
  gathered from every rank in image-id order: any ``-np`` gives the same numbers.
  A model trained on another data set is scored on the labels the two share in tfxr's
  label vocabulary (TorchXRayVision's names); the labels left out are printed and reported.

Detection (a ``tfxr.detect train`` run; beside the CAM boxes of a classifier and random boxes):

    python -m tfxr.evaluate detection --detector runs/det --data tfrec/phantoms --split test \\
        --cam-model runs/tb --out det-eval
    mpirun -np 2 python -m tfxr.evaluate detection --detector runs/det --data tfrec/phantoms

  writes ``OUT/report.md`` (mAP@0.5 and mAP@[0.5:0.95] by pycocotools, the RSNA challenge
  score, FROC sensitivities, per-class AP; detector, CAM boxes and random boxes side by
  side), ``OUT/detection.json`` and ``OUT/overlays/*.png``.  Score cuts are chosen on
  ``--threshold-split``; any ``-np`` gives the same numbers.

Generative (Inception Score and FID):

    python -m tfxr.evaluate gan --generated runs/gan/samples --real tfrec/pmnist --split train \\
        --class-value 1 --inception-weights inception_v3_weights_tf_dim_ordering_tf_kernels.h5
    python -m tfxr.evaluate gan --generated runs/gan/generator.keras --num-images 2048 \\
        --real tfrec/phantoms --features tfxr --feature-model runs/tb

  ``--generated`` is a directory of PNGs (what ``python -m tfxr.gan sample`` writes), a
  generator ``.keras`` file (N images sampled with ``--seed``) or ``noise``.  Every FID is
  printed with its N and beside the real-vs-real baseline (two disjoint halves of the
  real images) and a uniform-noise baseline.  ``--features tfxr`` uses a trained tfxr
  classifier instead of ImageNet's InceptionV3 (offline; labelled FID_tfxr[<model>]).

Models are rebuilt from their tfxr run's ``config.yaml`` and only their weights are read
(:mod:`tfxr.models.loading`); a model file of no tfxr run (a legacy ``.h5``, a foreign
``.keras``) is refused unless ``--trust-model-file`` is given (Keras then loads it with
``safe_mode=True``).

Each command's options: ``python -m tfxr.evaluate classifier|detection|gan --help`` (their
configs are :mod:`tfxr.configs`' EvalConfig, DetectionEvalConfig and GanEvalConfig).
"""
from __future__ import annotations

import os
import sys

import numpy as np

from tfxr import distributed as dist
from tfxr import log
from tfxr.cli import lazy_exports, run_command
from tfxr.config import parse_config
from tfxr.configs import DetectionEvalConfig, EvalConfig, GanEvalConfig
from tfxr.errors import ConfigError
from tfxr.files import write_json

PROG = "python -m tfxr.evaluate"

#: re-exported (with EvalConfig) from tfxr.evaluation.classifier: tests, notebooks and users
#: import these from tfxr.evaluate; TensorFlow's, so imported when first asked for
__getattr__ = lazy_exports(__name__, "tfxr.evaluation.classifier",
                           ("evaluate", "format_table", "load_model", "predict_split", "resolve_model_path"))


def _generated_images(cfg: GanEvalConfig, real: np.ndarray) -> np.ndarray:
    from tfxr.evaluation import generative          # lazy: TensorFlow after the options are checked
    from tfxr.models.loading import load_generator  # lazy: Keras, likewise

    count = cfg.num_images or len(real) // 2   # the size of the real half it is compared with
    if cfg.generated == "noise":
        return generative.noise_images(count, real.shape[1], cfg.seed + 1)
    if os.path.isdir(cfg.generated):
        return generative.load_png_dir(cfg.generated, cfg.num_images)
    if cfg.generated.endswith((".keras", ".h5", ".hdf5")) and os.path.isfile(cfg.generated):
        return generative.sample_generator(load_generator(cfg.generated, cfg.trust_model_file, "--generated"),
                                           count, cfg.seed)
    raise ConfigError(f"--generated {cfg.generated}: not a PNG directory, a generator .keras file or 'noise'")


def evaluate_gan(cfg: GanEvalConfig) -> dict:
    """IS/FID of the generated images (and baselines) with each requested feature extractor."""
    if not cfg.generated or not cfg.real:
        raise ConfigError("gan: --generated and --real are required")
    if dist.launched_world_size() > 1:   # under mpirun: rank 0 does the (small) work alone
        dist.init()
        if dist.rank() != 0:
            return {}
    try:
        class_value = float(cfg.class_value) if cfg.class_value != "" else None
    except ValueError:
        raise ConfigError(f"--class-value {cfg.class_value!r}: not a number (e.g. 1 or 0)") from None
    from tfxr.evaluation import generative          # lazy: TensorFlow after the options are checked
    from tfxr.models.loading import load_run_model  # lazy: Keras, likewise

    real, what = generative.real_images(cfg.real, cfg.split, cfg.label, class_value, cfg.max_real)
    generated = {f"generated ({os.path.basename(cfg.generated.rstrip('/')) or cfg.generated})":
                 _generated_images(cfg, real)}
    if cfg.noise_baseline and cfg.generated != "noise":
        generated["uniform noise [baseline]"] = generative.noise_images(
            len(next(iter(generated.values()))), real.shape[1], cfg.seed + 1)
    extractors = []
    if cfg.features in ("tfxr", "both"):
        if not cfg.feature_model:
            raise ConfigError("--features tfxr needs --feature-model (a trained tfxr classifier)")
        model = load_run_model(cfg.feature_model, "classifier", cfg.trust_model_file, "--feature-model")
        extractors.append(generative.ClassifierExtractor(model, model.name, cfg.batch_size))
    if cfg.features in ("inception", "both"):
        extractors.append(generative.InceptionExtractor(cfg.inception_weights, cfg.batch_size))
    results = {}
    for extractor in extractors:
        result = generative.evaluate_generated(extractor, real, generated, cfg.seed)
        print(generative.format_generative(result, what))
        results[extractor.label] = result
    report = {"real": os.path.abspath(cfg.real), "real_selection": what, "generated": cfg.generated,
              "results": results}
    if cfg.out:
        os.makedirs(cfg.out, exist_ok=True)
        write_json(os.path.join(cfg.out, "generative.json"), report)
        log.info(f"wrote {cfg.out}/generative.json")
    return report


def detection(argv: list[str]) -> int:
    cfg, _ = parse_config(DetectionEvalConfig, argv, f"{PROG} detection", __doc__)
    from tfxr.evaluation.detection import detection_report, evaluate_detection   # lazy: TensorFlow, KerasCV

    result = evaluate_detection(cfg)
    if result:
        print(detection_report(result))
        log.info(f"wrote {result['out']}/report.md, detection.json, overlays/")
    return 0


def gan(argv: list[str]) -> int:
    cfg, _ = parse_config(GanEvalConfig, argv, f"{PROG} gan", __doc__)
    evaluate_gan(cfg)
    return 0


def classifier(argv: list[str]) -> int:
    cfg, _ = parse_config(EvalConfig, argv, PROG, __doc__)
    from tfxr.evaluation.classifier import evaluate, format_table   # lazy: TensorFlow after the options

    result = evaluate(cfg)
    if result:
        print(format_table(result))
        cross = result.get("cross_dataset")
        if cross:
            log.info(f"across data sets: scored {len(cross['shared'])} shared label(s) "
                     f"({', '.join(x['vocabulary'] for x in cross['shared'])}); left out: "
                     f"{'; '.join(cross['left_out']) or 'none'}")
        log.info(f"wrote {result['out']}/metrics.json, report.md, roc.png, predictions.csv")
    return 0


#: ``python -m tfxr.evaluate [classifier|detection|gan] OPTIONS`` (classifier when none is named)
COMMANDS = {"classifier": classifier, "detection": detection, "gan": gan}


def main(argv: list[str] | None = None) -> int:
    return run_command(argv, COMMANDS, PROG, __doc__, default="classifier")


if __name__ == "__main__":
    sys.exit(main())
