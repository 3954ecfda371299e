"""What each subcommand measures: ``train``, ``convert``, ``input`` and the ``suite``.

Each ``bench_*`` takes its checked options (``tfxr.benchmark.options``) and returns a
result dict with a ``table`` (markdown) and, under ``_plots``, the PNGs to draw.
"""
from __future__ import annotations

import io
import itertools
import os
import shutil
import subprocess
import time
from dataclasses import asdict, replace
from typing import Callable

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tfxr import cpu, log, timeline
from tfxr.benchmark import analysis, report
from tfxr.benchmark.analysis import Variant, fastest_single, scaling_rows, summarize
from tfxr.benchmark.runner import (Timing, failure, measure_gemm, measure_training_loop, run_conversion, run_plan,
                                   scaling_plan)
from tfxr.configs import DetectorConfig
from tfxr.data.phantom_drawing import phantom_meta, render_phantom
from tfxr.errors import ConfigError
from tfxr.files import write_bytes
from tfxr.launch import clean_launch_env, launch_command

#: (precision, processes, augmentation) of the suite's tfxr.train loops; the one without
#: augmentation shows what the loop costs apart from augmenting
LOOPS = (("fp32", 1, True), ("fp32", 1, False), ("fp32", 2, True), ("bf16", 2, True))
SECTIONS = ("tb_cnn_128", "densenet121_128", "densenet121_224", "dcgan_64", "detector_256", "accumulate", "convert")
ACCUMULATE = (1, 4)   # gradient accumulation K of the suite's 2-rank tfxr.train loops
#: the detector section's image size: what `tfxr.detect train` trains radiographs at in the docs
#: (tfxr.models.detector.build_detector's default); its batch is the trainer's default (8)
DETECTOR_SIZE = 256


# --------------------------------------------------------------------------- shared pieces
def check_workers(nps: list[int]) -> None:
    """Every count of one-core processes fits the cores this process may use."""
    cores = cpu.available_cores()
    if max(nps) > cores:
        raise ConfigError(f"--np {max(nps)}: this machine gives the benchmark {cores} cores and the one-core-per-"
                          f"rank baselines need one core each; use --np up to {cores}")


def nominal_per_core(cfg) -> tuple[float, dict]:
    """The nominal fp32 peak of one core (clock x FLOPs/cycle, or what the options say)."""
    ceiling = cpu.fp32_ceiling(1, ghz=cfg.clock_ghz, flops_per_cycle=cfg.flops_per_cycle)
    return ceiling["flops_per_s"], ceiling


def judge_flops(measurements: list[dict], cfg, gemm: dict | None) -> dict:
    """The run's fp32 ceiling (analysis.fp32_ceiling) and every measurement's fraction of it."""
    nominal, facts = nominal_per_core(cfg)
    ceiling = {**analysis.fp32_ceiling(nominal, gemm, measurements), "nominal": facts}
    analysis.add_flop_fractions(measurements, ceiling)
    return ceiling


def gemm_table(gemm: dict, ceiling: dict) -> str:
    nominal = ceiling["nominal_per_core"] * gemm["cores"] / 1e9
    g = gemm["gflops"]
    return report.table(["what sustains fp32 FLOPs here", "GFLOP/s (median)", "min-max", "of nominal peak"],
                        [[gemm["label"], g["median"], report.spread(g), f"{100 * g['median'] / nominal:.1f}%"]])


# --------------------------------------------------------------------------- train
def _image_size(cfg) -> int:
    if cfg.image_size:
        return cfg.image_size
    if cfg.data:
        # deliberately lazy: the data package imports TensorFlow, needed here only for --data
        from tfxr.data.records import read_manifest

        return int(read_manifest(cfg.data)["image_size"])
    return 128


