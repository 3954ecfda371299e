"""Where the communication time goes: a summary of Horovod's timeline.

``python -m tfxr.train ... --timeline FILE`` (``HOROVOD_TIMELINE``, written by rank 0 with
cycle marks) records, per tensor, each collective's phases in chrome://tracing JSON:
``NEGOTIATE_<OP>`` (from the first rank asking until every rank is ready; an ``X`` mark per
rank says when it became ready), then the operation (``ALLREDUCE``, ``BROADCAST``, ...)
with its inner activities (``MEMCPY_IN_FUSION_BUFFER``, ``MPI_ALLREDUCE`` or
``GLOO_ALLREDUCE``, ``MEMCPY_OUT_FUSION_BUFFER``, ``WAIT_FOR_DATA`` ...), and
``CYCLE_START`` marks for each cycle of Horovod's background loop.

:func:`summarize` turns that into numbers per training step:

* ``allreduce_ms_per_step`` -- wall time inside allreduce operations (fused tensors share
  one interval, so intervals are merged, not summed);
* ``negotiation_ms_per_step`` -- wall time in allreduce negotiation;
* ``waiting_ms_per_step`` -- of the negotiation, the time between the first and the last
  rank becoming ready (the others waiting for the slowest rank), merged likewise;
* ``tensors_per_cycle`` -- allreduced tensors per cycle that had any (mean and max): how
  much tensor fusion happened.

``steps`` is the number of times the most often allreduced tensor was allreduced (each
gradient is allreduced once per step).  A file cut short by a killed job is read up to its
last complete event.
"""
from __future__ import annotations

import json
from bisect import bisect_right
from collections import defaultdict

from tfxr.errors import ConfigError

_NETWORK = ("MPI_", "GLOO_", "NCCL_", "CCL_", "DDL_")


def read_events(path: str) -> list[dict]:
    """The events of a timeline file (chrome trace JSON array, possibly unterminated)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the timeline ({e.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a Horovod timeline (not UTF-8 text)") from None
    try:
        events = json.loads(text)
    except json.JSONDecodeError:
        events = _read_unterminated(text, path)
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise ConfigError(f"{path}: not a Horovod timeline (expected a JSON array of events)")
    return events


def _read_unterminated(text: str, path: str) -> list:
    """A timeline whose writer was killed: ``[`` then events, no closing ``]``."""
    start = text.find("[")
    if start < 0:
        raise ConfigError(f"{path}: not a Horovod timeline (no JSON array)")
    decoder, events, i = json.JSONDecoder(), [], start + 1
    while True:
        while i < len(text) and text[i] in " \t\r\n,":
            i += 1
        if i >= len(text) or text[i] == "]":
            return events
        try:
            event, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            return events            # the last event was cut off mid-write
        events.append(event)


def _merged_ms(intervals: list[tuple[float, float]]) -> float:
    """Total length (ms) of the union of [start, end] intervals given in microseconds."""
    total, end = 0.0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total / 1000.0


def summarize(path: str) -> dict:
    """The per-step communication summary of a Horovod timeline file (see the module doc)."""
    events = read_events(path)
    names: dict = {}
    cycles: list[float] = []
    stacks: dict = defaultdict(list)          # pid -> open [name, start, rank marks]
    ops: dict = defaultdict(list)             # operation name -> [(start, end)]
    negotiation, waiting, network = [], [], []
    allreduce_starts: list[tuple[float, object]] = []   # (ts, pid) of each tensor's allreduce
    per_tensor: dict = defaultdict(int)
    for e in events:
        ph, pid, ts = e.get("ph"), e.get("pid"), e.get("ts")
        if ph == "M" and e.get("name") == "process_name":
            names[pid] = (e.get("args") or {}).get("name")
        elif ph == "i" and e.get("name") == "CYCLE_START":
            cycles.append(float(ts))
        elif ph == "B":
            stacks[pid].append([e.get("name", ""), float(ts), []])
            if e.get("name") == "ALLREDUCE":
                allreduce_starts.append((float(ts), pid))
                per_tensor[pid] += 1
        elif ph == "X" and stacks[pid] and str(e.get("name", "")).isdigit():
            stacks[pid][-1][2].append(float(ts))   # rank N ready (inside a negotiation)
        elif ph == "E" and stacks[pid]:
            name, start, marks = stacks[pid].pop()
            span = (start, float(ts))
            if name == "NEGOTIATE_ALLREDUCE":
                negotiation.append(span)
                if len(marks) > 1:
                    waiting.append((min(marks), max(marks)))
            elif name == "ALLREDUCE":
                ops["ALLREDUCE"].append(span)
            elif name.startswith(_NETWORK) and name.endswith("ALLREDUCE"):
                network.append(span)
            elif not stacks[pid]:
                ops[name].append(span)
    if not allreduce_starts and not ops:
        raise ConfigError(f"{path}: the timeline has no Horovod operations (was the run multi-process, "
                          f"and did it get past its first step?)")
    steps = max(per_tensor.values(), default=0)
    per_cycle: dict = defaultdict(set)
    for ts, pid in allreduce_starts:
        per_cycle[bisect_right(cycles, ts)].add(pid)
    fused = [len(tensors) for tensors in per_cycle.values()]
    per_step = (lambda ms: ms / steps) if steps else (lambda ms: None)
    return {
        "file": path, "steps": steps, "tensors": len(per_tensor), "cycles": len(cycles),
        "allreduce_ms_per_step": per_step(_merged_ms(ops["ALLREDUCE"])),
        "network_ms_per_step": per_step(_merged_ms(network)),
        "negotiation_ms_per_step": per_step(_merged_ms(negotiation)),
        "waiting_ms_per_step": per_step(_merged_ms(waiting)),
        "tensors_per_cycle": {"mean": sum(fused) / len(fused) if fused else None,
                              "max": max(fused, default=None), "cycles_with_allreduce": len(fused)},
        "other_ops": {name: len(spans) for name, spans in sorted(ops.items()) if name != "ALLREDUCE"},
        "tensor_names": sorted(n for p, n in names.items() if p in per_tensor and n),
    }


def format_summary(summary: dict) -> str:
    """A few lines for a terminal or notebook."""
    def ms(key):
        value = summary[key]
        return "n/a" if value is None else f"{value:.2f} ms"

    fused = summary["tensors_per_cycle"]
    mean = "n/a" if fused["mean"] is None else f"{fused['mean']:.1f}"
    return "\n".join([
        f"timeline {summary['file']}: {summary['steps']} step(s), {summary['tensors']} allreduced tensor(s), "
        f"{summary['cycles']} cycle(s)",
        f"  per step: allreduce {ms('allreduce_ms_per_step')} (of it on the network {ms('network_ms_per_step')}), "
        f"negotiation {ms('negotiation_ms_per_step')}, waiting for the slowest rank {ms('waiting_ms_per_step')}",
        f"  tensors fused per cycle: mean {mean}, max {fused['max']} "
        f"({fused['cycles_with_allreduce']} cycle(s) with an allreduce)",
    ])
