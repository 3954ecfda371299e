"""How results are shown and kept: markdown tables, the scaling PNG, the result files."""
from __future__ import annotations

import os
import platform
import time

from tfxr import cpu, plots
from tfxr.benchmark.analysis import setting_text
from tfxr.files import write_json, write_text


def _fmt(cell) -> str:
    if cell is None:
        return "-"
    return f"{cell:.2f}" if isinstance(cell, float) else str(cell)


def table(headers: list[str], rows: list[list]) -> str:
    """A markdown table (prints readably and pastes into BENCHMARKS.md)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def justify(i, c):   # text left, numbers right
        return c.ljust(widths[i]) if i == 0 else c.rjust(widths[i])
    lines = ["| " + " | ".join(justify(i, c) for i, c in enumerate(r)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join(("-" * (w + 2)) if i == 0 else ("-" * (w + 1) + ":")
                                   for i, w in enumerate(widths)) + "|")
    return "\n".join(lines)


def spread(s: dict) -> str:
    return f"{s['min']:.1f}-{s['max']:.1f}"


def measurement_table(measurements: list[dict]) -> str:
    rows = []
    for m in measurements:
        s = m["images_per_s"]
        frac = m.get("flop_fraction")
        rows.append([m["label"], s["median"], spread(s), len(s["repeats"]),
                     f"{100 * frac:.1f}%" if frac is not None else None])
    return table(["measurement", "images/s (median)", "min-max", "repeats", "of fp32 ceiling"], rows)


def ceiling_line(ceiling: dict) -> str:
    """Which fp32 ceiling the FLOP fractions above are judged against, and why."""
    gemm = ceiling["gemm_per_core"]
    return (f"fp32 ceiling: {ceiling['per_core'] / 1e9:.1f} GFLOP/s per core, the {ceiling['source']} "
            f"(nominal peak {ceiling['nominal_per_core'] / 1e9:.1f}; "
            f"GEMM in this run {'not measured' if gemm is None else f'{gemm / 1e9:.1f}'})")


def scaling_table(rows: list[dict]) -> str:
    return table(["ranks", "launcher", "setting", "images/s", "independent bound", "vs bound", "eff. vs 1-core",
                  "vs all-cores process (same setting)"],
                 [[r["workers"], r["launcher"], r["setting"], r["images_per_s"], r["independent_bound"],
                   r["vs_bound"], r["efficiency_vs_one_core"], r["vs_all_cores_process"]] for r in rows])


def loop_table(rows: list[dict]) -> str:
    return table(["tfxr.train loop", "images/s", "model-only, same setting", "loop / model-only"],
                 [[r["loop"], r["images_per_s"], r["model_only"], r["ratio"]] for r in rows])


def conversion_table(rows: list[dict]) -> str:
    return table(["conversion", "images", "images/s (median)", "min-max", "independent bound", "vs bound",
                  "images/s (wall, median)"],
                 [[r["label"], r["images"], r["images_per_s"]["median"], spread(r["images_per_s"]),
                   r["independent_bound"], r["vs_bound"], r["images_per_s_wall"]["median"]] for r in rows])


def accumulation_table(rows: list[dict]) -> str:
    return table(["tfxr.train loop", "K", "allreduces/epoch", "images/s", "vs K=1"],
                 [[r["loop"], r["accumulate_steps"], r["allreduces_per_epoch"], r["images_per_s"], r["vs_k1"]]
                  for r in rows])


def targets_table(targets: list[dict]) -> str:
    def show(t):
        if t["value"] is None:
            return None
        return f"{t['value']:.1f}" if t["unit"] == "images/s" else f"{t['value']:.3f}"
    return table(["target", "measured", "goal", "met"],
                 [[t["target"], show(t), t["goal"], {True: "yes", False: "NO", None: "-"}[t["met"]]]
                  for t in targets])


def report_lines(measurements: list[dict]) -> list[str]:
    """The measurement table, then a line per failed measurement."""
    ok = [m for m in measurements if "images_per_s" in m]
    lines = [measurement_table(ok)] if ok else []
    lines += [f"FAILED: {m['label']}: {m['error'].splitlines()[0]}" for m in measurements if "error" in m]
    return lines


def _setting_key(v: dict) -> tuple:
    return (v["model"], v["image_size"], v["batch_size"], v["input"], v["precision"], v["onednn"], v["xla"])


def scaling_series(measurements: list[dict]) -> list[dict]:
    """The lines of the scaling plot: per setting (never fp32 and bf16 on one line) the
    independent bound (from the one-core process at 1), the Horovod ranks per launcher and Horovod settings, N x the
    one-core process and the one process on all cores.

    Each line: ``{"setting", "label", "kind", "workers", "median", "low", "high"}``
    (``kind``: bound | ranks | one-core x N | all-cores); settings are numbered in
    ``setting`` order so that one colour can mark every line of a setting.
    """
    ok = [m for m in measurements if "images_per_s" in m and m["variant"]["layout"] in
          ("all-cores", "one-core", "independent", "ranks")]
    keys = sorted({_setting_key(m["variant"]) for m in ok if m["variant"]["layout"] in ("independent", "ranks")},
                  key=str)
    workers = sorted({m["variant"]["workers"] for m in ok} | {1})
    several_setups = len({k[:4] for k in keys}) > 1        # models, sizes, batches or inputs differ
    lines = []
    for index, key in enumerate(keys):
        mine = [m for m in ok if _setting_key(m["variant"]) == key]
        name = setting_text(mine[0]["variant"])
        if several_setups:
            name = f"{key[0]} {key[1]}px b{key[2]} {key[3]} " + name

        def line(kind, label, points):
            points = sorted(points, key=lambda p: p[0])
            lines.append({"setting": index, "label": f"{name}: {label}", "kind": kind,
                          "workers": [p[0] for p in points], "median": [p[1]["median"] for p in points],
                          "low": [p[1]["min"] for p in points], "high": [p[1]["max"] for p in points]})

        one = [m["images_per_s"] for m in mine if m["variant"]["layout"] == "one-core"]
        if one:
            line("one-core x N", "N x one-core process",
                 [(n, {k: one[0][k] * n for k in ("median", "min", "max")}) for n in workers])
        bound = [(m["variant"]["workers"], m["images_per_s"]) for m in mine if m["variant"]["layout"] == "independent"]
        if bound:   # one one-core process is the bound of one rank
            line("bound", "independent 1-core processes (bound)", ([(1, one[0])] if one else []) + bound)
        rank_setups = sorted({(m["variant"]["launcher"], tuple(map(tuple, m["variant"]["env"])))
                              for m in mine if m["variant"]["layout"] == "ranks"}, key=str)
        for launcher, env in rank_setups:
            line("ranks", f"Horovod {launcher}{''.join(f' {k}={v}' for k, v in env)}",
                 [(m["variant"]["workers"], m["images_per_s"]) for m in mine if m["variant"]["layout"] == "ranks"
                  and m["variant"]["launcher"] == launcher and tuple(map(tuple, m["variant"]["env"])) == env])
        single = [m["images_per_s"] for m in mine if m["variant"]["layout"] == "all-cores"]
        if single:
            line("all-cores", "1 process, all cores", [(n, single[0]) for n in (workers[0], workers[-1])])
    return lines


def plot_scaling(measurements: list[dict], path: str, title: str) -> None:
    """images/s against worker count (:func:`scaling_series`), one colour per setting, a
    legend naming the setting and the layout of every line."""
    lines = scaling_series(measurements)
    fig, ax = plots.subplots(figsize=(7.5, 4.8), dpi=110)
    colours = plots.pyplot().rcParams["axes.prop_cycle"].by_key()["color"]
    styles = {"bound": dict(fmt="s--", capsize=3), "ranks": dict(fmt="o-", capsize=3),
              "one-core x N": dict(fmt=":", lw=0.9), "all-cores": dict(fmt="-", lw=0.8, alpha=0.6)}
    ranks_seen: dict[int, int] = {}
    for line in lines:
        style = dict(styles[line["kind"]])
        if line["kind"] == "ranks":   # a second launcher of the same setting: another marker
            n = ranks_seen[line["setting"]] = ranks_seen.get(line["setting"], -1) + 1
            style["fmt"] = "o^vDPX"[n % 6] + "-"
        err = None
        if line["kind"] in ("bound", "ranks"):
            err = [[m - lo for m, lo in zip(line["median"], line["low"])],
                   [hi - m for m, hi in zip(line["median"], line["high"])]]
        ax.errorbar(line["workers"], line["median"], yerr=err, color=colours[line["setting"] % len(colours)],
                    label=line["label"], **style)
    workers = sorted({n for line in lines for n in line["workers"]} | {1})
    ax.set(xlabel="processes / ranks (1 core each)", ylabel="images/s (median, min-max)", title=title)
    ax.set_xticks(workers)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="best")
    plots.save_png(fig, path)


def machine_facts() -> dict:
    info = cpu.read_cpuinfo()
    return {"host": platform.node(), "cpu": info.model_name, "vendor": info.vendor,
            "logical_cpus": info.logical_cpus, "available_cores": cpu.available_cores(),
            "bf16_flags": sorted(info.flags & set(cpu.BF16_FLAGS)),
            "python": platform.python_version(), "platform": platform.platform(),
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}


def settings_facts() -> dict:
    """The environment variables that change CPU speed, as this run saw them."""
    names = ("TF_ENABLE_ONEDNN_OPTS", "TFXR_CPU_THREADS", "TFXR_INTER_OP_THREADS", "OMP_NUM_THREADS",
             "HOROVOD_CYCLE_TIME", "HOROVOD_FUSION_THRESHOLD", "HOROVOD_CPU_OPERATIONS")
    return {n: os.environ.get(n) for n in names}


def write_results(out: str, name: str, result: dict, command: str) -> list[str]:
    """``NAME.json`` (everything), ``NAME.md`` (the tables) and the PNGs, all atomic."""
    os.makedirs(out, exist_ok=True)
    plots = result.pop("_plots", {})
    result.update(command=command, machine=machine_facts(), settings=settings_facts(),
                  time=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    paths = [os.path.join(out, f"{name}.json"), os.path.join(out, f"{name}.md")]
    write_json(paths[0], result)
    header = (f"`{command}`\n\n{result['machine']['cpu']}, {result['machine']['available_cores']} cores, "
              f"load average {result['machine']['load_average']}, {result['time']}\n\n")
    write_text(paths[1], header + result["table"] + "\n")
    for file_name, (measurements, title) in plots.items():
        paths.append(os.path.join(out, file_name))
        plot_scaling(measurements, paths[-1], title)
    return paths