def bench_train(cfg) -> dict:
    """Settings side by side (one process, all cores), then the scaling baselines."""
    reads = [name for name in cfg.input if name != "random"]
    if reads and not cfg.data:
        raise ConfigError(f"--input {reads[0]} needs --data (a directory written by `python -m tfxr.tfrecords write`)")
    if cfg.model in ("dcgan", "detector") and reads:
        raise ConfigError(f"--model {cfg.model} is measured on random in-memory images only: --input random")
    if cfg.model == "detector":
        # deliberately lazy: the detector module imports Keras/KerasCV, needed here only for its size rule
        from tfxr.models.detector import check_image_size

        check_image_size(_image_size(cfg))
    check_workers(cfg.np)
    rank_envs = cfg.rank_env_settings()     # checked before anything runs
    timing = Timing(steps=cfg.steps, repeats=cfg.repeats, warmup=cfg.warmup)
    gemm = measure_gemm(timing, cfg.gemm_size) if cfg.gemm_size else None
    onednn, xla = [x == "on" for x in cfg.onednn], [x == "on" for x in cfg.xla]
    base = Variant(model=cfg.model, image_size=_image_size(cfg), batch_size=cfg.batch_size,
                   input=cfg.input[0], precision=cfg.precision[0], onednn=onednn[0], xla=xla[0])
    plan = [replace(base, input=i, precision=p, onednn=o, xla=x)
            for i, p, o, x in itertools.product(cfg.input, cfg.precision, onednn, xla)]
    measurements = run_plan(plan, timing, cfg.data)
    if len(cfg.np) > 1 or cfg.np[0] > 1:
        measurements += run_plan(scaling_plan(base, cfg.np, cfg.launcher, [()] + rank_envs),
                                 timing, cfg.data)
    ceiling = judge_flops(measurements, cfg, gemm)
    scaling = scaling_rows(measurements)
    lines = report_lines_with_ceiling(measurements, ceiling)
    if gemm and "gflops" in gemm:
        lines.append(gemm_table(gemm, ceiling))
    lines += [report.scaling_table(scaling)] if scaling else []
    return {"kind": "train", "timing": asdict(timing), "fp32_ceiling": ceiling, "gemm": gemm,
            "measurements": measurements, "scaling": scaling, "table": "\n\n".join(lines),
            "_plots": {"train_scaling.png": (measurements, f"{cfg.model} {base.image_size} px training")}
            if scaling else {}}


def report_lines_with_ceiling(measurements: list[dict], ceiling: dict) -> list[str]:
    lines = report.report_lines(measurements)
    if any("flop_fraction" in m for m in measurements):
        lines.append(report.ceiling_line(ceiling))
    return lines


# --------------------------------------------------------------------------- convert
def conversion_plan(workers: list[int], nps: list[int]) -> list[tuple[str, int, int]]:
    """(layout, processes, workers per process): every pool size, every rank count, and for
    every count above one the independent bound of that many one-worker processes."""
    plan = [("pool", 1, w) for w in workers] + [("ranks", n, 1) for n in nps if n > 1]
    plan += [("independent", n, 1) for n in sorted({w for w in workers if w > 1} | {n for n in nps if n > 1})]
    return plan


def measure_conversions(source_args: list[str], workers: list[int], nps: list[int], repeats: int) -> list[dict]:
    runs = []
    for layout, processes, per in conversion_plan(workers, nps):
        log.info(f"benchmark: conversion, {layout} {processes} x {per} ...")
        runs.append(run_conversion(source_args, layout, processes, per, repeats))
    return analysis.conversion_rows(runs)


def bench_convert(cfg, rest: list[str]) -> dict:
    if not rest:
        raise ConfigError("convert needs the converter's arguments after --")
    check_workers([max(cfg.np + cfg.workers)])
    runs = measure_conversions(rest, cfg.workers, cfg.np, cfg.repeats)
    return {"kind": "convert", "runs": runs, "table": report.conversion_table(runs),
            "note": "images/s: inside the converter (listing, decoding, resizing, encoding, writing, manifest); "
                    "wall: the whole command, Python/TensorFlow/MPI start-up included; the independent bound "
                    "sums N one-worker conversions of the same images run at once, one core each"}


def phantom_folder(directory: str, images: int, size: int, save: Callable[[np.ndarray, str, int], None]) -> str:
    """TB phantoms in a class-per-folder layout (``tfrecords write --source folder``), each
    written by ``save(pixels, path without its extension, index)``: built beside
    ``directory`` and renamed into place (an interrupted run leaves none), written once and
    reused."""
    if os.path.isdir(directory):
        return directory
    partial = f"{directory}.partial-{os.getpid()}"
    try:
        for index in range(images):
            labels, _, patient = phantom_meta(0, index)
            folder = os.path.join(partial, "TB" if labels[0] else "NORMAL")
            os.makedirs(folder, exist_ok=True)
            save(render_phantom(0, index, size), os.path.join(folder, f"{patient}_{index:05d}"), index)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    os.replace(partial, directory)
    return directory


def _save_png(pixels: np.ndarray, stem: str, index: int) -> None:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    write_bytes(f"{stem}.png", buf.getvalue())


def phantom_pngs(out: str, images: int, size: int) -> str:
    """TB phantoms as PNG files (:func:`phantom_folder`): the PNG source of the conversion benchmark."""
    return phantom_folder(os.path.join(out, f"data-phantom-png-{size}px-{images}"), images, size, _save_png)


