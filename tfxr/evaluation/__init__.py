"""Evaluation library behind ``python -m tfxr.evaluate`` and ``python -m tfxr.localize``.

``metrics``        classification metrics as papers report them (AUROC, AUPRC, CIs, thresholds)
``classifier``     predictions of a split gathered from every rank, metrics.json, report.md, ROC PNG
``generative``     Inception Score and FID (InceptionV3 or a trained tfxr classifier as features)
``cam``            class activation maps of a classifier (HiResCAM by default, Grad-CAM)
``boxes``          box geometry, boxes cut from heatmaps, their T(IoBB) / IoU / pointing-game scores
``localization``   the localize run: CAM boxes of a split against its ground truth, report.md
``published``      papers' reference tables printed beside tfxr's numbers (Wang et al. 2017)
``detection``      detector, CAM and random boxes: pycocotools mAP, the RSNA metric, FROC
"""
