"""The commands' configs, in one place: what each ``python -m tfxr.X`` accepts (its
``--help`` lists the same fields, with their bounds).

Trainers:

* :class:`TrainConfig` - the classifier (``tfxr.train``, :class:`tfxr.training.classifier.Trainer`);
  its input pipeline is the nested :class:`DataConfig` (``pipeline:``, read by
  :mod:`tfxr.data.pipeline`), whose augmentations are :class:`AugmentConfig`
  (``pipeline.augment:``, :mod:`tfxr.data.augment`).
* :class:`GanConfig` - the DCGAN (``tfxr.gan train``, :class:`tfxr.training.gan.GanTrainer`).
* :class:`DetectorConfig` - the box detector (``tfxr.detect train``,
  :class:`tfxr.training.detector.DetectorTrainer`).

Data and model tools: :class:`WriteConfig` and :class:`VerifyConfig` (``tfxr.tfrecords
write|verify``), :class:`StatsConfig` (``tfxr.stats``), :class:`ExtractConfig`
(``tfxr.extract``), :class:`SampleConfig` and :class:`BalanceConfig` (``tfxr.gan
sample|balance``), :class:`ReportConfig` (``tfxr.report``, the models' size report),
:class:`PredictConfig` (``tfxr.predict``), :class:`LaunchConfig` (``tfxr.launch``).  The
evaluators' configs stay beside their code for now: ``EvalConfig``
(:mod:`tfxr.evaluation.classifier`), ``DetectionEvalConfig`` (:mod:`tfxr.evaluation.detection`),
``LocalizeConfig`` (:mod:`tfxr.evaluation.localization`), ``GanEvalConfig`` (:mod:`tfxr.evaluate`),
and the benchmark's in :mod:`tfxr.benchmark.options`.

This module imports neither TensorFlow nor Keras (the data tools start in a second).  The
machinery (``option()`` bounds, YAML, ``--set``) is :mod:`tfxr.config`.  Every trainer's
config has the run fields the run scaffold (:mod:`tfxr.training.run`) reads: ``out``,
``epochs``, ``seed``, ``resume``, ``overwrite``, ``keep_checkpoints``, ``progress``, and
``RESUME_SAFE``: the fields a ``--resume`` may change (anything else that differs from
the run's ``config.yaml`` is refused).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from tfxr.config import option, seed_option

__all__ = ["AugmentConfig", "BalanceConfig", "DataConfig", "DetectorConfig", "ExtractConfig", "GanConfig",
           "LaunchConfig", "PredictConfig", "ReportConfig", "SampleConfig", "StatsConfig", "TrainConfig",
           "VerifyConfig", "WriteConfig"]

#: the classifiers of the ``tfxr.models.MODELS`` registry (tests/models/test_models.py checks
#: that the two agree; named here so that a config needs no Keras)
MODEL_NAMES = ("tb_cnn", "pneumonia_cnn", "chexnet")
#: what ``tfxr.report --model`` accepts: the classifiers, the GAN pair and the detector
REPORT_MODELS = (*MODEL_NAMES, "dcgan", "detector")


@dataclass
class AugmentConfig:
    """Training-time augmentation (:func:`tfxr.data.augment.augment`), stateless and seeded."""

    enabled: bool = True
    flip: bool = True             # horizontal flip (as CheXNet did)
    rotation_deg: float = option(7.0, minimum=0.0, maximum=180.0)   # uniform in +-deg
    zoom: float = option(0.1, minimum=0.0, maximum=0.9)   # scale uniform in [1-zoom, 1+zoom]
    brightness: float = option(0.1, minimum=0.0, maximum=1.0)   # additive, uniform in +-brightness
    gamma: float = option(0.2, minimum=0.0, maximum=2.0)   # exponent exp(uniform(+-gamma))
    noise_std: float = option(0.02, minimum=0.0, maximum=1.0)   # Gaussian noise sd (images in [0, 1])


@dataclass
class DataConfig:
    """The input pipeline (:func:`tfxr.data.pipeline.build_dataset`)."""

    batch_size: int = option(32, minimum=1)            # per worker
    image_size: int = option(0, minimum=0)             # 0: the size stored in the manifest
    channels: int = option(1, choices=(1, 3))          # 1 (grey) or 3 (grey repeated)
    shuffle_buffer: int = option(2048, minimum=1)
    cycle_length: int = option(4, minimum=1)           # shards read in parallel
    # input threads: a private tf.data pool of this process's cores (0), of N threads (N), or
    # tf.data's shared pool (-1).  Measured, tb_cnn 128 px loop on 2 cores: 0 gave +1 to +4 % over -1
    # (385 vs 381 and 394 vs 378 images/s, medians of 5 epochs): small, within run-to-run noise.
    threads: int = option(0, minimum=-1)
    # keep decoded images in memory after their first read: auto (when they fit, see
    # tfxr.data.pipeline.cache_decision), true, false
    cache: str = option("auto", choices=("auto", "true", "false"))
    verify_shards: bool = False    # check every shard's sha256 before training (not only its size)
    deterministic: bool = False
    # generated (GAN) training shards: -1 use as written, 0 leave out, 0<f<1 draw them with
    # probability f.  Never used in validation/test (see records.shard_files).
    generated_fraction: float = option(-1.0, minimum=-1.0, maximum=0.99)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    #: former names, still read (YAML, --set, older runs' config.yaml)
    RENAMED_KEYS: ClassVar[dict[str, str]] = {"synthetic_fraction": "generated_fraction"}

    def __post_init__(self):
        if isinstance(self.cache, bool):     # DataConfig(cache=True) in Python means "true"
            self.cache = "true" if self.cache else "false"


#: the fields of every trainer's config that a ``--resume`` may change
RUN_FIELDS_SAFE_TO_CHANGE = frozenset({"out", "epochs", "resume", "overwrite", "progress", "keep_checkpoints"})


@dataclass
class TrainConfig:
    model: str = option("tb_cnn", choices=MODEL_NAMES)
    data: str = ""                     # TFRecord (or raw index) directory with manifest.json
    out: str = "runs/train"
    epochs: int = option(10, minimum=1)
    lr: float = option(1e-3, minimum=0.0)            # per-worker base learning rate
    lr_scaling: bool = True            # multiply lr by the number of workers (Goyal et al.)
    warmup_epochs: float = option(1.0, minimum=0.0)  # ramp lr from lr to lr*workers (Horovod's warm-up)
    optimizer: str = option("adam", choices=("adam", "sgd", "rmsprop"))
    weight_decay: float = option(0.0, minimum=0.0)
    plateau_factor: float = option(0.1, minimum=0.0, maximum=1.0)  # CheXNet: lr / 10 on a plateau
    plateau_patience: int = option(1, minimum=0)                   # 0 = never reduce
    min_lr: float = option(1e-7, minimum=0.0)
    early_stopping_patience: int = option(4, minimum=0)  # epochs without val improvement; 0 = off
    monitor: str = option("auroc", choices=("auroc", "loss"))   # mean validation AUROC | validation loss
    class_weighting: str = option("balanced", choices=("balanced", "none"))
    dropout: float | None = option(None, minimum=0.0, maximum=0.99)  # None: the model's own default
    weights: str = "none"              # models with a pretrained backbone (chexnet): none | imagenet | PATH
    compression: str = option("none", choices=("none", "fp16"))      # allreduce compression
    accumulate_steps: int = option(1, minimum=1)     # micro-batches per allreduce (effective batch x K)
    stall_timeout: float = option(600.0, minimum=0.0)  # s until a job with a stalled rank ends; 0 = never
    timeline: str = ""                 # Horovod timeline file (rank 0 writes it; tfxr.timeline reads it)
    elastic: bool = False              # Horovod elastic (horovodrun --min-np/--max-np): survive lost workers
    mixed_precision: bool = False      # bf16 on CPU, fp16 (+ loss scaling) on GPU
    xla: bool = False                  # jit-compile the forward/backward pass
    resume: bool = False               # continue OUT from its newest checkpoint
    overwrite: bool = False            # replace the run already in OUT
    seed: int = seed_option()
    steps_per_epoch: int = option(0, minimum=0)      # 0: one pass over the smallest rank's share
    val_split: str = "val"             # '' to skip validation
    keep_checkpoints: int = option(2, minimum=1)
    progress: bool = True
    pipeline: DataConfig = field(default_factory=DataConfig)

    #: short flags for the pipeline options people set most (README, Slurm scripts, notebooks)
    FLAG_ALIASES: ClassVar[dict[str, str]] = {
        "batch_size": "pipeline.batch_size", "image_size": "pipeline.image_size",
        "channels": "pipeline.channels", "cache": "pipeline.cache",
        "deterministic": "pipeline.deterministic", "shuffle_buffer": "pipeline.shuffle_buffer"}
    #: what ``--resume`` may change (more epochs, patience of the stopping rule, the console)
    RESUME_SAFE: ClassVar[frozenset] = RUN_FIELDS_SAFE_TO_CHANGE | {"early_stopping_patience", "stall_timeout",
                                                                    "timeline", "elastic"}


@dataclass
class GanConfig:
    data: str = ""                                   # TFRecord directory (manifest.json)
    out: str = "runs/gan"
    split: str = "train"
    class_label: str = ""                            # '' : the first label of the data set
    class_value: int = option(-1, choices=(-1, 0, 1))   # -1: the minority value in the split
    image_size: int = option(0, choices=(0, 28, 64, 128))   # 0: as stored (must be 28/64/128)
    epochs: int = option(20, minimum=1)
    batch_size: int = option(32, minimum=1)          # per worker
    latent_dim: int = option(100, minimum=1)
    g_filters: int = option(64, minimum=1)           # generator width (last hidden layer)
    d_filters: int = option(64, minimum=1)           # discriminator width (first layer)
    batch_norm: bool = True                          # in the generator
    d_dropout: float = option(0.3, minimum=0.0, maximum=0.9)
    optimizer: str = option("adam", choices=("adam", "rmsprop"))
    g_lr: float = option(2e-4, minimum=0.0)
    d_lr: float = option(2e-4, minimum=0.0)
    beta1: float = option(0.5, minimum=0.0, maximum=1.0)    # Adam's beta_1 (0.5 as in DCGAN)
    loss: str = option("bce", choices=("bce", "hinge"))      # non-saturating BCE | hinge
    label_smoothing: float = option(0.0, minimum=0.0, maximum=0.5)   # one-sided: real target 1-s
    instance_noise: float = option(0.0, minimum=0.0)   # sd of noise added to D's inputs, -> 0 linearly
    sample_epochs: list[int] = option(list)            # epochs with a sample grid; [] : first and last
    collapse_threshold: float = option(0.5, minimum=0.0)   # flag when sample diversity < this x real
    steps_per_epoch: int = option(0, minimum=0)         # 0: one pass over the smallest rank's images
    compression: str = option("none", choices=("none", "fp16"))
    accumulate_steps: int = option(1, minimum=1)     # micro-batches per allreduce (effective batch x K)
    stall_timeout: float = option(600.0, minimum=0.0)  # s until a job with a stalled rank ends; 0 = never
    seed: int = seed_option()
    deterministic: bool = False
    resume: bool = False                             # continue OUT from its newest checkpoint
    overwrite: bool = False                          # replace the run already in OUT
    keep_checkpoints: int = option(2, minimum=1)
    progress: bool = True
    # compare-optimizers scores both runs' samples with the evaluator: FID/IS with InceptionV3
    # weights from this file, and/or the offline domain variant with this trained tfxr classifier
    inception_weights: str = ""
    feature_model: str = ""

    #: what ``--resume`` may change (only rank 0's outputs: sample grids, the collapse flag,
    #: the evaluators of compare-optimizers; more epochs also stretch the instance-noise decay)
    RESUME_SAFE: ClassVar[frozenset] = RUN_FIELDS_SAFE_TO_CHANGE | {
        "sample_epochs", "collapse_threshold", "inception_weights", "feature_model", "stall_timeout"}


@dataclass
class DetectorConfig:
    """The box detector (``tfxr.detect train``, :class:`tfxr.training.detector.DetectorTrainer`)."""

    data: str = ""                     # TFRecord directory whose records carry bbox/* boxes
    out: str = "runs/detector"
    epochs: int = option(30, minimum=1)
    backbone: str = option("tiny", choices=("tiny", "xs", "s", "m"))   # tfxr.models.detector.BACKBONES
    backbone_weights: str = ""         # a YOLOV8Backbone .weights.h5 file ('' = random initialisation)
    fpn_depth: int = option(1, minimum=1, maximum=3)
    max_boxes: int = option(16, minimum=1)           # ground-truth boxes per training image
    lr: float = option(2e-3, minimum=0.0)            # per-worker base learning rate
    lr_scaling: bool = True            # multiply lr by the number of workers (Goyal et al.)
    warmup_epochs: float = option(1.0, minimum=0.0)  # ramp lr from lr to lr*workers (Horovod's warm-up)
    min_lr: float = option(0.0, minimum=0.0)
    optimizer: str = option("adam", choices=("adam", "sgd"))
    weight_decay: float = option(0.0, minimum=0.0)
    clipnorm: float = option(10.0, minimum=0.0)      # global gradient-norm clip (KerasCV's YOLOv8 recipe); 0 = off
    compression: str = option("none", choices=("none", "fp16"))      # allreduce compression
    accumulate_steps: int = option(1, minimum=1)     # micro-batches per allreduce (effective batch x K)
    stall_timeout: float = option(600.0, minimum=0.0)  # s until a job with a stalled rank ends; 0 = never
    elastic: bool = False              # Horovod elastic (horovodrun --min-np/--max-np): survive lost workers
    seed: int = seed_option()
    steps_per_epoch: int = option(0, minimum=0)      # 0: one pass over the smallest rank's share
    val_split: str = "val"             # mAP@0.5 on it after each epoch ('' to skip); best.keras by it
    resume: bool = False               # continue OUT from its newest checkpoint
    overwrite: bool = False            # replace the run already in OUT
    keep_checkpoints: int = option(2, minimum=1)
    progress: bool = True
    pipeline: DataConfig = field(default_factory=lambda: DataConfig(batch_size=8))

    FLAG_ALIASES: ClassVar[dict[str, str]] = TrainConfig.FLAG_ALIASES
    RESUME_SAFE: ClassVar[frozenset] = RUN_FIELDS_SAFE_TO_CHANGE | {"stall_timeout", "elastic"}


# --------------------------------------------------------------------------- data tools
#: ``tfrecords write --source``: the readers of :mod:`tfxr.data.sources`
SOURCES = ("nih", "tb", "folder", "npz", "phantoms", "synthetic", "rsna", "chexpert", "mimic-cxr-jpg", "vindr",
           "tbx11k")   # 'synthetic': the older name of 'phantoms'

#: CheXpert/MIMIC's uncertain label (-1) becomes 1, 0, or NaN (masked); ``tfxr.data.sources.chexpert``
UNCERTAINTY_POLICIES = ("ones", "zeros", "ignore")
#: VinDr's readers' boxes: kept, weighted-box fused, or fused where enough readers agree
FUSIONS = ("keep", "wbf", "agreement")
#: ``tfrecords write`` without ``--shards``: shards per split (capped by its image count)
DEFAULT_SHARDS = 8


@dataclass
class WriteConfig:
    """``tfrecords write``: a data set's raw images and label files -> sharded TFRecords + manifest.

    An option not given is None (not ''), as the readers record it in the manifest's ``source``."""

    source: str | None = option(None, choices=SOURCES, required=True, help="the data set's reader")
    images: str | None = option(None, help="image folder (PNG, JPEG or DICOM .dcm files)")
    labels: list[str] | None = option(None, repeatable=True, help=(
        "label file: NIH Data_Entry_2017*.csv(.gz), TB labels.csv, RSNA stage_2_train_labels.csv, "
        "CheXpert train.csv/valid.csv, MIMIC mimic-cxr-2.0.0-chexpert.csv, VinDr train.csv, "
        "TBX11K TBX11K_{train,val}.json"))
    class_info: str | None = option(None, help="rsna: stage_2_detailed_class_info.csv (adds the label 'Not Normal')")
    mimic_split: str | None = option(None, help="mimic-cxr-jpg: mimic-cxr-2.0.0-split.csv(.gz)")
    mimic_metadata: str | None = option(None, help="mimic-cxr-jpg: mimic-cxr-2.0.0-metadata.csv(.gz)")
    views: str | None = option(None, help="keep only these view positions, e.g. PA,AP (rsna, vindr: from the DICOM header; "
                                 "nih, chexpert, mimic-cxr-jpg: from the label files; mimic default PA,AP)")
    all_views: bool = option(False, help="chexpert: keep lateral images too (default: frontal only)")
    uncertainty: str = option("ones", choices=UNCERTAINTY_POLICIES, help=(
        "chexpert, mimic-cxr-jpg: the uncertain label (-1) becomes 1, 0, or NaN = masked out of the loss "
        "and AUROC"))
    fusion: str = option("keep", choices=FUSIONS, help=(
        "vindr: keep every reader's boxes, weighted-box fusion, or fused boxes at least --min-readers "
        "readers agree on"))
    fusion_iou: float = option(0.4, minimum=0.0, maximum=1.0, help="vindr: IoU above which readings fuse")
    min_readers: int = option(2, minimum=1, help="vindr --fusion agreement: readers needed")
    missing_images: str = option("reject", choices=("reject", "skip"), help=(
        "label rows without an image (rsna, chexpert, mimic-cxr-jpg, vindr, tbx11k): rejected, or skipped "
        "and counted in the manifest (an image folder holding part of a set)"))
    demographics: bool = option(False, help="rsna, chexpert: store patient age and sex in the records")
    dicom_ignore_window: bool = option(False, help=(
        "DICOM: ignore VOI LUT and Window Center/Width, map the full stored range instead"))
    bbox: str | None = option(None, help="NIH BBox_List_2017.csv(.gz)")
    split_list: list[str] | None = option(None, repeatable=True, help=(
        "SPLIT=FILE, an official split list (NIH train_val_list.txt as trainval=, test_list.txt as test=, "
        "or CheXNet-style train=/val=/test= lists)"))
    npz: str | None = option(None, help="MedMNIST .npz file")
    negative_class: str = option("NORMAL", help="folder source: the class that is 'no finding'")
    num_images: int = option(600, minimum=1, help="phantoms: number of images")
    phantom_task: str = option("tb", choices=("tb", "multilabel"), help="phantoms: which labels")
    phantom_size: int = option(0, minimum=0, help="phantoms: render size (0: --image-size)")
    prevalence: float = option(0.35, minimum=0.0, maximum=1.0, help="phantoms: positive rate per label")
    out: str = option("", required=True, help="output directory")
    image_size: int = option(224, minimum=8)
    shards: int | None = option(None, minimum=1, help=(
        f"shards per split, capped by its image count (unset: {DEFAULT_SHARDS}; not with --format raw)"))
    workers: int = option(1, minimum=1, help="decode/encode processes per rank")
    seed: int = seed_option()
    split_fractions: str = option("0.7,0.1,0.2", help="train,val,test fractions of images")
    ignore_official_splits: bool = option(False, help=(
        "re-split patient-wise even where the data set has official splits"))
    stratify: bool = option(True, help=(
        "balance label signatures across splits (--no-stratify: do not; patient-wise either way)"))
    remap_splits: str | None = option(None, help=(
        "OLD=NEW,... rename official splits first, e.g. 'train=trainval,val=test' keeps the official val set "
        "untouched as test and carves a patient-wise val out of train"))
    max_rejects: int = option(100, minimum=-1, help="exit 3 when more inputs than this are rejected (-1: no bound)")
    format: str = option("tfrecord", choices=("tfrecord", "raw"), help=(
        "'raw' writes CSV indexes of the image files instead of shards"))
    encoding: str = option("png", choices=("png", "raw"), help=(
        "how records hold the pixels: 'png' (compressed) or 'raw' (uint8 at --image-size, no PNG decode "
        "when read; larger shards)"))
    quiet: bool = option(False, help="no progress bar")

    #: the phantoms' options' older names (scripts, BENCHMARKS.md commands)
    FLAG_ALIASES: ClassVar[dict[str, str]] = {"synthetic_task": "phantom_task", "synthetic_size": "phantom_size"}