#: the SOP class of the benchmark's DICOMs: Computed Radiography Image Storage
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"


def _save_dicom(pixels: np.ndarray, stem: str, index: int) -> None:
    """A 12-bit CR DICOM (uncompressed, pydicom, no patient data) of an 8-bit phantom."""
    pixels = pixels.astype(np.uint16) * 16        # 8 -> 12 bits
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["tfxr-benchmark", str(index)])
    ds.SOPClassUID, ds.SOPInstanceUID = CR_IMAGE_STORAGE, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.ViewPosition = "CR", "PA"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(f"{stem}.dcm", enforce_file_format=True)


def phantom_dicoms(out: str, images: int, size: int) -> str:
    """TB phantoms as 12-bit CR DICOMs (:func:`phantom_folder`), the same images as
    :func:`phantom_pngs`: the DICOM source of the conversion benchmark."""
    return phantom_folder(os.path.join(out, f"data-phantom-dicom-{size}px-{images}"), images, size, _save_dicom)


#: the conversion benchmark's sources: name -> (out, images, size) -> converter arguments
CONVERT_SOURCES = {
    "png": lambda out, images, size: ["--source", "folder", "--images", phantom_pngs(out, images, 2 * size),
                                      "--image-size", str(size)],
    "dicom": lambda out, images, size: ["--source", "folder", "--images", phantom_dicoms(out, images, 2 * size),
                                        "--image-size", str(size)],
}


# --------------------------------------------------------------------------- input pipeline
def _time_batches(next_batch, warmup: int, steps: int, repeats: int) -> tuple[list[float], list[float]]:
    """``repeats`` windows of ``steps`` calls of ``next_batch`` (which returns a batch of
    images) after ``warmup``: images/s and this process's CPU milliseconds per batch (all
    its threads), per window."""
    for _ in range(warmup):
        next_batch()
    rates, cpu_ms = [], []
    for _ in range(repeats):
        start, cpu_start, images = time.perf_counter(), time.process_time(), 0
        for _ in range(steps):
            images += int(next_batch().shape[0])
        rates.append(images / (time.perf_counter() - start))
        cpu_ms.append((time.process_time() - cpu_start) * 1e3 / steps)
    return rates, cpu_ms


def augment_as_separate_ops(tf, images, p: dict, cfg):
    """The batch augmentation as TensorFlow's own kernels, one op each (what tfxr ran before
    :func:`tfxr.data.augment.apply_parameters` was compiled), kept here as the measured
    baseline: flip by ``tf.reverse``, ``ImageProjectiveTransformV3`` (BILINEAR, REFLECT),
    brightness, ``tf.pow``, ``stateless_normal`` noise, clip."""
    from tfxr.data.augment import affine_transforms

    def each(v):
        return v[:, None, None, None]
    images = tf.cast(images, tf.float32) / 255.0
    shape = tf.shape(images)
    images = tf.where(each(p["flip"]), tf.reverse(images, axis=[2]), images)
    images = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=affine_transforms(p["angle"], p["scale"], shape[1], shape[2]),
        output_shape=shape[1:3], fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")
    images = tf.pow(tf.clip_by_value(images + each(p["brightness"]), 0.0, 1.0), each(p["gamma"]))
    images = images + tf.random.stateless_normal(shape, p["noise_seed"], stddev=cfg.noise_std)
    return tf.clip_by_value(images, 0.0, 1.0)


