"""What every benchmark test checks of a result folder."""
from __future__ import annotations

import json


def check_result(out, name: str, min_bars: int = 10) -> dict:
    """``OUT/NAME.json`` with its command, machine, settings and time, and ``NAME.md``'s table."""
    result = json.loads((out / f"{name}.json").read_text())
    assert {"command", "machine", "settings", "time", "table"} <= set(result)
    assert result["command"].startswith("python -m tfxr.benchmark") and result["machine"]["cpu"]
    assert (out / f"{name}.md").read_text().count("|") >= min_bars
    return result
