"""The one shape of a data set reader (TorchXRayVision's idea: one small class per set).

A reader is built from the set's paths and options (``__init__`` keeps them and refuses
option values it cannot use; nothing is read yet but a folder listing where the labels
come from it), says what the set gives (class attributes, the README's data table:
patient key, official split, boxes, views) and lists its images in one method,
:meth:`Reader.items`, which reads the label files, yields one
:class:`~tfxr.data.types.Item` per usable image, appends every input it cannot use to
``self.rejects`` (file:line and why) and, once done, records its facts in ``self.info``.
:meth:`Reader.read` runs it into the :class:`~tfxr.data.types.Source` the converter writes.
Readers never decode pixels: the converter's workers do (DICOM included).

``python -m tfxr.tfrecords write --source NAME`` builds ``READERS[NAME].from_args(args)``:
:attr:`Reader.options` names the parsed options a reader takes (argument names),
:attr:`Reader.required` those that must be given, and :meth:`Reader.keywords` turns them
into the constructor's keywords where a name or a type differs.
"""
from __future__ import annotations

from typing import ClassVar, Iterator

from tfxr.data.types import Item, Reject, Source
from tfxr.errors import ConfigError


class Reader:
    """Base of every data set reader; a subclass sets the class attributes and ``items``."""

    #: ``--source NAME``, and the source name in the manifest.
    name: ClassVar[str]
    #: the ``tfrecords write`` options the reader takes (argument names, as ``args.<name>``).
    options: ClassVar[tuple[str, ...]] = ()
    #: the options among them that must be given.
    required: ClassVar[tuple[str, ...]] = ()
    #: what the set gives, in words (None where it has none): where the patient id comes
    #: from, its official split, its boxes and its view positions.
    patient_key: ClassVar[str | None] = None
    official_split: ClassVar[str | None] = None
    boxes: ClassVar[str | None] = None
    views: ClassVar[str | None] = None

    def __init__(self) -> None:
        #: the label names, in the order of each item's ``labels`` (set by ``__init__``, or by
        #: ``items()`` where only the files name them: an unknown MedMNIST archive).
        self.label_names: list[str] = []
        #: inputs that could not be used, appended while :meth:`items` runs.
        self.rejects: list[Reject] = []
        #: facts recorded in the manifest's ``source`` (paths, options, counts of skipped rows),
        #: filled in by :meth:`items` once it has run.
        self.info: dict = {}

    def items(self) -> Iterator[Item]:
        """One Item per usable image, in the set's order; unusable inputs go to ``self.rejects``."""
        raise NotImplementedError

    def read(self) -> Source:
        """Every item, the rejects and the facts, as the Source the converter writes."""
        items = list(self.items())
        return Source(self.name, list(self.label_names), items, self.rejects, self.info)

    @classmethod
    def from_args(cls, args) -> "Reader":
        """The reader ``tfrecords write --source NAME`` asks for, from its parsed options."""
        missing = [f"--{n.replace('_', '-')}" for n in cls.required if not getattr(args, n)]
        if missing:
            raise ConfigError(f"--source {args.source} needs {' and '.join(missing)}")
        return cls(**cls.keywords(args))

    @classmethod
    def keywords(cls, args) -> dict:
        """The constructor's keywords (default: each option under its own name)."""
        return {name: getattr(args, name) for name in cls.options}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, labels={len(self.label_names)})"


def one_label_file(args) -> str | None:
    """The single ``--labels`` file of a set that has one label file."""
    if args.labels and len(args.labels) > 1:
        raise ConfigError(f"--source {args.source} takes one --labels file, got {len(args.labels)}")
    return args.labels[0] if args.labels else None
