"""What a benchmark measured, as numbers: variants, summaries, ceilings, ratios, targets.

Pure functions on result dicts (``variant`` + ``images_per_s`` summary); nothing here
runs a process, so every ratio is tested on fake rate tables.
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

from tfxr.config import option

TRAINING_FLOPS_PER_FORWARD = 3  # forward + backward (2x forward) per training image
LAYOUTS = ("all-cores", "one-core", "independent", "ranks")
LAUNCHERS = ("mpirun", "gloo")
MODELS = ("tb_cnn", "pneumonia_cnn", "chexnet", "dcgan", "detector")   # detector: tfxr.detect's YOLOv8
#: ``random``: one random batch kept in memory (the model-only rate); ``pipeline``: the
#: real tf.data pipeline with augmentation reading TFRecords
INPUTS = ("random", "pipeline", "pipeline-noaug")   # pipeline-noaug: the pipeline, augmentation off
PRECISIONS = ("fp32", "bf16")
SETTING_FIELDS = ("model", "image_size", "batch_size", "input", "precision", "onednn", "xla")


@dataclass(frozen=True)
class Variant:
    """One training measurement: what runs, on which input, in which process layout."""

    model: str = option("tb_cnn", choices=MODELS)
    image_size: int = option(128, minimum=8)
    batch_size: int = option(32, minimum=1)       # per process
    input: str = option("random", choices=INPUTS)
    precision: str = option("fp32", choices=PRECISIONS)   # bf16: Keras mixed_bfloat16
    onednn: bool = True                           # TF_ENABLE_ONEDNN_OPTS
    xla: bool = False                             # jit-compiled forward/backward
    layout: str = option("all-cores", choices=LAYOUTS)
    workers: int = option(1, minimum=1)           # processes (independent) or ranks
    launcher: str = option("mpirun", choices=LAUNCHERS)   # ranks only: mpirun | gloo (horovodrun --gloo)
    env: tuple = ()               # ranks only: extra (NAME, value) settings, e.g. HOROVOD_FUSION_THRESHOLD

    def cores(self, machine_cores: int) -> int:
        """Cores the variant computes on (for its FLOP ceiling)."""
        return machine_cores if self.layout == "all-cores" else self.workers

    def label(self) -> str:
        what = f"{self.model} {self.image_size}px b{self.batch_size} {self.input} " + setting_text(asdict(self))
        where = {"all-cores": "1 process, all cores", "one-core": "1 process, 1 core",
                 "independent": f"{self.workers} x 1-core processes (bound)",
                 "ranks": f"{self.launcher} -np {self.workers}, 1 core/rank"}[self.layout]
        where += "".join(f" {name}={value}" for name, value in self.env)
        return f"{what} | {where}"


def variant_from_dict(v: dict) -> Variant:
    """The Variant a result dict records (JSON turns its ``env`` pairs into lists)."""
    fields = {k: v[k] for k in asdict(Variant()) if k in v}
    return Variant(**{**fields, "env": tuple(tuple(p) for p in v.get("env", ()))})


def summarize(rates: list[float]) -> dict:
    """Median, spread (min, max, quartiles) of repeated measurements."""
    if not rates:
        raise ValueError("no measurements to summarize")
    ordered = sorted(rates)
    quartiles = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else [ordered[0]] * 3
    return {"median": statistics.median(ordered), "min": ordered[0], "max": ordered[-1],
            "q1": quartiles[0], "q3": quartiles[2], "repeats": list(rates)}


def combine_independent(per_process: list[list[float]]) -> list[float]:
    """Window-by-window sum of N concurrent processes' rates (their windows overlap)."""
    counts = {len(r) for r in per_process}
    if len(counts) != 1:
        raise ValueError(f"independent processes reported different repeat counts: {sorted(counts)}")
    return [sum(window) for window in zip(*per_process)]


def flop_fraction(images_per_s: float, forward_flops: float, ceiling_flops_per_s: float) -> float:
    """Share of an fp32 ceiling a training rate reaches (training ~ 3x forward FLOPs)."""
    return images_per_s * forward_flops * TRAINING_FLOPS_PER_FORWARD / ceiling_flops_per_s


def training_flops_per_s(m: dict) -> float | None:
    """The FLOP rate a measurement sustained (None without a FLOP count)."""
    if not m.get("flops_per_image") or "images_per_s" not in m:
        return None
    return m["images_per_s"]["median"] * m["flops_per_image"] * TRAINING_FLOPS_PER_FORWARD


