"""``python -m tfxr.localize``: class-activation-map localization scored against ground-truth boxes.

    python -m tfxr.localize --model runs/phantoms --data tfrec/phantoms --split test --out loc
    mpirun -np 2 python -m tfxr.localize --model runs/chexnet --data tfrec/nih224 --split test

For every ground-truth box of the scored split (NIH's BBox_List_2017 boxes, scaled to
the stored size, or the phantoms' lesion boxes) the heatmap of its finding (HiResCAM, or
Grad-CAM with ``--cam gradcam``) is
turned into boxes (cut at a fraction of its maximum chosen per finding on
``--threshold-split``, never on the scored split; or fixed in advance with
``--box-threshold 0.5`` when no other split has boxes, as for NIH, whose boxes are all in
its test list) and scored: accuracy and average false positives (AFP) at T(IoBB) in
{0.1, 0.25, 0.5, 0.75, 0.9} as in Wang et al. 2017 Table 4, IoU hit rates at 0.1-0.5 and
the pointing game, each beside a random-placement baseline.  Writes ``OUT/report.md``
(beside the published table), ``OUT/localization.json`` and ``OUT/overlays/*.png``
(heatmap over the radiograph, predicted boxes red, ground truth green), each overlay named
after its image id made safe (``tfxr.files.path_in``: no ``../``, ``/`` or NUL).  The model is
rebuilt from its run's ``config.yaml`` (``--trust-model-file`` for a file of no tfxr run).
"""
from __future__ import annotations

import sys

from tfxr.cli import run_main
from tfxr import log
from tfxr.config import parse_config
from tfxr.configs import LocalizeConfig


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        cfg, _ = parse_config(LocalizeConfig, argv, "python -m tfxr.localize", __doc__)
        from tfxr.evaluation.localization import localize, markdown_report   # lazy: TensorFlow after the options

        result = localize(cfg)
        if result:
            print(markdown_report(result))
            log.info(f"wrote {result['out']}/report.md, localization.json, overlays/")
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
