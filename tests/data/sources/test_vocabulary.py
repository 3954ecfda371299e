"""The one label vocabulary and the per-source mappings."""
from tfxr.data.sources import CHEXPERT_LABELS, VINDR_LABELS, shared_labels, to_vocabulary
from tfxr.data.types import CHEXNET_LABELS


def test_mappings_onto_torchxrayvision_names():
    assert to_vocabulary("nih", list(CHEXNET_LABELS)) == list(CHEXNET_LABELS)
    chex = dict(zip(CHEXPERT_LABELS, to_vocabulary("chexpert", list(CHEXPERT_LABELS))))
    assert chex["Pleural Effusion"] == "Effusion" and chex["Support Devices"] is None
    vin = dict(zip(VINDR_LABELS, to_vocabulary("vindr", list(VINDR_LABELS))))
    assert vin["Pleural thickening"] == "Pleural_Thickening" and vin["Pulmonary fibrosis"] == "Fibrosis"
    assert to_vocabulary("folder", ["PNEUMONIA"]) == ["Pneumonia"]


def test_shared_labels_between_nih_and_chexpert():
    pairs, left = shared_labels("nih", list(CHEXNET_LABELS), "chexpert", list(CHEXPERT_LABELS))
    assert [v for _, _, v in pairs] == ["Atelectasis", "Cardiomegaly", "Effusion", "Pneumonia", "Pneumothorax",
                                        "Consolidation", "Edema"]
    assert "Hernia (not labelled in chexpert)" in left
    assert "Support Devices (data label the model does not predict)" in left
