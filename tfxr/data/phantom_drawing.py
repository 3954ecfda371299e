"""The phantoms: procedurally drawn PA chest radiographs (tfxr's built-in data, ``--source
phantoms``; the reader is :class:`tfxr.data.sources.phantoms.PhantomReader`).

The phantom is the stand-in for acquired data when no real data set is at hand (tests,
demos, benchmarks).  Every image is a deterministic function of ``(seed, index)``: the
pixels are drawn on demand, in worker processes, by a picklable :class:`PhantomImage`,
while :func:`phantom_meta` gives the labels, boxes and patient id without drawing pixels.

Model
-----
* Images are grouped into patients of 1-3 images (index blocks of
  :data:`PATIENT_BLOCK`, partitioned at random).  Anatomy (thorax, lungs, ribs, heart,
  vessels...) and findings (labels, lesion layout) are seeded per *patient*; position,
  rotation, scale, depth of inspiration, exposure (brightness/contrast/gamma), blur and
  film noise are seeded per *image*.  A patient's images therefore look alike, which is
  what makes patient-wise splitting meaningful.
* Coordinates: the anatomy is described in "anatomy" units ``(u, v)`` with ``u`` to
  image-right and ``v`` down, the thorax filling roughly ``[-1, 1]^2``.  A per-image
  similarity transform maps anatomy to the centred image square ``[-1, 1]^2``.  As in a
  PA view the patient's left is on image-right (heart and aortic knob on image-right,
  stomach bubble under the image-right hemidiaphragm).
* Intensity: a "density" map (bright = dense) is composed additively, slightly blurred,
  mapped through a per-image window and gamma, then film noise is added.
* Findings have moderate contrast, sit at random positions inside the lung fields and
  are clipped to them, so no single pixel and no global brightness separates the
  classes, while a small CNN can learn them.

Names: ``anatomy`` (per patient), ``findings`` (per patient), ``view`` (per image) and
``density`` (the map being composed) are the four things every drawing step reads or
writes; lesions are :class:`Lesion` records with a named :class:`LesionKind`.

Only numpy, the standard library and :mod:`tfxr.errors` are imported here (no TensorFlow).
"""
from __future__ import annotations

import enum
import functools
import math
from dataclasses import dataclass

import numpy as np

from tfxr.errors import ConfigError

from .types import Box

__all__ = [
    "TASKS",
    "PATIENT_BLOCK",
    "phantom_meta",
    "Lesion",
    "LesionKind",
    "render_phantom",
    "PhantomImage",
]

TASKS: dict[str, list[str]] = {
    "tb": ["Tuberculosis"],
    "multilabel": ["Nodule", "Consolidation", "Effusion", "Cardiomegaly"],
}

#: Images are partitioned into patients within consecutive blocks of this many indices.
PATIENT_BLOCK = 6
#: Probabilities of a patient having 1, 2 or 3 images (before truncation at a block end).
_IMAGES_PER_PATIENT_P = (0.45, 0.35, 0.20)

# Stream tags for np.random.default_rng([seed, tag, ...]): one independent random
# stream per purpose, so that drawing more of one never shifts another.
_STREAM_PARTITION, _STREAM_ANATOMY, _STREAM_LABELS = 11, 12, 13
_STREAM_VIEW, _STREAM_FINDINGS, _STREAM_TEXTURE = 14, 15, 16
_TASK_CODE = {"tb": 1, "multilabel": 2}

# Density units: soft tissue of the thorax ~0.5, aerated lung removes ~0.36.
_LUNG_AIR = 0.36
_EDGE = 0.012  # softness of anatomical edges, anatomy units


# ----------------------------------------------------------------------------- helpers


def _smooth(x, width):
    """Smooth step from 0 (x <= -width/2) to 1 (x >= width/2); works on scalars and arrays."""
    s = np.clip(0.5 + np.asarray(x, dtype=np.float32) / np.float32(width), 0.0, 1.0)
    return s * s * (3.0 - 2.0 * s)


