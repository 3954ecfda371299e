"""Evaluation library behind ``python -m tfxr.evaluate`` and ``python -m tfxr.localize``.

``metrics``        classification metrics as papers report them (AUROC, AUPRC, CIs, thresholds)
``classifier``     predictions of a split gathered from every rank, metrics.json, report.md, ROC PNG
``generative``     Inception Score and FID (InceptionV3 or a trained tfxr classifier as features)
``localization``   Grad-CAM heatmaps, boxes, T(IoBB) / IoU / pointing-game scores
"""