@dataclass
class VerifyConfig:
    """``tfrecords verify DIR``: every shard against the manifest's size and sha256 (exit 3 if not)."""

    data_dir: str = option("", positional="?", required=True, help="a directory tfrecords write wrote")


@dataclass
class StatsConfig:
    """``tfxr.stats DIR``: per-split prevalence, origins and patient overlap (read from the shards)."""

    data_dir: str = option("", positional="?", required=True, help="a directory tfrecords write wrote")
    json: str = option("", help="also write the numbers to this JSON file")
    grid: str = option("", help="also write a grid of sample images (labels, boxes) to this PNG "
                                "(TFRecord directories only)")


@dataclass
class ExtractConfig:
    """``tfxr.extract ARCHIVE_OR_DIR... OUT_DIR``: data set archives unpacked safely into OUT_DIR."""

    inputs: list[str] = option(list, positional="+", help="archives, or folders of them")
    out_dir: str = option("", positional="", help="where the entries go (created if missing)")
    glob: str = option("", help="archives taken from a folder argument ('': $ARCHIVE_GLOB or images_*.tar.gz)")


# --------------------------------------------------------------------------- generators
@dataclass
class SampleConfig:
    """``tfxr.gan sample``: N generated images as PNG files and one grid."""

    generator: str = option("", required=True, help="generator.keras written by `tfxr.gan train`")
    n: int = option(64, minimum=1, help="number of images")
    out: str = option("", required=True, help="output directory")
    seed: int = seed_option()     # the noise: tfxr.evaluation.generative.sample_generator
    prefix: str = option("sample", help="file name prefix")
    trust_model_file: bool = option(False, help=(
        "let Keras load a --generator that is not a tfxr run's (safe_mode on; see README)"))