def _gauss_kernel(sigma: float) -> np.ndarray:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).astype(np.float32)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a 2-D float array (edge padding).  sigma in pixels."""
    if sigma <= 0.05:
        return img
    kernel = _gauss_kernel(sigma)
    height, width = img.shape
    # kernels wider than the image still work with edge padding
    radius = min(len(kernel) // 2, max(height, width))
    if len(kernel) != 2 * radius + 1:
        kernel = _trim(kernel, radius)
    padded = np.pad(img, ((radius, radius), (0, 0)), mode="edge")
    rows_done = np.zeros_like(img, dtype=np.float32)
    for offset, weight in enumerate(kernel):
        rows_done += weight * padded[offset : offset + height]
    padded = np.pad(rows_done, ((0, 0), (radius, radius)), mode="edge")
    out = np.zeros_like(rows_done)
    for offset, weight in enumerate(kernel):
        out += weight * padded[:, offset : offset + width]
    return out


def _trim(kernel: np.ndarray, radius: int) -> np.ndarray:
    centre = len(kernel) // 2
    trimmed = kernel[centre - radius : centre + radius + 1]
    return trimmed / trimmed.sum()


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ConfigError(f"unknown phantom task {task!r}; expected one of {sorted(TASKS)}")


def _check_args(seed: int, index: int, prevalence: float) -> None:
    if int(seed) != seed or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if int(index) != index or index < 0:
        raise ConfigError(f"index must be a non-negative integer, got {index!r}")
    if not 0.0 <= float(prevalence) <= 1.0:
        raise ConfigError(f"prevalence must be in [0, 1], got {prevalence!r}")


# ----------------------------------------------------------------------------- patients


@functools.lru_cache(maxsize=4096)
def _block_partition(seed: int, block: int) -> tuple[int, ...]:
    """Sizes (1..3) of the patients in one block of PATIENT_BLOCK consecutive indices."""
    rng = np.random.default_rng([seed, _STREAM_PARTITION, block])
    sizes: list[int] = []
    left = PATIENT_BLOCK
    while left > 0:
        size = int(rng.choice(3, p=_IMAGES_PER_PATIENT_P)) + 1
        size = min(size, left)
        sizes.append(size)
        left -= size
    return tuple(sizes)


def _patient_of(seed: int, index: int) -> int:
    """Index of the first image of ``index``'s patient (the patient's key)."""
    block, offset = divmod(index, PATIENT_BLOCK)
    start = 0
    for size in _block_partition(seed, block):
        if offset < start + size:
            return block * PATIENT_BLOCK + start
        start += size
    raise AssertionError("unreachable")


def _patient_id(first_index: int) -> str:
    return f"synthetic_p{first_index:06d}"


# ----------------------------------------------------------------------------- anatomy


@dataclass(frozen=True)
class _Anatomy:
    """One patient's body, in anatomy units.  Pairs are (patient right, patient left)
    = (image-left, image-right)."""

    thorax: float  # inner half-width of the rib cage at the lung bases
    medial: tuple[float, float]  # medial lung edge |u|
    apex: tuple[float, float]  # v of the lung apices
    costophrenic: tuple[float, float]  # v of the costophrenic angles (mid inspiration)
    dome: tuple[float, float]  # hemidiaphragm dome heights
    apex_shift: float  # medial shift of the apex centre
    apex_roundness: float  # exponent of the apex outline
    cardiothoracic_ratio: float
    heart_height: float  # top of the cardiac silhouette to the diaphragm
    heart_tilt: float  # shape exponent of the right heart border
    heart_right_fraction: float  # part of the heart width to image-left of the midline
    aortic_knob: float  # aortic knob radius
    body_half_width: float  # half-width of the body at the lung bases
    neck_half_width: float
    shoulder_v: float
    rib_first: float  # v of the first posterior rib at the spine
    rib_step: float
    rib_growth: float
    rib_curve: float
    rib_rise: float
    rib_thickness: float
    rib_count: int
    clavicle_v: float
    clavicle_slope: float
    spine_half_width: float
    trachea_half_width: float
    stomach_bubble: float  # stomach bubble size (0 = none)
    tissue: float  # soft tissue density scale


def _anatomy(seed: int, patient: int) -> _Anatomy:
    rng = np.random.default_rng([seed, _STREAM_ANATOMY, patient])
    uniform = rng.uniform
    # Keyword arguments are evaluated in order: the order of the draws is part of the model.
    thorax = uniform(0.70, 0.80)
    apex = uniform(-0.80, -0.70)
    costophrenic = uniform(0.46, 0.60)
    return _Anatomy(
        thorax=thorax,
        medial=(uniform(0.07, 0.11), uniform(0.08, 0.12)),
        apex=(apex + uniform(-0.03, 0.03), apex + uniform(-0.03, 0.03)),
        costophrenic=(costophrenic - uniform(0.0, 0.06), costophrenic),
        dome=(uniform(0.10, 0.18), uniform(0.09, 0.16)),
        apex_shift=uniform(0.04, 0.12),
        apex_roundness=uniform(1.6, 2.6),
        cardiothoracic_ratio=float(np.clip(rng.normal(0.44, 0.035), 0.35, 0.50)),
        heart_height=uniform(0.42, 0.52),
        heart_tilt=uniform(0.45, 0.75),
        heart_right_fraction=uniform(0.28, 0.40),
        aortic_knob=uniform(0.045, 0.07),
        body_half_width=thorax + uniform(0.10, 0.16),
        neck_half_width=uniform(0.20, 0.26),
        shoulder_v=uniform(-1.08, -0.98),
        rib_first=uniform(-0.86, -0.80),
        rib_step=uniform(0.105, 0.125),
        rib_growth=uniform(0.02, 0.06),
        rib_curve=uniform(0.75, 0.95),
        rib_rise=uniform(0.28, 0.40),
        rib_thickness=uniform(0.40, 0.50),
        rib_count=int(rng.integers(9, 11)),
        clavicle_v=apex + uniform(0.14, 0.20),
        clavicle_slope=uniform(0.18, 0.30),
        spine_half_width=uniform(0.055, 0.07),
        trachea_half_width=uniform(0.035, 0.045),
        stomach_bubble=uniform(0.05, 0.09) if rng.random() < 0.6 else 0.0,
        tissue=uniform(0.95, 1.05),
    )


def _side_sign(side: int) -> float:
    """-1 for side 0 (image-left, the patient's right), +1 for side 1."""
    return -1.0 if side == 0 else 1.0


@dataclass(frozen=True)
class _LungGeometry:
    """One lung at a given inspiration, distances measured away from the midline."""

    medial: float
    lateral: float
    base_half_width: float
    base_centre: float
    apex: float
    costophrenic: float


def _lung_geometry(anatomy: _Anatomy, side: int, inspiration: float) -> _LungGeometry:
    medial = anatomy.medial[side]
    lateral = anatomy.thorax + 0.02 * inspiration
    return _LungGeometry(
        medial=medial,
        lateral=lateral,
        base_half_width=0.5 * (lateral - medial),
        base_centre=0.5 * (lateral + medial),
        apex=anatomy.apex[side],
        costophrenic=anatomy.costophrenic[side] + 0.05 * inspiration,
    )


def _lung_mask(anatomy: _Anatomy, side: int, u, v, inspiration: float = 0.0, edge: float = _EDGE):
    """Soft mask (0..1) of one lung field at anatomy coordinates (u, v)."""
    away = _side_sign(side) * np.asarray(u, dtype=np.float32)  # distance from the midline
    v = np.asarray(v, dtype=np.float32)
    lung = _lung_geometry(anatomy, side, inspiration)
    t = np.clip((v - lung.apex) / (lung.costophrenic - lung.apex), 0.0, 1.0)  # 0 apex .. 1 base
    half_width = lung.base_half_width * np.sqrt(1.0 - (1.0 - t) ** anatomy.apex_roundness)
    centre = lung.base_centre - anatomy.apex_shift * (1.0 - t) ** 1.5
    inside = half_width - np.abs(away - centre)
    dome = lung.costophrenic - anatomy.dome[side] * np.clip(
        1.0 - ((away - lung.base_centre) / (lung.base_half_width * 1.05)) ** 2, 0.0, 1.0)
    return _smooth(inside, edge) * _smooth(dome - v, edge) * _smooth(v - lung.apex, edge)


@dataclass(frozen=True)
class _Heart:
    """Heart silhouette limits: top/bottom v, image-left/right borders u at the base."""

    top: float
    bottom: float
    left: float  # image-left border (patient's right atrium)
    right: float  # image-right border (patient's left ventricle, apex)


def _heart(anatomy: _Anatomy, cardiothoracic_ratio: float) -> _Heart:
    width = cardiothoracic_ratio * 2.0 * anatomy.thorax
    left = -anatomy.heart_right_fraction * width
    bottom = anatomy.costophrenic[1] - 0.6 * anatomy.dome[1]  # the apex rests on the left hemidiaphragm
    return _Heart(top=bottom - anatomy.heart_height, bottom=bottom, left=left, right=left + width)


def _heart_mask(anatomy: _Anatomy, cardiothoracic_ratio: float, u, v):
    """Heart shadow: convex borders widening from the mediastinum down to the diaphragm."""
    heart = _heart(anatomy, cardiothoracic_ratio)
    mediastinum = 0.09
    t = np.clip((v - heart.top) / (heart.bottom - heart.top), 0.0, 1.0)  # 1 from the base down
    left_border = -(mediastinum + (-heart.left - mediastinum) * np.sin(0.5 * np.pi * t ** anatomy.heart_tilt))
    right_border = mediastinum + (heart.right - mediastinum) * np.sin(
        0.5 * np.pi * np.minimum(t / 0.85, 1.0) ** 0.8)
    return _smooth(u - left_border, _EDGE) * _smooth(right_border - u, _EDGE) * _smooth(v - heart.top, 0.05)


# ----------------------------------------------------------------------------- views


@dataclass(frozen=True)
class _View:
    """One acquisition: patient placement, breath and exposure."""

    scale: float
    rotation: float  # radians
    shift_x: float
    shift_y: float
    inspiration: float  # -1 (expiration) .. 1 (deep inspiration)
    window_low: float
    window_high: float
    gamma: float
    noise: float
    blur: float  # relative to image size
    heel: float  # anode heel effect strength
    heel_direction: float  # radians


def _view(seed: int, index: int) -> _View:
    rng = np.random.default_rng([seed, _STREAM_VIEW, index])
    uniform = rng.uniform
    return _View(
        scale=uniform(0.86, 1.0),
        rotation=math.radians(float(np.clip(rng.normal(0.0, 2.0), -5.0, 5.0))),
        shift_x=uniform(-0.07, 0.07),
        shift_y=uniform(-0.03, 0.07),
        inspiration=uniform(-1.0, 1.0),
        window_low=uniform(-0.03, 0.05),
        window_high=uniform(0.74, 0.88),
        gamma=math.exp(uniform(-0.25, 0.25)),
        noise=uniform(0.008, 0.03),
        blur=uniform(0.0015, 0.005),
        heel=uniform(-0.06, 0.06),
        heel_direction=uniform(0.0, 2 * math.pi),
    )


def _to_image(view: _View, u, v):
    """Anatomy -> normalised image coordinates (x, y) in 0..1."""
    cos, sin = math.cos(view.rotation), math.sin(view.rotation)
    px = view.scale * (cos * u - sin * v) + view.shift_x
    py = view.scale * (sin * u + cos * v) + view.shift_y
    return 0.5 * (px + 1.0), 0.5 * (py + 1.0)


def _to_anatomy(view: _View, px, py):
    """Centred image coordinates (-1..1) -> anatomy."""
    cos, sin = math.cos(view.rotation), math.sin(view.rotation)
    x = (px - view.shift_x) / view.scale
    y = (py - view.shift_y) / view.scale
    return cos * x + sin * y, -sin * x + cos * y


def _box(view: _View, label: int, umin, vmin, umax, vmax) -> Box:
    """The image-space box around an anatomy-space rectangle (rotated, then clipped)."""
    us = np.array([umin, umax, umin, umax], dtype=np.float64)
    vs = np.array([vmin, vmin, vmax, vmax], dtype=np.float64)
    x, y = _to_image(view, us, vs)
    x0, x1 = float(np.clip(x.min(), 0, 1)), float(np.clip(x.max(), 0, 1))
    y0, y1 = float(np.clip(y.min(), 0, 1)), float(np.clip(y.max(), 0, 1))
    return Box(label=label, xmin=round(x0, 5), ymin=round(y0, 5), xmax=round(x1, 5), ymax=round(y1, 5))


# ----------------------------------------------------------------------------- findings


class LesionKind(str, enum.Enum):
    """How a lesion is drawn."""

    BLOB = "blob"  # Gaussian blob (patchy opacity, infiltrate)
    NODULE = "nodule"  # smooth disc with a slightly brighter dome
    CAVITY = "cavity"  # ring-shaped wall around a lucent centre
    HAZE = "haze"  # broad Gaussian haze (ground glass): drawn like a blob, tighter box


@dataclass(frozen=True)
class Lesion:
    """One opacity at anatomy coordinates (u, v)."""

    kind: LesionKind
    u: float
    v: float
    radius: float
    amplitude: float  # added density at the centre
    wall: float = 0.0  # cavity wall thickness (CAVITY only)

    def reach(self) -> float:
        """Distance from the centre that the lesion's box covers."""
        return (1.1 if self.kind is LesionKind.HAZE else 1.6) * self.radius + 2.0 * self.wall


@dataclass(frozen=True)
class _Cluster:
    """Lesions that make up one finding; one box per cluster."""

    label: int
    lesions: tuple[Lesion, ...]

    def extent(self) -> tuple[float, float, float, float]:
        reaches = [lesion.reach() for lesion in self.lesions]
        umin = min(lesion.u - reach for lesion, reach in zip(self.lesions, reaches))
        umax = max(lesion.u + reach for lesion, reach in zip(self.lesions, reaches))
        vmin = min(lesion.v - reach for lesion, reach in zip(self.lesions, reaches))
        vmax = max(lesion.v + reach for lesion, reach in zip(self.lesions, reaches))
        return umin, vmin, umax, vmax


@dataclass(frozen=True)
class _Effusion:
    side: int
    height: float  # fluid height above the costophrenic angle
    opacity: float


@dataclass(frozen=True)
class _Findings:
    labels: tuple[float, ...]
    clusters: tuple[_Cluster, ...]
    effusions: tuple[_Effusion, ...]
    cardiothoracic_ratio: float


def _sample_in_lung(rng, anatomy: _Anatomy, side: int, t_range, margin: float, count: int = 1,
                    cardiothoracic_ratio: float | None = None):
    """Points inside the (expiration) lung field within a band of relative height t."""
    lung = _lung_geometry(anatomy, side, -1.0)
    sign = _side_sign(side)
    ratio = anatomy.cardiothoracic_ratio if cardiothoracic_ratio is None else cardiothoracic_ratio
    points = []
    for _ in range(200):
        t = rng.uniform(*t_range)
        v = lung.apex + t * (lung.costophrenic - lung.apex)
        u = sign * rng.uniform(lung.medial, lung.lateral)
        # inside with margin: test the mask at the point and 4 neighbours
        du = np.array([0, margin, -margin, 0, 0], dtype=np.float32)
        dv = np.array([0, 0, 0, margin, -margin], dtype=np.float32)
        in_lung = _lung_mask(anatomy, side, u + du, v + dv, inspiration=-1.0)
        in_heart = _heart_mask(anatomy, ratio, np.float32(u), np.float32(v))
        if in_lung.min() > 0.9 and in_heart < 0.05:
            points.append((float(u), float(v)))
            if len(points) == count:
                break
    if not points:  # pragma: no cover - the lung is large enough that this never happens
        points.append((sign * lung.base_centre, lung.apex + 0.4 * (lung.costophrenic - lung.apex)))
    return points


def _cluster_around(rng, anatomy, side, centre_u, centre_v, label, count_range, radius_range, spread,
                    amplitude_range, kind=LesionKind.BLOB) -> _Cluster:
    """``count_range`` lesions scattered (normal, ``spread``) around a centre, kept in the lung."""
    lesions = []
    for _ in range(int(rng.integers(*count_range))):
        for _try in range(20):
            u = centre_u + rng.normal(0.0, spread)
            v = centre_v + rng.normal(0.0, spread)
            if _lung_mask(anatomy, side, np.float32(u), np.float32(v), inspiration=-1.0) > 0.7:
                break
        else:
            u, v = centre_u, centre_v
        radius, amplitude = float(rng.uniform(*radius_range)), float(rng.uniform(*amplitude_range))
        lesions.append(Lesion(kind, float(u), float(v), radius, amplitude))
    return _Cluster(label, tuple(lesions))


def _tb_findings(rng, anatomy: _Anatomy, positive: bool) -> tuple[_Cluster, ...]:
    if not positive:
        return ()
    sides = [int(rng.integers(0, 2))]
    if rng.random() < 0.4:
        sides.append(1 - sides[0])
    clusters = []
    for side in sides:
        upper = rng.random() < 0.85
        t_range = (0.04, 0.42) if upper else (0.40, 0.70)
        (centre_u, centre_v), = _sample_in_lung(rng, anatomy, side, t_range, margin=0.05)
        if rng.random() < 0.5:  # patchy opacity
            core = _cluster_around(rng, anatomy, side, centre_u, centre_v, 0, (5, 11), (0.03, 0.06), 0.07,
                                   (0.05, 0.09))
        else:  # nodular infiltrates
            core = _cluster_around(rng, anatomy, side, centre_u, centre_v, 0, (8, 18), (0.012, 0.022), 0.07,
                                   (0.06, 0.10))
        # faint surrounding haze (ground glass)
        lesions = [Lesion(LesionKind.HAZE, centre_u, centre_v, float(rng.uniform(0.09, 0.14)),
                          float(rng.uniform(0.045, 0.07)))]
        lesions += list(core.lesions)
        if rng.random() < 0.3:  # cavity: a ring-shaped opacity with a lucent centre
            radius = float(rng.uniform(0.025, 0.045))
            lesions.append(Lesion(LesionKind.CAVITY, centre_u, centre_v, radius, float(rng.uniform(0.10, 0.15)),
                                  wall=float(rng.uniform(0.008, 0.013))))
        clusters.append(_Cluster(0, tuple(lesions)))
    return tuple(clusters)


def _findings(seed: int, patient: int, task: str, prevalence: float, anatomy: _Anatomy) -> _Findings:
    names = TASKS[task]
    code = _TASK_CODE[task]
    draws = np.random.default_rng([seed, _STREAM_LABELS, patient, code]).random(len(names))
    labels = tuple(float(d < prevalence) for d in draws)
    clusters: list[_Cluster] = []
    effusions: list[_Effusion] = []
    ratio = anatomy.cardiothoracic_ratio

    def stream(label: int):
        return np.random.default_rng([seed, _STREAM_FINDINGS, patient, code, label])

    if task == "tb":
        clusters.extend(_tb_findings(stream(0), anatomy, labels[0] > 0))
    else:
        nodule, consolidation, effusion, cardiomegaly = range(4)
        if labels[cardiomegaly]:  # drawn first: lesions are placed outside the heart
            ratio = float(stream(cardiomegaly).uniform(0.52, 0.63))
        if labels[nodule]:
            rng = stream(nodule)
            for _ in range(1 if rng.random() < 0.8 else 2):
                side = int(rng.integers(0, 2))
                diameter = rng.uniform(0.02, 0.05) * 2.2  # as a fraction of the width
                (u, v), = _sample_in_lung(rng, anatomy, side, (0.1, 0.85), margin=diameter,
                                          cardiothoracic_ratio=ratio)
                lesion = Lesion(LesionKind.NODULE, u, v, 0.5 * diameter, float(rng.uniform(0.20, 0.30)))
                clusters.append(_Cluster(nodule, (lesion,)))
        if labels[consolidation]:
            rng = stream(consolidation)
            side = int(rng.integers(0, 2))
            t_range = (0.45, 0.9) if rng.random() < 0.6 else (0.1, 0.6)
            (centre_u, centre_v), = _sample_in_lung(rng, anatomy, side, t_range, margin=0.08,
                                                    cardiothoracic_ratio=ratio)
            core = _cluster_around(rng, anatomy, side, centre_u, centre_v, consolidation, (5, 10), (0.04, 0.08),
                                   0.07, (0.05, 0.08))
            haze = Lesion(LesionKind.HAZE, centre_u, centre_v, float(rng.uniform(0.11, 0.16)),
                          float(rng.uniform(0.05, 0.08)))
            clusters.append(_Cluster(consolidation, (haze,) + core.lesions))
        if labels[effusion]:
            rng = stream(effusion)
            sides = [int(rng.integers(0, 2))]
            if rng.random() < 0.25:
                sides.append(1 - sides[0])
            for side in sides:
                effusions.append(_Effusion(side, float(rng.uniform(0.16, 0.38)), float(rng.uniform(0.55, 0.9))))
    return _Findings(labels, tuple(clusters), tuple(effusions), ratio)


def _fluid_level(lung: _LungGeometry, height: float) -> float:
    """v of the fluid level at the lateral chest wall (top of the meniscus)."""
    return lung.costophrenic - height


def _effusion_density(anatomy: _Anatomy, effusion: _Effusion, inspiration: float, u, v):
    away = _side_sign(effusion.side) * u
    lung = _lung_geometry(anatomy, effusion.side, inspiration)
    # meniscus: the surface climbs towards the lateral wall
    x = np.clip((away - lung.medial) / (lung.lateral - lung.medial), 0.0, 1.0)
    surface = _fluid_level(lung, effusion.height) + 0.4 * effusion.height * (1.0 - x) ** 1.5
    return _smooth(v - surface, 0.03)


# ----------------------------------------------------------------------------- public API


def _patient_state(seed: int, index: int, task: str, prevalence: float):
    _check_task(task)
    _check_args(seed, index, prevalence)
    patient = _patient_of(int(seed), int(index))
    return (patient,) + _patient(int(seed), patient, task, float(prevalence))


@functools.lru_cache(maxsize=1024)
def _patient(seed: int, patient: int, task: str, prevalence: float) -> tuple[_Anatomy, _Findings]:
    anatomy = _anatomy(seed, patient)
    return anatomy, _findings(seed, patient, task, prevalence, anatomy)


def _boxes(anatomy: _Anatomy, findings: _Findings, view: _View, task: str) -> tuple[Box, ...]:
    boxes = [_box(view, cluster.label, *cluster.extent()) for cluster in findings.clusters]
    if task == "multilabel":
        effusion_label, cardiomegaly_label = 2, 3
        for effusion in findings.effusions:
            sign = _side_sign(effusion.side)
            lung = _lung_geometry(anatomy, effusion.side, view.inspiration)
            inner = lung.medial + 0.25 * (lung.lateral - lung.medial)
            us = sorted((sign * inner, sign * (lung.lateral + 0.02)))
            boxes.append(_box(view, effusion_label, us[0], _fluid_level(lung, effusion.height) - 0.02, us[1],
                              lung.costophrenic + 0.03))
        if findings.labels[cardiomegaly_label]:
            heart = _heart(anatomy, findings.cardiothoracic_ratio)
            boxes.append(_box(view, cardiomegaly_label, heart.left - 0.02,
                              heart.top + 0.1 * (heart.bottom - heart.top), heart.right + 0.02, heart.bottom + 0.06))
    return tuple(box for box in boxes if box.xmax > box.xmin and box.ymax > box.ymin)


def phantom_meta(
    seed: int, index: int, task: str = "tb", prevalence: float = 0.35
) -> tuple[tuple[float, ...], tuple[Box, ...], str]:
    """Labels, boxes and patient id of phantom ``index`` -- cheap, no pixels drawn.

    Boxes are in normalised image coordinates (0..1); ``Box.label`` indexes
    ``TASKS[task]``.  There is one box per lesion cluster (Tuberculosis, Nodule,
    Consolidation), per effusion side and one around an enlarged heart.
    """
    patient, anatomy, findings = _patient_state(seed, index, task, prevalence)
    return findings.labels, _boxes(anatomy, findings, _view(seed, index), task), _patient_id(patient)


def lung_field_mask(seed: int, index: int, size: int, task: str = "tb", prevalence: float = 0.35) -> np.ndarray:
    """Boolean (size, size) mask of phantom ``index``'s lung fields in its own view --
    where a finding can lie (used by the localization's random-box baseline)."""
    _patient, anatomy, _findings = _patient_state(seed, index, task, prevalence)
    view = _view(seed, index)
    centres = (np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0
    u, v = _to_anatomy(view, *np.meshgrid(centres, centres))
    lungs = sum(_lung_mask(anatomy, side, u.astype(np.float32), v.astype(np.float32), view.inspiration)
                for side in (0, 1))
    return np.asarray(lungs) > 0.5


# ----------------------------------------------------------------------------- drawing


@functools.lru_cache(maxsize=64)
def _texture(seed: int, patient: int, grid: int = 112) -> np.ndarray:
    """Per-patient lung texture (vessel markings + mottle) on a grid over [-1.1, 1.1]^2.

    Vessels are binary trees growing from the hila, drawn by splatting points along the
    branches onto the grid (vectorised level by level) and blurring.
    """
    rng = np.random.default_rng([seed, _STREAM_TEXTURE, patient])
    step = 2.2 / (grid - 1)
    trunks = 7
    # level 0: trunks from each hilum fanning out from up-lateral to down-lateral
    side = np.repeat([-1.0, 1.0], trunks)
    start_u = side * rng.uniform(0.17, 0.22, 2).repeat(trunks)
    start_v = rng.uniform(-0.12, 0.0, 2).repeat(trunks)
    fan = np.tile(np.linspace(-1.2, 1.1, trunks), 2) + rng.normal(0.0, 0.12, 2 * trunks)
    angle = np.arctan2(np.sin(fan), side * np.cos(fan))
    length = rng.uniform(0.12, 0.18, 2 * trunks)
    width = np.ones(2 * trunks)
    point_us, point_vs, point_widths = [], [], []
    points_per_branch = 24
    t = (np.arange(1, points_per_branch + 1) / points_per_branch)[None, :]
    for _level in range(4):
        bend = rng.normal(0.0, 0.15, len(angle))[:, None]
        branch_angle = angle[:, None] + bend * t
        branch_u = start_u[:, None] + np.cumsum(np.cos(branch_angle), axis=1) * (length / points_per_branch)[:, None]
        branch_v = start_v[:, None] + np.cumsum(np.sin(branch_angle), axis=1) * (length / points_per_branch)[:, None]
        point_us.append(branch_u.ravel())
        point_vs.append(branch_v.ravel())
        point_widths.append(np.repeat(width, points_per_branch))
        # two children per branch, starting where it ends
        branches = len(angle)
        start_u, start_v = np.repeat(branch_u[:, -1], 2), np.repeat(branch_v[:, -1], 2)
        angle = (np.repeat(branch_angle[:, -1], 2)
                 + np.tile([-1.0, 1.0], branches) * rng.uniform(0.25, 0.55, 2 * branches))
        length = np.repeat(length, 2) * rng.uniform(0.65, 0.85, 2 * branches)
        width = np.repeat(width, 2) * 0.72
    u = np.concatenate(point_us)
    v = np.concatenate(point_vs)
    weights = np.concatenate(point_widths)
    # bilinear splatting of the points onto the grid
    gx = (u + 1.1) / step
    gy = (v + 1.1) / step
    on_grid = (gx >= 0) & (gx < grid - 1) & (gy >= 0) & (gy < grid - 1)
    gx, gy, weights = gx[on_grid], gy[on_grid], weights[on_grid]
    x0 = gx.astype(np.int64)
    y0 = gy.astype(np.int64)
    fx = gx - x0
    fy = gy - y0
    flat = np.zeros(grid * grid)
    corners = ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy))
    for dy, dx, corner_weight in corners:
        flat += np.bincount((y0 + dy) * grid + x0 + dx, weights=weights * corner_weight, minlength=grid * grid)
    vessels = gaussian_blur(flat.reshape(grid, grid).astype(np.float32), 0.7)
    vessels /= max(float(vessels.max()), 1e-6)
    mottle = gaussian_blur(rng.normal(0.0, 1.0, (grid, grid)).astype(np.float32), 1.5)
    mottle /= max(float(np.abs(mottle).max()), 1e-6)
    texture = 0.13 * np.sqrt(vessels) + 0.03 * mottle
    texture.setflags(write=False)
    return texture