def fp32_ceiling(nominal_per_core: float, gemm: dict | None = None, measurements: list[dict] = ()) -> dict:
    """The per-core fp32 FLOP/s every FLOP fraction of one run is judged against.

    The largest of: the nominal peak (clock x FLOPs/cycle, see ``tfxr.cpu.fp32_ceiling``),
    the fp32 GEMM measured in the same run (``gemm``: its GFLOP/s median over its
    ``cores``), and the per-core FLOP rate any fp32 measurement of the run reached.  A
    ceiling is never below what this machine was seen to do, so no fraction exceeds 1
    (a nominal 166 GFLOP/s under a measured 212 would print "127.7 % of peak").
    """
    candidates = [(nominal_per_core, "nominal peak (clock x FLOPs/cycle)")]
    gemm_per_core = None
    if gemm and "gflops" in gemm:
        gemm_per_core = gemm["gflops"]["median"] * 1e9 / gemm["cores"]
        candidates.append((gemm_per_core, "fp32 GEMM measured in this run"))
    for m in measurements:   # fp32 only: bf16 (AMX) may legitimately outrun any fp32 ceiling
        rate = training_flops_per_s(m)
        if rate is not None and m.get("cores") and m["variant"]["precision"] == "fp32":
            candidates.append((rate / m["cores"], f"reached by {m['label']} (above the GEMM and the nominal peak)"))
    per_core, source = max(candidates, key=lambda c: c[0])
    return {"per_core": per_core, "source": source, "nominal_per_core": nominal_per_core,
            "gemm_per_core": gemm_per_core}


def add_flop_fractions(measurements: list[dict], ceiling: dict) -> None:
    """Set each measurement's ``flop_fraction`` against the run's ceiling (see fp32_ceiling)."""
    for m in measurements:
        rate = training_flops_per_s(m)
        if rate is not None and m.get("cores"):
            m["flop_fraction"] = rate / (ceiling["per_core"] * m["cores"])


def same_setting(a: dict, b: dict) -> bool:
    """Two variants compute the same thing (model, size, batch, input, precision, oneDNN, XLA)."""
    return all(a[k] == b[k] for k in SETTING_FIELDS)


def setting_text(v: dict) -> str:
    """``bf16 oneDNN on [XLA]`` of a variant."""
    return f"{v['precision']} oneDNN {'on' if v['onednn'] else 'off'}" + (" XLA" if v["xla"] else "")


def baseline_median(measurements: list[dict], setting: dict, layout: str, workers: int = 1) -> float | None:
    """Median images/s of the plain measurement (mpirun, no extra env) at ``setting`` and layout."""
    for m in measurements:
        v = m["variant"]
        if ("images_per_s" in m and v["layout"] == layout and v["workers"] == workers and same_setting(v, setting)
                and v["launcher"] == "mpirun" and not v["env"]):
            return m["images_per_s"]["median"]
    return None


def scaling_rows(measurements: list[dict]) -> list[dict]:
    """Per ``ranks`` measurement: ratios to the baselines measured at the same setting.

    For each ranks measurement with N workers: ratio to the N-process independent bound
    (Horovod overhead), per-worker efficiency against N x the one-core process, and
    speed-up against the one process using every core -- each baseline with the same
    model, size, batch, input, precision, oneDNN and XLA setting (a bf16 run is never
    divided by fp32).
    """
    rows = []
    for m in measurements:
        v = m["variant"]
        if v["layout"] != "ranks" or "images_per_s" not in m:
            continue
        n, rate = v["workers"], m["images_per_s"]["median"]
        bound, one_core, all_cores = (baseline_median(measurements, v, layout, workers)
                                      for layout, workers in (("independent", n), ("one-core", 1), ("all-cores", 1)))
        rows.append({"workers": n, "launcher": v["launcher"] + "".join(f" {k}={x}" for k, x in v["env"]),
                     "setting": f"{setting_text(v)} {v['input']}",
                     "images_per_s": rate, "independent_bound": bound,
                     "vs_bound": rate / bound if bound else None,
                     "efficiency_vs_one_core": rate / (n * one_core) if one_core else None,
                     "vs_all_cores_process": rate / all_cores if all_cores else None})
    return rows


def loop_rows(measurements: list[dict]) -> list[dict]:
    """Each tfxr.train loop beside the model-only step rate of the same setting and layout."""
    rows = []
    for loop in measurements:
        v = loop["variant"]
        if v["layout"] != "train-loop" or "images_per_s" not in loop:
            continue
        reference = baseline_median(measurements, {**v, "input": "random"}, v.get("loop_layout", "all-cores"),
                                    v["workers"])
        rate = loop["images_per_s"]["median"]
        rows.append({"loop": loop["label"], "input": v["input"], "images_per_s": rate, "model_only": reference,
                     "ratio": rate / reference if reference else None})
    return rows