@dataclass
class BalanceConfig:
    """``tfxr.gan balance``: a TFRecord directory's training split topped up with minority images."""

    data: str = option("", required=True, help="real TFRecord directory (never modified)")
    out: str = option("", required=True, help="new directory to write")
    method: str = option("gan", choices=("gan", "oversample"), help=(
        "gan (generated images) | oversample (real duplicates)"))
    generator: str = option("", help="generator.keras from `python -m tfxr.gan train` (method gan)")
    class_label: str = option("", help="label to balance ('': the only label)")
    class_value: int = option(-1, choices=(-1, 0, 1), help="0|1; -1: the minority value")
    target_ratio: float | None = option(None, minimum=0.0, maximum=1.0, help=(
        "minority fraction of the training split to reach, in (0, 1) (unset and no --num: 0.5)"))
    num: int | None = option(None, minimum=0, help="exact number of images to add (not with --target-ratio)")
    shards: int = option(2, minimum=1, help="shard files for the added images")
    seed: int = seed_option()     # the noise (as tfxr.gan sample) / the oversampling draw
    link: bool = option(False, help="symlink the real shards instead of copying them")
    overwrite: bool = option(False, help=(
        "write into an existing non-empty --out (its files of the same names are replaced)"))
    trust_model_file: bool = option(False, help=(
        "let Keras load a --generator that is not a tfxr run's (safe_mode on; see README)"))