def _sample_grid(texture: np.ndarray, u, v) -> np.ndarray:
    """Bilinear lookup of a :func:`_texture` grid at anatomy coordinates."""
    grid = texture.shape[0]
    step = 2.2 / (grid - 1)
    gx = np.clip((u + 1.1) / step, 0, grid - 1.001)
    gy = np.clip((v + 1.1) / step, 0, grid - 1.001)
    x0 = gx.astype(np.int64)
    y0 = gy.astype(np.int64)
    fx = (gx - x0).astype(np.float32)
    fy = (gy - y0).astype(np.float32)
    return (
        texture[y0, x0] * (1 - fx) * (1 - fy)
        + texture[y0, x0 + 1] * fx * (1 - fy)
        + texture[y0 + 1, x0] * (1 - fx) * fy
        + texture[y0 + 1, x0 + 1] * fx * fy
    )


def _ribs(anatomy: _Anatomy, inspiration: float, u, v, inner: float, outer: float, posterior: bool):
    """Rib band intensity (0..1) at anatomy coordinates, between |u| = inner and outer."""
    distance = np.abs(u)
    step = anatomy.rib_step * (1.0 + 0.04 * inspiration)
    if posterior:
        # from the spine the rib first rises a little, then arcs down to the lateral wall
        curve = -anatomy.rib_rise * distance + anatomy.rib_curve * distance * distance
        first = anatomy.rib_first
        thickness = anatomy.rib_thickness
    else:
        # anterior ribs run from the lateral wall downwards towards the sternum
        curve = 0.45 * (outer - distance) - 0.25 * (outer - distance) ** 2
        first = anatomy.rib_first + 0.12
        thickness = anatomy.rib_thickness * 0.8
    z = (v - curve - first) / step
    growth = anatomy.rib_growth
    phase = (np.sqrt(np.maximum(1.0 + 2.0 * growth * z, 1e-6)) - 1.0) / growth  # spacing widens downwards
    rib_number = np.floor(phase)
    across = (phase - rib_number) / thickness  # 0..1 across a rib
    inside = (across < 1.0) & (rib_number >= 0) & (rib_number < anatomy.rib_count)
    band = np.sin(np.pi * np.clip(across, 0.0, 1.0))
    # a bone band with a brighter cortex at its edges
    profile = np.where(inside, np.sqrt(np.maximum(band, 0.0)) * (0.75 + 0.25 * (1.0 - band)), 0.0)
    return profile * _smooth(distance - inner, 0.04) * _smooth(outer - distance, 0.04)


