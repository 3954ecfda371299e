"""``python -m tfxr.stats DIR``: a TFRecord directory's per-split prevalence table, origins
and patient overlap (read from the shards themselves, not from the manifest).

    python -m tfxr.stats tfrec/nih224
    python -m tfxr.stats tfrec/phantoms --json stats.json --grid samples.png

(``python -m tfxr.data.stats`` and the ``tfxr-stats`` script are older names of this
command.)  The options are :class:`tfxr.configs.StatsConfig`'s (``--config``, ``--set``).

Exit status: 0 no patient in two splits; 2 unusable directory or options (one line
naming the problem); 3 some patient is in two splits (a leaking split).
"""
from __future__ import annotations

import sys

from tfxr import files
from tfxr.cli import EXIT_OK, EXIT_REJECTED, run_main
from tfxr.config import parse_config
from tfxr.configs import StatsConfig

PROG = "python -m tfxr.stats"


def stats(cfg: StatsConfig) -> int:
    """Print the numbers (and write ``--json``/``--grid``); EXIT_REJECTED if a patient is in two splits."""
    # lazy: the shard readers (numpy, pydicom, Pillow) after the options are checked
    from tfxr.data.records import check_shards, read_manifest
    from tfxr.data.splits import patient_overlap
    from tfxr.data.stats import check_grid_source, prevalence_table, sample_grid, split_patients

    m = read_manifest(cfg.data_dir)
    if cfg.grid:
        check_grid_source(m, cfg.data_dir)  # before the slow part, not after it
    check_shards(cfg.data_dir, m)
    print(f"{cfg.data_dir}: {m.get('source', {}).get('name', '?')}, {m['image_size']} px, "
          f"{sum(s['count'] for s in m['splits'].values())} images, {len(m.get('rejected', []))} rejected")
    print(prevalence_table(m))
    overlap = patient_overlap(split_patients(cfg.data_dir, m))
    print("patient overlap: " + ", ".join(f"{k} {v}" for k, v in overlap.items()))
    if cfg.grid:
        print(f"wrote {sample_grid(cfg.data_dir, m, cfg.grid)}")
    if cfg.json:
        files.write_json(cfg.json, {
            "prevalence": {s: m["splits"][s]["prevalence"] for s in m["splits"]},
            "counts": {s: m["splits"][s]["count"] for s in m["splits"]},
            "origins": {s: m["splits"][s].get("origins") for s in m["splits"]},
            "patient_overlap": overlap})
    return EXIT_REJECTED if any(overlap.values()) else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return run_main(lambda: stats(parse_config(StatsConfig, argv, PROG, __doc__)[0]))


if __name__ == "__main__":
    sys.exit(main())