def fastest_single(measurements: list[dict], fallback: Variant) -> Variant:
    """The fastest one-process, all-cores, model-only setting (the base of the scaling runs)."""
    singles = [m for m in measurements if "images_per_s" in m and m["variant"]["layout"] == "all-cores"
               and m["variant"]["input"] == "random"]
    if not singles:
        return fallback
    return variant_from_dict(max(singles, key=lambda m: m["images_per_s"]["median"])["variant"])


def conversion_rows(runs: list[dict]) -> list[dict]:
    """Each conversion run beside the independent-process bound of its process count.

    ``runs``: ``{"layout": "pool"|"ranks"|"independent", "processes", "workers_per_process",
    "images_per_s": summary}``.  A run that computes on N processes or pool workers is
    divided by the summed rate of N independent one-worker conversions measured at once.
    """
    bounds = {r["processes"]: r["images_per_s"]["median"] for r in runs if r["layout"] == "independent"}
    rows = []
    for r in runs:
        used = r["processes"] * r["workers_per_process"]
        bound = bounds.get(used) if r["layout"] != "independent" else None
        rows.append({**r, "independent_bound": bound,
                     "vs_bound": r["images_per_s"]["median"] / bound if bound else None})
    return rows


def accumulation_rows(measurements: list[dict]) -> list[dict]:
    """tfxr.train loops with gradient accumulation K: allreduces per epoch and images/s,
    each beside the K = 1 loop of the same setting and ranks."""
    loops = [m for m in measurements if m["variant"]["layout"] == "train-loop" and "images_per_s" in m]

    def plain(v):
        for m in loops:
            w = m["variant"]
            if same_setting(w, v) and w["workers"] == v["workers"] and w.get("accumulate_steps", 1) == 1:
                return m
        return None
    rows = []
    for m in loops:
        v, base = m["variant"], plain(m["variant"])
        allreduces = m.get("allreduces_per_epoch")
        rows.append({"loop": m["label"], "accumulate_steps": v.get("accumulate_steps", 1),
                     "allreduces_per_epoch": allreduces and allreduces["median"],
                     "images_per_s": m["images_per_s"]["median"],
                     "vs_k1": _ratio(m["images_per_s"]["median"], _median(base))})
    return rows


# --------------------------------------------------------------------------- targets
def _find(measurements: list[dict], **want) -> dict | None:
    for m in measurements:
        if "images_per_s" in m and all(m["variant"].get(k) == v for k, v in want.items()):
            return m
    return None


def _median(m: dict | None) -> float | None:
    return m["images_per_s"]["median"] if m else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def suite_targets(sections: dict) -> list[dict]:
    """The targets of issues 10 and 19 from the suite's measurements: value, goal, met."""
    targets = []

    def add(name, value, goal, unit="x"):
        met = None if value is None else value >= goal
        targets.append({"target": name, "value": value, "goal": goal, "unit": unit, "met": met})

    loops = [r for r in loop_rows(sections.get("tb_cnn_128", [])) if r["input"] == "pipeline"]   # augmented
    add("tb_cnn 128 px: training loop / model-only step rate (best setting)",
        max((r["ratio"] for r in loops if r["ratio"] is not None), default=None), 0.90)
    add("tb_cnn 128 px: training loop images/s (best setting)",
        max((r["images_per_s"] for r in loops), default=None), 400.0, "images/s")
    for key, model in (("tb_cnn_128", "tb_cnn 128 px"), ("densenet121_128", "DenseNet121 128 px"),
                       ("dcgan_64", "DCGAN 64 px"), ("detector_256", "detector 256 px")):
        rows = scaling_rows(sections.get(key, []))
        two = [r for r in rows if r["workers"] == 2]
        best = max(two, key=lambda r: r["images_per_s"]) if two else None
        add(f"{model}: best -np 2 / independent bound", best and best["vs_bound"], 0.90)
        singles = [_median(m) for m in sections.get(key, [])
                   if "images_per_s" in m and m["variant"]["layout"] == "all-cores"]
        add(f"{model}: best -np 2 / best single process (all cores)",
            _ratio(best and best["images_per_s"], max(singles) if singles else None), 0.95)
    big = _find(sections.get("densenet121_224", []), layout="all-cores", precision="fp32")
    add("DenseNet121 224 px training: fraction of the fp32 ceiling measured in this run",
        big and big.get("flop_fraction"), 0.60, "fraction")
    return targets