def bench_input(cfg) -> dict:
    """The input pipeline alone (TFRecord and raw, augmentation off and on), then the batch
    augmentation alone on one uint8 batch in memory: compiled (tfxr's) vs separate ops."""
    if not cfg.data:
        raise ConfigError("input needs --data (a directory written by `python -m tfxr.tfrecords write`)")
    # deliberately lazy: TensorFlow is imported only by the subcommand that runs tf.data here
    import tensorflow as tf

    from tfxr.data.augment import AugmentConfig, apply_parameters, draw_parameters
    from tfxr.data.pipeline import DataConfig, build_dataset
    from tfxr.data.records import read_manifest

    timing = (cfg.warmup, cfg.steps, cfg.repeats)
    runs, rows = [], []

    def add(what: str, augment: str, rates: list[float], cpu_ms: list[float], **extra) -> None:
        summary, cpu = summarize(rates), summarize(cpu_ms)
        runs.append({"input": what, "augment": augment, "images_per_s": summary, "cpu_ms_per_batch": cpu, **extra})
        rows.append([what, augment, summary["median"], report.spread(summary), cpu["median"], report.spread(cpu)])

    for label, directory in (("tfrecord", cfg.data), ("raw", cfg.raw)):
        if not directory:
            continue
        for aug in (False, True):
            data_cfg = DataConfig(batch_size=cfg.batch_size, image_size=cfg.image_size,
                                  augment=AugmentConfig(enabled=aug))
            batches = iter(build_dataset(directory, cfg.split, data_cfg, training=True, repeat_steps=1 << 30))
            add(f"{label} pipeline", "on" if aug else "off",
                *_time_batches(lambda: next(batches)[0], *timing), data=os.path.abspath(directory))
    size = cfg.image_size or int(read_manifest(cfg.data)["image_size"])
    pixels = tf.constant(np.random.default_rng(0).integers(0, 256, (cfg.batch_size, size, size, 1)), tf.uint8)
    aug_cfg, counter = AugmentConfig(), itertools.count()
    compiled = tf.function(lambda seed: apply_parameters(pixels, draw_parameters(seed, cfg.batch_size, aug_cfg),
                                                         aug_cfg))
    separate = tf.function(lambda seed: augment_as_separate_ops(
        tf, pixels, draw_parameters(seed, cfg.batch_size, aug_cfg), aug_cfg))
    for what, fn in (("augment_batch alone, compiled (tfxr)", compiled),
                     ("augment_batch alone, separate TF ops (before)", separate)):
        add(what, "on", *_time_batches(lambda: fn(tf.constant([1, next(counter)], tf.int64)).numpy(), *timing))
    return {"kind": "input", "batch_size": cfg.batch_size, "image_size": size, "steps": cfg.steps, "runs": runs,
            "table": report.table(["input", "augment", "images/s (median)", "min-max",
                                   "CPU ms per batch (median)", "min-max"], rows)}


# --------------------------------------------------------------------------- timeline
def bench_timeline(cfg) -> dict:
    """A Horovod timeline (``tfxr.train --timeline FILE``) summarised per step (tfxr.timeline)."""
    if not cfg.file:
        raise ConfigError("timeline needs the timeline file: python -m tfxr.benchmark timeline FILE")
    summary = timeline.summarize(cfg.file)
    return {"kind": "timeline", "summary": summary, "table": timeline.format_summary(summary)}


# --------------------------------------------------------------------------- the suite
def phantom_records(out: str, images: int, image_size: int) -> str:
    """TB phantoms as TFRecords (the project's own data), written once and reused."""
    directory = os.path.join(out, f"data-phantoms-{image_size}px-{images}")
    if not os.path.exists(os.path.join(directory, "manifest.json")):
        cmd = launch_command(1, ["tfxr.tfrecords", "write", "--source", "synthetic", "--num-images", str(images),
                                 "--image-size", str(image_size), "--shards", "8", "--workers", "2",
                                 "--out", directory, "--quiet"], "python")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_launch_env())
        if proc.returncode != 0:
            raise ConfigError(f"could not write the benchmark data: {failure(cmd, proc.returncode, proc.stderr)}")
    return directory


def suite_plan(variants: str) -> dict[str, list[Variant]]:
    """Each model section's settings (one process, all cores) before its scaling baselines."""
    tb = Variant(model="tb_cnn", image_size=128, batch_size=32)
    dn = Variant(model="chexnet", image_size=128, batch_size=16)
    gan = Variant(model="dcgan", image_size=64, batch_size=32)
    det = Variant(model="detector", image_size=DETECTOR_SIZE, batch_size=DetectorConfig().pipeline.batch_size)
    plan = {
        "tb_cnn_128": [tb, replace(tb, input="pipeline"), replace(tb, input="pipeline-noaug"), replace(tb, onednn=False),
                       replace(tb, input="pipeline", onednn=False), replace(tb, precision="bf16"),
                       replace(tb, xla=True), replace(tb, layout="ranks", workers=2)],
        "densenet121_128": [dn, replace(dn, onednn=False), replace(dn, precision="bf16"),
                            replace(dn, precision="bf16", onednn=False)],
        "densenet121_224": [replace(dn, image_size=224), replace(dn, image_size=224, precision="bf16")],
        "dcgan_64": [gan, replace(gan, precision="bf16")],
        "detector_256": [det],
    }
    return {name: p if variants == "all" else p[:1] for name, p in plan.items()}


