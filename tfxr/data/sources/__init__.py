"""Readers that turn a data set on disk into a :class:`~tfxr.data.types.Source`.

One small module per data set (TorchXRayVision's layout): ``nih``, ``rsna``,
``chexpert``, ``mimic`` (MIMIC-CXR-JPG), ``vindr``, ``tbx11k``, ``tb``, ``folder``
(class-per-folder), ``npz`` (MedMNIST) and ``phantoms`` (tfxr's synthetic images);
``common`` holds what they share and ``vocabulary`` the one label vocabulary.  Each
reader lists images, labels, patient ids, official splits, boxes and views; it never
decodes pixels (the converter's workers do, DICOM included) and it reports, rather than
raises on, inputs it cannot use.  Adding a data set is one module with one reader
function returning a Source, plus its line in ``tfxr.tfrecords.load_source``.
"""
from tfxr.data.sources.chexpert import CHEXPERT_LABELS, UNCERTAINTY_POLICIES, chexpert_source
from tfxr.data.sources.common import (IMAGE_EXTENSIONS, by_file_name, list_images, parse_views,
                                      printable_path, read_lines, read_table)
from tfxr.data.sources.folder import folder_source, patient_from_name
from tfxr.data.sources.mimic import mimic_source
from tfxr.data.sources.nih import (NIH_BOX_SPACE, nih_source, read_nih_box_table, read_nih_boxes,
                                   read_nih_labels)
from tfxr.data.sources.npz import MEDMNIST_LABELS, npz_source
from tfxr.data.sources.rsna import read_rsna_labels, rsna_source
from tfxr.data.sources.tb import tb_source
from tfxr.data.sources.tbx11k import tbx11k_source
from tfxr.data.sources.vindr import FUSIONS, VINDR_LABELS, fuse_boxes, read_vindr_table, vindr_source
from tfxr.data.sources.vocabulary import VOCABULARY, shared_labels, to_vocabulary
from tfxr.data.types import CHEXNET_LABELS
from tfxr.errors import SourceError

__all__ = [
    "CHEXNET_LABELS", "CHEXPERT_LABELS", "FUSIONS", "IMAGE_EXTENSIONS", "MEDMNIST_LABELS", "NIH_BOX_SPACE",
    "SourceError", "UNCERTAINTY_POLICIES", "VINDR_LABELS", "VOCABULARY", "by_file_name", "chexpert_source",
    "folder_source", "fuse_boxes", "list_images", "mimic_source", "nih_source", "npz_source", "parse_views",
    "patient_from_name", "printable_path", "read_lines", "read_nih_box_table", "read_nih_boxes",
    "read_nih_labels", "read_rsna_labels", "read_table", "read_vindr_table", "rsna_source",
    "shared_labels", "tb_source", "tbx11k_source", "to_vocabulary", "vindr_source",
]