# --------------------------------------------------------------------------- predictions
@dataclass
class PredictConfig:
    """``tfxr.predict IMAGES_OR_DIRS...``: a trained classifier's probabilities for raw image files."""

    images: list[str] = option(list, positional="*", help="image files (PNG, JPEG, DICOM) and folders")
    model: str = ""            # a .keras file or a run directory (its best.keras)
    out: str = "predictions.csv"
    heatmaps: str = ""         # write CAM overlays here ('' = none)
    thresholds: str = ""       # a metrics.json of tfxr.evaluate ('' = the run's eval-*/metrics.json)
    batch_size: int = option(32, minimum=1)
    cam: str = option("hirescam", choices=("hirescam", "gradcam"))
    max_rejects: int = option(-1, minimum=-1)   # exit 3 when more images are unreadable (-1: no bound)
    trust_model_file: bool = False   # let Keras load a model file of no tfxr run (safe_mode on)


# --------------------------------------------------------------------------- launching
#: the launchers :func:`tfxr.launch.launch_command` builds lines for ("auto": srun inside a Slurm job
#: when its PMIx plugin is there, else mpirun; one process outside Slurm runs plain python)
LAUNCHERS = ("auto", "mpirun", "horovodrun", "srun", "python")


@dataclass
class LaunchConfig:
    """``tfxr.launch --np N [options] -- MODULE ARGS``: the launcher line tfxr builds everywhere."""

    np: int | None = option(None, minimum=1, required=True, help="number of ranks (processes)")
    launcher: str = option("auto", choices=LAUNCHERS, help="auto: srun or mpirun inside Slurm, mpirun outside it")
    min_np: int | None = option(None, minimum=1, help="elastic horovodrun: fewest workers")
    max_np: int | None = option(None, minimum=1, help="elastic horovodrun: most workers")
    host_discovery_script: str = option("", help="elastic horovodrun: prints 'host:slots' lines")
    network_interfaces: str = option("", help=(
        "horovodrun: the NICs to use, e.g. ib0 (elastic on one host needs it: horovodrun finds common "
        "interfaces only across 2+ hosts)"))
    mpirun: str = option("mpirun", help="the mpirun command, with flags of its own")
    print: bool = option(False, help="print the command instead of running it")


# --------------------------------------------------------------------------- models
@dataclass
class ReportConfig:
    """``tfxr.report``: parameters, FLOPs, gradient bytes, activation memory (and measured peak)."""

    model: str = option("tb_cnn", choices=REPORT_MODELS)
    image_size: int = option(128, minimum=8)
    batch_size: int = option(32, minimum=1)
    measure: bool = False      # also measure the peak RSS of a training process (slow)
    steps: int = option(2, minimum=1)  # training steps of the measurement
    json: str = ""             # also write every number to this JSON file