@dataclass(frozen=True)
class _Canvas:
    """The pixel grid of one image in anatomy coordinates, with what every drawing step reads."""

    anatomy: _Anatomy
    view: _View
    size: int
    px: np.ndarray  # centred image coordinates, -1..1
    py: np.ndarray
    u: np.ndarray  # anatomy coordinates of each pixel (float32)
    v: np.ndarray
    abs_u: np.ndarray  # distance from the midline

    @property
    def inspiration(self) -> float:
        return self.view.inspiration


def _canvas(anatomy: _Anatomy, view: _View, size: int) -> _Canvas:
    centres = (np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0
    px, py = np.meshgrid(centres, centres)
    u, v = _to_anatomy(view, px, py)
    u, v = u.astype(np.float32), v.astype(np.float32)
    return _Canvas(anatomy, view, size, px, py, u, v, np.abs(u))


def _draw_body(canvas: _Canvas) -> tuple[np.ndarray, np.ndarray]:
    """Soft tissue: neck, sloping shoulders, thorax, waist, arms and humeral heads.

    Returns (density, body mask)."""
    anatomy, u, v, abs_u = canvas.anatomy, canvas.u, canvas.v, canvas.abs_u
    body_width = anatomy.body_half_width
    shoulder = np.clip((v - anatomy.shoulder_v) / 0.30, 0.0, 1.0)
    half = anatomy.neck_half_width + (body_width + 0.04 - anatomy.neck_half_width) * shoulder ** 0.45 * (
        v > anatomy.shoulder_v)
    half = half - 0.05 * _smooth(v - 0.2, 0.8)  # waist
    body = _smooth(half - abs_u, 0.025)
    thickness = np.sqrt(np.clip(1.0 - (u / (half + 0.04)) ** 2, 0.0, 1.0))
    density = body * (0.30 + 0.24 * thickness) * anatomy.tissue
    # arms beside the thorax (separated by the axilla) with the humeral heads
    arm_inner, arm_outer = body_width + 0.07, body_width + 0.30
    arm = (_smooth(abs_u - arm_inner, 0.04) * _smooth(arm_outer - abs_u, 0.04)
           * _smooth(v - (anatomy.shoulder_v + 0.14), 0.08))
    density = density + 0.30 * arm
    for sign in (-1.0, 1.0):
        head_u, head_v = sign * (body_width + 0.10), anatomy.shoulder_v + 0.22
        distance = np.sqrt((u - head_u) ** 2 + ((v - head_v) / 1.15) ** 2)
        density = density + 0.12 * _smooth(0.12 - distance, 0.02)
    return density, body


@dataclass(frozen=True)
class _Chest:
    """Masks the later steps need: both lungs, the heart, and the aerated lung actually seen."""

    lungs: np.ndarray
    heart: np.ndarray
    aortic_knob: np.ndarray
    visible_lung: np.ndarray  # lungs minus heart and aortic knob
    air: np.ndarray  # density the air removes where the lung is seen


def _chest(canvas: _Canvas, cardiothoracic_ratio: float) -> _Chest:
    anatomy, u, v, abs_u, inspiration = canvas.anatomy, canvas.u, canvas.v, canvas.abs_u, canvas.inspiration
    lungs = _lung_mask(anatomy, 0, u, v, inspiration) + _lung_mask(anatomy, 1, u, v, inspiration)
    heart = _heart_mask(anatomy, cardiothoracic_ratio, u, v)
    knob_distance = np.sqrt((u - (anatomy.medial[1] + 0.03)) ** 2 + (v - (anatomy.apex[1] + 0.38)) ** 2)
    knob = _smooth(anatomy.aortic_knob - knob_distance, _EDGE)
    visible_lung = lungs * (1.0 - heart) * (1.0 - knob)
    # lungs are slightly darker laterally and at the apices, hila denser
    t = np.clip((v - anatomy.apex[0]) / (anatomy.costophrenic[0] - anatomy.apex[0]), 0.0, 1.0)
    air = _LUNG_AIR * (0.9 + 0.12 * _smooth(abs_u - 0.35, 0.4) - 0.05 * t)
    return _Chest(lungs, heart, knob, visible_lung, air)


def _draw_lungs(density, canvas: _Canvas, chest: _Chest, effusions, texture: np.ndarray):
    """Aerated lung, effusions (bright fluid with a meniscus), hila and lung markings."""
    u, v = canvas.u, canvas.v
    density = density - chest.air * chest.visible_lung
    for effusion in effusions:
        density = density + effusion.opacity * chest.air * chest.visible_lung * _effusion_density(
            canvas.anatomy, effusion, canvas.inspiration, u, v)
    for sign in (-1.0, 1.0):
        hilum_distance = np.sqrt(((u - sign * 0.17) / 0.9) ** 2 + ((v + 0.02) / 1.8) ** 2)
        density = density + 0.05 * _smooth(0.12 - hilum_distance, 0.16) * chest.visible_lung
    return density + _sample_grid(texture, u, v) * chest.visible_lung


def _draw_mediastinum(density, canvas: _Canvas, chest: _Chest):
    """Mediastinum, heart, spine, trachea and the stomach bubble."""
    anatomy, u, v, abs_u, inspiration = canvas.anatomy, canvas.u, canvas.v, canvas.abs_u, canvas.inspiration
    below = _smooth(v - (anatomy.costophrenic[1] - anatomy.dome[1] + 0.05 * inspiration), 0.06)  # under the diaphragm
    density = density + 0.04 * chest.heart * (1.0 - below) + 0.03 * chest.aortic_knob
    density = density + 0.05 * _smooth(0.13 - abs_u, 0.05) * _smooth(0.55 - v, 0.5)
    vertebrae = 0.5 + 0.5 * np.cos(2 * np.pi * (v - anatomy.rib_first) / (anatomy.rib_step * 0.95))
    spine = _smooth(anatomy.spine_half_width - abs_u, 0.015) * (0.025 + 0.025 * vertebrae)
    density = density + spine * _smooth(v + 1.05, 0.1) * (1.0 - 0.6 * below)
    trachea = _smooth(anatomy.trachea_half_width - np.abs(u + 0.01 * (v + 0.4)), 0.01) * _smooth(-0.38 - v, 0.06)
    density = density - 0.07 * trachea * _smooth(v - anatomy.shoulder_v + 0.05, 0.05)
    bubble = anatomy.stomach_bubble
    if bubble > 0:
        bubble_u = 0.55 * anatomy.thorax + 0.1
        bubble_v = anatomy.costophrenic[1] - 0.5 * anatomy.dome[1] + 0.05 * inspiration + bubble + 0.03
        distance = np.sqrt(((u - bubble_u) / 1.4) ** 2 + (v - bubble_v) ** 2)
        density = density - 0.12 * _smooth(bubble - distance, 0.02) * _smooth(v - (bubble_v - 0.2 * bubble), 0.01)
    return density


def _draw_bones(density, canvas: _Canvas, chest: _Chest, body: np.ndarray):
    """Posterior and anterior ribs, clavicles."""
    anatomy, u, v, inspiration = canvas.anatomy, canvas.u, canvas.v, canvas.inspiration
    rib_outer = anatomy.thorax + 0.08
    ribs = (_ribs(anatomy, inspiration, u, v, 0.06, rib_outer, True)
            + 0.45 * _ribs(anatomy, inspiration, u, v, 0.38, rib_outer, False))
    density = density + ribs * body * (0.025 + 0.07 * np.clip(chest.lungs, 0.0, 1.0)) * (1.0 - 0.5 * chest.heart)
    for sign in (-1.0, 1.0):
        away = sign * u
        x = np.clip((away - 0.08) / 0.55, 0.0, 1.0)
        centre_v = anatomy.clavicle_v - anatomy.clavicle_slope * (away - 0.08) + 0.012 * np.sin(2.0 * np.pi * x)
        clavicle = _smooth(0.026 + 0.012 * away - np.abs(v - centre_v), 0.014) * _smooth(away - 0.07, 0.04)
        clavicle = clavicle * _smooth(0.66 - away, 0.08)
        density = density + 0.09 * clavicle
    return density


def _draw_lesions(density, canvas: _Canvas, chest: _Chest, clusters) -> np.ndarray:
    """Findings, clipped to the lung fields (and faded over the heart)."""
    lesion_density = np.zeros_like(density)
    for cluster in clusters:
        for lesion in cluster.lesions:
            _add_lesion(lesion_density, canvas, lesion)
    return density + lesion_density * np.clip(chest.lungs * (1.0 - chest.heart * 0.7), 0.0, 1.0)


def _add_lesion(lesion_density: np.ndarray, canvas: _Canvas, lesion: Lesion) -> None:
    """Add one lesion to ``lesion_density``, evaluated only in its pixel window."""
    size, view = canvas.size, canvas.view
    x, y = _to_image(view, lesion.u, lesion.v)
    reach = (3.2 * lesion.radius + lesion.wall * 2) * view.scale * size / 2.0 + 2
    centre_x, centre_y = x * size, y * size
    x0, x1 = max(0, int(centre_x - reach)), min(size, int(centre_x + reach) + 1)
    y0, y1 = max(0, int(centre_y - reach)), min(size, int(centre_y + reach) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    du = canvas.u[y0:y1, x0:x1] - lesion.u
    dv = canvas.v[y0:y1, x0:x1] - lesion.v
    distance = np.sqrt(du * du + dv * dv)
    radius, amplitude, wall = lesion.radius, lesion.amplitude, lesion.wall
    window = lesion_density[y0:y1, x0:x1]
    if lesion.kind in (LesionKind.BLOB, LesionKind.HAZE):
        window += amplitude * np.exp(-0.5 * (distance / radius) ** 2)
    elif lesion.kind is LesionKind.NODULE:
        dome = np.sqrt(np.clip(1 - (distance / radius) ** 2, 0, 1))
        window += amplitude * _smooth(radius - distance, 0.35 * radius) * (0.8 + 0.2 * dome)
    else:  # CAVITY: a bright wall around a slightly lucent centre
        wall_profile = np.exp(-0.5 * ((distance - radius) / wall) ** 2)
        window += amplitude * wall_profile - 0.05 * _smooth(radius - wall - distance, wall)


def _expose(density, canvas: _Canvas, rng) -> np.ndarray:
    """Acquisition: blur, window/gamma, heel effect, film noise -> uint8."""
    view, size = canvas.view, canvas.size
    density = gaussian_blur(density.astype(np.float32), max(0.5, view.blur * size))
    intensity = np.clip((density - view.window_low) / (view.window_high - view.window_low), 0.0, 1.0)
    intensity = intensity ** view.gamma
    intensity = intensity * (1.0 + view.heel * (math.cos(view.heel_direction) * canvas.px
                                                + math.sin(view.heel_direction) * canvas.py))
    noise = rng.normal(0.0, view.noise, (size, size)).astype(np.float32)
    if size >= 96:
        noise = gaussian_blur(noise, 0.6 * size / 256) * 1.4
    intensity = intensity + noise
    return np.clip(np.rint(intensity * 255.0), 0, 255).astype(np.uint8)


def _render(seed: int, index: int, size: int, task: str, prevalence: float,
            with_findings: bool = True) -> np.ndarray:
    patient, anatomy, findings = _patient_state(seed, index, task, prevalence)
    view = _view(seed, index)
    size = int(size)
    if size < 8:
        raise ConfigError(f"size must be >= 8, got {size}")
    canvas = _canvas(anatomy, view, size)
    ratio = findings.cardiothoracic_ratio if with_findings else anatomy.cardiothoracic_ratio
    density, body = _draw_body(canvas)
    chest = _chest(canvas, ratio)
    density = _draw_lungs(density, canvas, chest, findings.effusions if with_findings else (),
                          _texture(seed, patient))
    density = _draw_mediastinum(density, canvas, chest)
    density = _draw_bones(density, canvas, chest, body)
    if with_findings and findings.clusters:
        density = _draw_lesions(density, canvas, chest, findings.clusters)
    return _expose(density, canvas, np.random.default_rng([seed, _STREAM_VIEW, index, 1]))


def render_phantom(
    seed: int,
    index: int,
    size: int = 128,
    task: str = "tb",
    prevalence: float = 0.35,
    *,
    findings: bool = True,
) -> np.ndarray:
    """uint8 ``size x size`` greyscale phantom consistent with :func:`phantom_meta`.

    ``findings=False`` draws the same image without its findings (the lesions, effusion
    and enlarged heart are left out): a counterfactual negative for tests and figures.
    """
    return _render(seed, index, size, task, prevalence, findings)


@dataclass(frozen=True)
class PhantomImage:
    """Picklable zero-argument callable returning the pixels of one phantom."""

    seed: int
    index: int
    size: int = 128
    task: str = "tb"
    prevalence: float = 0.35

    def __call__(self) -> np.ndarray:
        return render_phantom(self.seed, self.index, self.size, self.task, self.prevalence)
