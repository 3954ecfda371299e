"""One label vocabulary across data sets, with each source's mapping onto it.

The reference is TorchXRayVision's pathology names (``xrv.datasets.default_pathologies``),
the names chest X-ray papers compare models on, plus ``Tuberculosis`` (the name its
NLM tuberculosis readers use).  Records keep each set's own label names (nothing is
lost); the mapping is applied when a model trained on one set is scored on another
(``python -m tfxr.evaluate --model RUN --data OTHER_SET``): labels are compared by
their vocabulary name, and labels without one (CheXpert's "Support Devices", VinDr's
"Aortic enlargement", ...) are left out and listed.
"""
from __future__ import annotations

#: TorchXRayVision's default pathologies (its order), then Tuberculosis.
VOCABULARY: tuple[str, ...] = (
    "Atelectasis", "Consolidation", "Infiltration", "Pneumothorax", "Edema", "Emphysema",
    "Fibrosis", "Effusion", "Pneumonia", "Pleural_Thickening", "Cardiomegaly", "Nodule", "Mass",
    "Hernia", "Lung Lesion", "Fracture", "Lung Opacity", "Enlarged Cardiomediastinum",
    "Tuberculosis",
)

_CHEXPERT = {
    "No Finding": None, "Enlarged Cardiomediastinum": "Enlarged Cardiomediastinum",
    "Cardiomegaly": "Cardiomegaly", "Lung Opacity": "Lung Opacity", "Lung Lesion": "Lung Lesion",
    "Edema": "Edema", "Consolidation": "Consolidation", "Pneumonia": "Pneumonia",
    "Atelectasis": "Atelectasis", "Pneumothorax": "Pneumothorax", "Pleural Effusion": "Effusion",
    "Pleural Other": None, "Fracture": "Fracture", "Support Devices": None,
}

#: source name -> {the set's label name: vocabulary name, or None when it has none}.
#: Sets not listed (folder, npz, synthetic, tb) map a label whose name matches a
#: vocabulary name ignoring case, spaces and underscores ("PNEUMONIA" -> "Pneumonia").
SOURCE_MAPPINGS: dict[str, dict[str, str | None]] = {
    "nih": {n: n for n in VOCABULARY[:14]},
    "chexpert": _CHEXPERT,
    "mimic-cxr-jpg": _CHEXPERT,
    # RSNA's Target marks "Lung Opacity" boxes that the challenge scores as pneumonia
    "rsna": {"Pneumonia": "Pneumonia", "Not Normal": None},
    "vindr": {
        "Aortic enlargement": None, "Atelectasis": "Atelectasis", "Calcification": None,
        "Cardiomegaly": "Cardiomegaly", "Consolidation": "Consolidation", "ILD": None,
        "Infiltration": "Infiltration", "Lung Opacity": "Lung Opacity", "Nodule/Mass": None,
        "Other lesion": None, "Pleural effusion": "Effusion",
        "Pleural thickening": "Pleural_Thickening", "Pneumothorax": "Pneumothorax",
        "Pulmonary fibrosis": "Fibrosis",
    },
    "tbx11k": {"Tuberculosis": "Tuberculosis", "ActiveTuberculosis": None,
               "ObsoletePulmonaryTuberculosis": None, "PulmonaryTuberculosis": None},
}


def _key(name: str) -> str:
    return name.lower().replace("_", "").replace(" ", "")


_BY_KEY = {_key(n): n for n in VOCABULARY}


def to_vocabulary(source: str, label_names: list[str]) -> list[str | None]:
    """Each label's vocabulary name (or None) for a data set read by ``source``."""
    mapping = SOURCE_MAPPINGS.get(source)
    if mapping is not None:
        return [mapping.get(n, _BY_KEY.get(_key(n))) for n in label_names]
    return [_BY_KEY.get(_key(n)) for n in label_names]


def shared_labels(model_source: str, model_labels: list[str], data_source: str,
                  data_labels: list[str]) -> tuple[list[tuple[int, int, str]], list[str]]:
    """Labels a model and a data set share, by vocabulary name.

    Returns ``[(model index, data index, vocabulary name), ...]`` in the model's order,
    and the labels left out, each as ``'name (why)'``.
    """
    mv, dv = to_vocabulary(model_source, model_labels), to_vocabulary(data_source, data_labels)
    data_at = {v: j for j, v in enumerate(dv) if v is not None}
    pairs, left_out = [], []
    for i, v in enumerate(mv):
        if v is None:
            left_out.append(f"{model_labels[i]} (model label not in the vocabulary)")
        elif v not in data_at:
            left_out.append(f"{model_labels[i]} (not labelled in {data_source})")
        else:
            pairs.append((i, data_at[v], v))
    used = {j for _, j, _ in pairs}
    left_out += [f"{n} (data label the model does not predict)" for j, n in enumerate(data_labels)
                 if j not in used]
    return pairs, left_out