#: sections with scaling baselines, and the Horovod settings of their extra ranks runs
SCALED = {"tb_cnn_128": [()], "densenet121_128": [(), (("HOROVOD_FUSION_THRESHOLD", str(8 << 20)),)],
          "dcgan_64": [()], "detector_256": [()]}   # DenseNet: default 128 MiB vs 8 MiB fusion buckets


def bench_suite(cfg) -> dict:
    """The targets of issues 10 and 19, measured side by side in one run (see the README for times)."""
    check_workers([2])
    wanted = cfg.only or list(SECTIONS)
    if "accumulate" in wanted and cfg.loop_steps % max(ACCUMULATE):
        raise ConfigError(f"--loop-steps {cfg.loop_steps}: the accumulation section needs a multiple of "
                          f"{max(ACCUMULATE)} (steps per epoch = K x allreduces)")
    plans = {name: plan for name, plan in suite_plan(cfg.variants).items() if name in wanted}
    # the phantom TFRecords are written only for a section that reads them (tfxr.train loops, pipeline input)
    reads = bool({"tb_cnn_128", "accumulate"} & set(wanted)) or any(v.input != "random" for p in plans.values()
                                                                     for v in p)
    data = cfg.data or (phantom_records(cfg.out, cfg.images, 128) if reads else "")
    small = Timing(steps=cfg.steps, repeats=cfg.repeats, warmup=cfg.warmup)
    large = Timing(steps=max(2, cfg.steps // 4), repeats=cfg.repeats, warmup=max(2, cfg.warmup // 2))
    gemm = measure_gemm(large, cfg.gemm_size) if cfg.gemm_size else None
    sections: dict[str, list[dict]] = {}
    for name, plan in plans.items():
        timing = large if name.startswith("densenet") else small
        sections[name] = run_plan(plan, timing, data)
        if name in SCALED:   # baselines with the fastest single-process setting just measured
            base = fastest_single(sections[name], plan[0])
            sections[name] += run_plan(scaling_plan(base, [2], cfg.launcher, SCALED[name]), timing, data)
        if name == "tb_cnn_128":
            for precision, workers, augment in LOOPS:
                log.info(f"benchmark: the tfxr.train loop, {precision}, {workers} process(es)"
                         f"{'' if augment else ', augmentation off'} ...")
                sections[name].append(measure_training_loop("tb_cnn", data, 128, 32, cfg.repeats, cfg.loop_steps,
                                                            small, precision=precision, workers=workers,
                                                            augment=augment))
    if "accumulate" in wanted:
        sections["accumulate"] = []
        for k in ACCUMULATE:
            log.info(f"benchmark: the tfxr.train loop, 2 ranks, accumulate_steps={k} ...")
            sections["accumulate"].append(measure_training_loop("tb_cnn", data, 128, 32, cfg.repeats,
                                                                cfg.loop_steps, small, workers=2,
                                                                accumulate_steps=k))
    conversions: dict[str, list[dict]] = {}
    if "convert" in wanted:
        for name in cfg.convert_source:
            source = CONVERT_SOURCES[name](cfg.out, cfg.convert_images, 128)
            conversions[name] = measure_conversions(source, [1, 2], [2], max(3, cfg.repeats // 2 + 1))
    ceiling = judge_flops([m for ms in sections.values() for m in ms], cfg, gemm)
    tables = []
    for name, ms in sections.items():
        tables.append(f"## {name}\n\n" + "\n\n".join(report.report_lines(ms)))
        rows = scaling_rows(ms)
        if rows:
            tables.append(report.scaling_table(rows))
        if name == "accumulate":
            tables.append(report.accumulation_table(analysis.accumulation_rows(ms)))
            continue
        loops = analysis.loop_rows(ms)
        if loops:
            tables.append(report.loop_table(loops))
    for name, rows in conversions.items():
        tables.append(f"## convert ({name} source)\n\n" + report.conversion_table(rows))
    if gemm and "gflops" in gemm:
        tables.append(gemm_table(gemm, ceiling))
    tables.append(report.ceiling_line(ceiling))
    targets = analysis.suite_targets(sections)
    tables.append("## targets (issues 10 and 19)\n\n" + report.targets_table(targets))
    plots = {f"scaling_{name}.png": (ms, f"{name.replace('_', ' ')} px training")
             for name, ms in sections.items() if scaling_rows(ms)}
    return {"kind": "suite", "data": os.path.abspath(data) if data else None, "fp32_ceiling": ceiling, "gemm": gemm,
            "timing": {"small_models": asdict(small), "densenet121": asdict(large)},
            "sections": sections, "conversions": conversions, "targets": targets, "table": "\n\n".join(tables),
            "_plots": plots}

