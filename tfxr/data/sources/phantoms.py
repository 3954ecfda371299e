"""tfxr's chest phantoms as a data set (the drawing lives in :mod:`tfxr.data.phantom_drawing`)."""
from __future__ import annotations

from typing import Iterator

from tfxr.data.phantom_drawing import TASKS, PhantomImage, phantom_meta
from tfxr.data.sources.base import Reader
from tfxr.data.types import Item
from tfxr.errors import ConfigError


class PhantomReader(Reader):
    """``num_images`` phantoms: labels, boxes and patient ids from :func:`phantom_meta`, the
    pixels drawn lazily by the converter's workers (a picklable :class:`PhantomImage`)."""

    name = "synthetic"
    options = ("num_images", "phantom_size", "image_size", "phantom_task", "prevalence", "seed")
    patient_key = "blocks of 1-3 images drawn from one simulated patient"
    boxes = "the drawn lesions' boxes"

    def __init__(self, num_images: int = 600, size: int = 128, task: str = "tb", prevalence: float = 0.35,
                 seed: int = 0) -> None:
        super().__init__()
        phantom_meta(seed, 0, task, prevalence)   # checks task, seed and prevalence (ConfigError names the bad one)
        if int(num_images) != num_images or num_images < 0:
            raise ConfigError(f"num_images must be a non-negative integer, got {num_images!r}")
        if int(size) != size or size < 8:
            raise ConfigError(f"size must be an integer >= 8, got {size!r}")
        self.num_images, self.size, self.task = int(num_images), int(size), task
        self.prevalence, self.seed = float(prevalence), int(seed)
        self.label_names = list(TASKS[task])

    @classmethod
    def keywords(cls, args) -> dict:
        return {"num_images": args.num_images, "size": args.phantom_size or args.image_size,
                "task": args.phantom_task, "prevalence": args.prevalence, "seed": args.seed}

    def items(self) -> Iterator[Item]:
        patients = set()
        for index in range(self.num_images):
            labels, boxes, patient_id = phantom_meta(self.seed, index, self.task, self.prevalence)
            patients.add(patient_id)
            yield Item(image_id=f"synthetic_{index:06d}", patient_id=patient_id, labels=labels,
                       image=PhantomImage(self.seed, index, self.size, self.task, self.prevalence),
                       boxes=boxes, split=None, origin="phantom")
        self.info = {
            "generator": "tfxr.data.phantom_drawing (procedural PA chest phantom)",
            "num_images": self.num_images,
            "num_patients": len(patients),
            "size": self.size,
            "task": self.task,
            "prevalence": self.prevalence,
            "seed": self.seed,
        }
