"""Data set readers: one small class per set, each turning the set on disk into a
:class:`~tfxr.data.types.Source` (TorchXRayVision's layout: one class per data set).

``base`` holds :class:`Reader`, the shape every reader has (name, options, label names,
patient key, official split, boxes, views; :meth:`Reader.items` yields the images);
one module per set: ``nih``, ``rsna``, ``chexpert``, ``mimic`` (MIMIC-CXR-JPG),
``vindr``, ``tbx11k``, ``tb``, ``folder`` (class-per-folder), ``npz`` (MedMNIST) and
``phantoms`` (tfxr's synthetic images); ``common`` holds what they share and
``vocabulary`` the one label vocabulary.  Readers never decode pixels (the converter's
workers do, DICOM included) and they report, rather than raise on, inputs they cannot
use.  Adding a data set is one module with one Reader subclass, listed in ``READERS``::

    source = RSNAReader("rsna/stage_2_train_images", "rsna/stage_2_train_labels.csv", views=("PA",)).read()
"""
from tfxr.data.sources.base import Reader
from tfxr.data.sources.chexpert import CHEXPERT_LABELS, UNCERTAINTY_POLICIES, CheXpertReader
from tfxr.data.sources.common import (IMAGE_EXTENSIONS, by_file_name, list_images, parse_views,
                                      printable_path, read_lines, read_table)
from tfxr.data.sources.folder import FolderReader, patient_from_name
from tfxr.data.sources.mimic import MIMICReader
from tfxr.data.sources.nih import NIH_BOX_SPACE, NIHReader, read_nih_box_table, read_nih_boxes, read_nih_labels
from tfxr.data.sources.npz import MEDMNIST_LABELS, MedMNISTReader
from tfxr.data.sources.phantoms import PhantomReader
from tfxr.data.sources.rsna import RSNAReader, read_rsna_labels
from tfxr.data.sources.tb import TBReader
from tfxr.data.sources.tbx11k import TBX11KReader
from tfxr.data.sources.vindr import FUSIONS, VINDR_LABELS, VinDrReader, fuse_boxes, read_vindr_table
from tfxr.data.sources.vocabulary import VOCABULARY, shared_labels, to_vocabulary
from tfxr.data.types import CHEXNET_LABELS
from tfxr.errors import SourceError

#: ``--source NAME`` -> its reader, in the README's table order.
READERS: dict[str, type[Reader]] = {r.name: r for r in (
    NIHReader, RSNAReader, CheXpertReader, MIMICReader, VinDrReader, TBX11KReader, TBReader, FolderReader,
    MedMNISTReader, PhantomReader)}

__all__ = [
    "CHEXNET_LABELS", "CHEXPERT_LABELS", "CheXpertReader", "FUSIONS", "FolderReader", "IMAGE_EXTENSIONS",
    "MEDMNIST_LABELS", "MIMICReader", "MedMNISTReader", "NIHReader", "NIH_BOX_SPACE", "PhantomReader",
    "READERS", "RSNAReader", "Reader", "SourceError", "TBReader", "TBX11KReader", "UNCERTAINTY_POLICIES",
    "VINDR_LABELS", "VOCABULARY", "VinDrReader", "by_file_name", "fuse_boxes", "list_images", "parse_views",
    "patient_from_name", "printable_path", "read_lines", "read_nih_box_table", "read_nih_boxes",
    "read_nih_labels", "read_rsna_labels", "read_table", "read_vindr_table", "shared_labels", "to_vocabulary",
]
