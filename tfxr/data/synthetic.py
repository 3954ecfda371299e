"""Built-in synthetic data source: procedurally drawn PA chest radiograph phantoms.

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

Only numpy and the standard library are imported here.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .types import Box, Item, Source

__all__ = [
    "TASKS",
    "PATIENT_BLOCK",
    "phantom_meta",
    "render_phantom",
    "PhantomImage",
    "synthetic_source",
]

TASKS: dict[str, list[str]] = {
    "tb": ["Tuberculosis"],
    "multilabel": ["Nodule", "Consolidation", "Effusion", "Cardiomegaly"],
}

#: Images are partitioned into patients within consecutive blocks of this many indices.
PATIENT_BLOCK = 6
#: Probabilities of a patient having 1, 2 or 3 images (before truncation at a block end).
_IMAGES_PER_PATIENT_P = (0.45, 0.35, 0.20)

# Stream tags for np.random.default_rng([seed, tag, ...]).
_T_PARTITION, _T_ANATOMY, _T_LABELS, _T_VIEW, _T_FINDINGS, _T_TEXTURE = 11, 12, 13, 14, 15, 16
_TASK_CODE = {"tb": 1, "multilabel": 2}

# Density units: soft tissue of the thorax ~0.5, aerated lung removes ~0.36.
_LUNG_AIR = 0.36
_EDGE = 0.012  # softness of anatomical edges, anatomy units


# ----------------------------------------------------------------------------- helpers


def _smooth(x, w):
    """Smooth step from 0 (x <= -w/2) to 1 (x >= w/2); works on scalars and arrays."""
    s = np.clip(0.5 + np.asarray(x, dtype=np.float32) / np.float32(w), 0.0, 1.0)
    return s * s * (3.0 - 2.0 * s)


def _gauss_kernel(sigma: float) -> np.ndarray:
    r = max(1, int(math.ceil(3.0 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a 2-D float array (edge padding).  sigma in pixels."""
    if sigma <= 0.05:
        return img
    k = _gauss_kernel(sigma)
    r = len(k) // 2
    h, w = img.shape
    r = min(r, max(h, w))  # kernels wider than the image still work with edge padding
    p = np.pad(img, ((r, r), (0, 0)), mode="edge")
    out = np.zeros_like(img, dtype=np.float32)
    kk = k if len(k) == 2 * r + 1 else _trim(k, r)
    for i, wt in enumerate(kk):
        out += wt * p[i : i + h]
    p = np.pad(out, ((0, 0), (r, r)), mode="edge")
    out2 = np.zeros_like(out)
    for i, wt in enumerate(kk):
        out2 += wt * p[:, i : i + w]
    return out2


def _trim(k: np.ndarray, r: int) -> np.ndarray:
    c = len(k) // 2
    kk = k[c - r : c + r + 1]
    return kk / kk.sum()


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown synthetic task {task!r}; expected one of {sorted(TASKS)}")


def _check_args(seed: int, index: int, prevalence: float) -> None:
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if int(index) != index or index < 0:
        raise ValueError(f"index must be a non-negative integer, got {index!r}")
    if not 0.0 <= float(prevalence) <= 1.0:
        raise ValueError(f"prevalence must be in [0, 1], got {prevalence!r}")


# ----------------------------------------------------------------------------- patients


@functools.lru_cache(maxsize=4096)
def _block_partition(seed: int, block: int) -> tuple[int, ...]:
    """Sizes (1..3) of the patients in one block of PATIENT_BLOCK consecutive indices."""
    rng = np.random.default_rng([seed, _T_PARTITION, block])
    sizes: list[int] = []
    left = PATIENT_BLOCK
    while left > 0:
        n = int(rng.choice(3, p=_IMAGES_PER_PATIENT_P)) + 1
        n = min(n, left)
        sizes.append(n)
        left -= n
    return tuple(sizes)


def _patient_of(seed: int, index: int) -> int:
    """Index of the first image of ``index``'s patient (the patient's key)."""
    block, off = divmod(index, PATIENT_BLOCK)
    start = 0
    for n in _block_partition(seed, block):
        if off < start + n:
            return block * PATIENT_BLOCK + start
        start += n
    raise AssertionError("unreachable")


def _patient_id(first_index: int) -> str:
    return f"synthetic_p{first_index:06d}"


# ----------------------------------------------------------------------------- anatomy


@dataclass(frozen=True)
class _Anatomy:
    thorax: float  # inner half-width of the rib cage at the lung bases
    medial: tuple[float, float]  # medial lung edge |u| (right, left) = (image-left, image-right)
    apex: tuple[float, float]  # v of the lung apices
    cp: tuple[float, float]  # v of the costophrenic angles (mid inspiration)
    dome: tuple[float, float]  # hemidiaphragm dome heights
    apex_shift: float  # medial shift of the apex centre
    pw: float  # apex roundness exponent
    ctr: float  # cardiothoracic ratio
    heart_h: float  # heart height (top of the cardiac silhouette to the diaphragm)
    heart_tilt: float  # shape exponent of the right heart border
    heart_right_frac: float  # part of the heart width to image-left of the midline
    knob: float  # aortic knob radius
    body_w: float  # half-width of the body at the lung bases
    neck_w: float
    shoulder_v: float
    rib_first: float  # v of the first posterior rib at the spine
    rib_step: float
    rib_growth: float
    rib_curve: float
    rib_rise: float
    rib_thick: float
    n_ribs: int
    clav_v: float
    clav_slope: float
    spine_w: float
    trachea_w: float
    bubble: float  # stomach bubble size (0 = none)
    tissue: float  # soft tissue density scale


def _anatomy(seed: int, pid: int) -> _Anatomy:
    rng = np.random.default_rng([seed, _T_ANATOMY, pid])
    U = rng.uniform
    thorax = U(0.70, 0.80)
    apex = U(-0.80, -0.70)
    cp = U(0.46, 0.60)
    return _Anatomy(
        thorax=thorax,
        medial=(U(0.07, 0.11), U(0.08, 0.12)),
        apex=(apex + U(-0.03, 0.03), apex + U(-0.03, 0.03)),
        cp=(cp - U(0.0, 0.06), cp),
        dome=(U(0.10, 0.18), U(0.09, 0.16)),
        apex_shift=U(0.04, 0.12),
        pw=U(1.6, 2.6),
        ctr=float(np.clip(rng.normal(0.44, 0.035), 0.35, 0.50)),
        heart_h=U(0.42, 0.52),
        heart_tilt=U(0.45, 0.75),
        heart_right_frac=U(0.28, 0.40),
        knob=U(0.045, 0.07),
        body_w=thorax + U(0.10, 0.16),
        neck_w=U(0.20, 0.26),
        shoulder_v=U(-1.08, -0.98),
        rib_first=U(-0.86, -0.80),
        rib_step=U(0.105, 0.125),
        rib_growth=U(0.02, 0.06),
        rib_curve=U(0.75, 0.95),
        rib_rise=U(0.28, 0.40),
        rib_thick=U(0.40, 0.50),
        n_ribs=int(rng.integers(9, 11)),
        clav_v=apex + U(0.14, 0.20),
        clav_slope=U(0.18, 0.30),
        spine_w=U(0.055, 0.07),
        trachea_w=U(0.035, 0.045),
        bubble=U(0.05, 0.09) if rng.random() < 0.6 else 0.0,
        tissue=U(0.95, 1.05),
    )


def _lung_geom(A: _Anatomy, side: int, insp: float):
    """Scalars describing one lung (side 0 = image-left/patient right, 1 = image-right)."""
    medial = A.medial[side]
    lateral = A.thorax + 0.02 * insp
    hwb = 0.5 * (lateral - medial)
    cb = 0.5 * (lateral + medial)
    cp = A.cp[side] + 0.05 * insp
    return medial, lateral, hwb, cb, A.apex[side], cp


def _lung_mask(A: _Anatomy, side: int, u, v, insp: float = 0.0, edge: float = _EDGE):
    """Soft mask (0..1) of one lung field at anatomy coordinates (u, v)."""
    s = -1.0 if side == 0 else 1.0
    l = s * np.asarray(u, dtype=np.float32)
    v = np.asarray(v, dtype=np.float32)
    medial, lateral, hwb, cb, apex, cp = _lung_geom(A, side, insp)
    t = np.clip((v - apex) / (cp - apex), 0.0, 1.0)
    hw = hwb * np.sqrt(1.0 - (1.0 - t) ** A.pw)
    c = cb - A.apex_shift * (1.0 - t) ** 1.5
    e = hw - np.abs(l - c)
    dome = cp - A.dome[side] * np.clip(1.0 - ((l - cb) / (hwb * 1.05)) ** 2, 0.0, 1.0)
    return _smooth(e, edge) * _smooth(dome - v, edge) * _smooth(v - apex, edge)


def _heart_params(A: _Anatomy, ctr: float):
    """(top, bottom, right border at the base, left border at the base) of the heart."""
    width = ctr * 2.0 * A.thorax
    left = -A.heart_right_frac * width  # image-left border (patient's right atrium)
    right = left + width  # image-right border (patient's left ventricle, apex)
    bottom = A.cp[1] - 0.6 * A.dome[1]  # the apex rests on the left hemidiaphragm
    top = bottom - A.heart_h
    return top, bottom, left, right


def _heart_mask(A: _Anatomy, ctr: float, u, v):
    """Heart shadow: convex borders widening from the mediastinum down to the diaphragm."""
    top, bottom, left, right = _heart_params(A, ctr)
    m = 0.09
    t = np.clip((v - top) / (bottom - top), 0.0, 1.0)  # 1 from the base down
    xr = -(m + (-left - m) * np.sin(0.5 * np.pi * t ** A.heart_tilt))
    xl = m + (right - m) * np.sin(0.5 * np.pi * np.minimum(t / 0.85, 1.0) ** 0.8)
    return _smooth(u - xr, _EDGE) * _smooth(xl - u, _EDGE) * _smooth(v - top, 0.05)


# ----------------------------------------------------------------------------- views


@dataclass(frozen=True)
class _View:
    scale: float
    rot: float
    tx: float
    ty: float
    insp: float
    lo: float
    hi: float
    gamma: float
    noise: float
    blur: float  # relative to image size
    heel: float
    heel_dir: float


def _view(seed: int, index: int) -> _View:
    rng = np.random.default_rng([seed, _T_VIEW, index])
    U = rng.uniform
    return _View(
        scale=U(0.86, 1.0),
        rot=math.radians(float(np.clip(rng.normal(0.0, 2.0), -5.0, 5.0))),
        tx=U(-0.07, 0.07),
        ty=U(-0.03, 0.07),
        insp=U(-1.0, 1.0),
        lo=U(-0.03, 0.05),
        hi=U(0.74, 0.88),
        gamma=math.exp(U(-0.25, 0.25)),
        noise=U(0.008, 0.03),
        blur=U(0.0015, 0.005),
        heel=U(-0.06, 0.06),
        heel_dir=U(0.0, 2 * math.pi),
    )


def _to_image(V: _View, u, v):
    """Anatomy -> normalised image coordinates (x, y) in 0..1."""
    c, s = math.cos(V.rot), math.sin(V.rot)
    px = V.scale * (c * u - s * v) + V.tx
    py = V.scale * (s * u + c * v) + V.ty
    return 0.5 * (px + 1.0), 0.5 * (py + 1.0)


def _to_anatomy(V: _View, px, py):
    """Centred image coordinates (-1..1) -> anatomy."""
    c, s = math.cos(V.rot), math.sin(V.rot)
    x = (px - V.tx) / V.scale
    y = (py - V.ty) / V.scale
    return c * x + s * y, -s * x + c * y


def _box(V: _View, label: int, umin, vmin, umax, vmax) -> Box:
    us = np.array([umin, umax, umin, umax], dtype=np.float64)
    vs = np.array([vmin, vmin, vmax, vmax], dtype=np.float64)
    x, y = _to_image(V, us, vs)
    x0, x1 = float(np.clip(x.min(), 0, 1)), float(np.clip(x.max(), 0, 1))
    y0, y1 = float(np.clip(y.min(), 0, 1)), float(np.clip(y.max(), 0, 1))
    return Box(label=label, xmin=round(x0, 5), ymin=round(y0, 5), xmax=round(x1, 5), ymax=round(y1, 5))


# ----------------------------------------------------------------------------- findings

# A lesion is a tuple (kind, u, v, r, amp, extra):
#   kind 0 = Gaussian blob, 1 = smooth disc (nodule), 2 = ring (cavity wall, extra = wall),
#   3 = broad Gaussian haze (drawn like 0, but its box extent is tighter)


@dataclass(frozen=True)
class _Cluster:
    label: int
    lesions: tuple[tuple[int, float, float, float, float, float], ...]

    def extent(self) -> tuple[float, float, float, float]:
        f = [(1.1 if l[0] == 3 else 1.6) * l[3] + 2.0 * l[5] for l in self.lesions]
        umin = min(l[1] - e for l, e in zip(self.lesions, f))
        umax = max(l[1] + e for l, e in zip(self.lesions, f))
        vmin = min(l[2] - e for l, e in zip(self.lesions, f))
        vmax = max(l[2] + e for l, e in zip(self.lesions, f))
        return umin, vmin, umax, vmax


@dataclass(frozen=True)
class _Findings:
    labels: tuple[float, ...]
    clusters: tuple[_Cluster, ...]
    effusion: tuple[tuple[int, float, float], ...]  # (side, fluid height above the cp angle, opacity)
    ctr: float


def _sample_in_lung(rng, A: _Anatomy, side: int, t_range, margin: float, n: int = 1,
                    ctr: float | None = None):
    """Points inside the (expiration) lung field within a band of relative height t."""
    medial, lateral, hwb, cb, apex, cp = _lung_geom(A, side, -1.0)
    s = -1.0 if side == 0 else 1.0
    out = []
    for _ in range(200):
        t = rng.uniform(*t_range)
        v = apex + t * (cp - apex)
        l = rng.uniform(medial, lateral)
        u = s * l
        # inside with margin: test the mask at the point and 4 neighbours
        du = np.array([0, margin, -margin, 0, 0], dtype=np.float32)
        dv = np.array([0, 0, 0, margin, -margin], dtype=np.float32)
        m = _lung_mask(A, side, u + du, v + dv, insp=-1.0)
        heart = _heart_mask(A, A.ctr if ctr is None else ctr, np.float32(u), np.float32(v))
        if m.min() > 0.9 and heart < 0.05:
            out.append((float(u), float(v)))
            if len(out) == n:
                break
    if not out:  # pragma: no cover - the lung is large enough that this never happens
        out.append((s * cb, apex + 0.4 * (cp - apex)))
    return out


def _cluster_around(rng, A, side, cu, cv, label, n_range, r_range, spread, amp_range, kind=0):
    lesions = []
    n = int(rng.integers(*n_range))
    for _ in range(n):
        for _try in range(20):
            u = cu + rng.normal(0.0, spread)
            v = cv + rng.normal(0.0, spread)
            if _lung_mask(A, side, np.float32(u), np.float32(v), insp=-1.0) > 0.7:
                break
        else:
            u, v = cu, cv
        r, amp = float(rng.uniform(*r_range)), float(rng.uniform(*amp_range))
        lesions.append((kind, float(u), float(v), r, amp, 0.0))
    return _Cluster(label, tuple(lesions))


def _tb_findings(rng, A: _Anatomy, positive: bool) -> tuple[_Cluster, ...]:
    if not positive:
        return ()
    sides = [int(rng.integers(0, 2))]
    if rng.random() < 0.4:
        sides.append(1 - sides[0])
    clusters = []
    for side in sides:
        upper = rng.random() < 0.85
        t_range = (0.04, 0.42) if upper else (0.40, 0.70)
        (cu, cv), = _sample_in_lung(rng, A, side, t_range, margin=0.05)
        style = rng.random()
        if style < 0.5:  # patchy opacity
            c = _cluster_around(rng, A, side, cu, cv, 0, (5, 11), (0.03, 0.06), 0.07, (0.05, 0.09))
        else:  # nodular infiltrates
            c = _cluster_around(rng, A, side, cu, cv, 0, (8, 18), (0.012, 0.022), 0.07, (0.06, 0.10))
        # faint surrounding haze (ground glass)
        lesions = [(3, cu, cv, float(rng.uniform(0.09, 0.14)), float(rng.uniform(0.045, 0.07)), 0.0)]
        lesions += list(c.lesions)
        if rng.random() < 0.3:  # cavity: a ring-shaped opacity with a lucent centre
            r = float(rng.uniform(0.025, 0.045))
            lesions.append((2, cu, cv, r, float(rng.uniform(0.10, 0.15)), float(rng.uniform(0.008, 0.013))))
        clusters.append(_Cluster(0, tuple(lesions)))
    return tuple(clusters)


def _findings(seed: int, pid: int, task: str, prevalence: float, A: _Anatomy) -> _Findings:
    names = TASKS[task]
    code = _TASK_CODE[task]
    draws = np.random.default_rng([seed, _T_LABELS, pid, code]).random(len(names))
    labels = tuple(float(d < prevalence) for d in draws)
    clusters: list[_Cluster] = []
    effusion: list[tuple[int, float, float]] = []
    ctr = A.ctr
    if task == "tb":
        rng = np.random.default_rng([seed, _T_FINDINGS, pid, code, 0])
        clusters.extend(_tb_findings(rng, A, labels[0] > 0))
    else:
        if labels[3]:  # Cardiomegaly (drawn first: lesions are placed outside the heart)
            rng = np.random.default_rng([seed, _T_FINDINGS, pid, code, 3])
            ctr = float(rng.uniform(0.52, 0.63))
        if labels[0]:  # Nodule
            rng = np.random.default_rng([seed, _T_FINDINGS, pid, code, 0])
            for _ in range(1 if rng.random() < 0.8 else 2):
                side = int(rng.integers(0, 2))
                d = rng.uniform(0.02, 0.05) * 2.2  # diameter as a fraction of the width
                (u, v), = _sample_in_lung(rng, A, side, (0.1, 0.85), margin=d, ctr=ctr)
                clusters.append(_Cluster(0, ((1, u, v, 0.5 * d, float(rng.uniform(0.20, 0.30)), 0.0),)))
        if labels[1]:  # Consolidation
            rng = np.random.default_rng([seed, _T_FINDINGS, pid, code, 1])
            side = int(rng.integers(0, 2))
            t_range = (0.45, 0.9) if rng.random() < 0.6 else (0.1, 0.6)
            (cu, cv), = _sample_in_lung(rng, A, side, t_range, margin=0.08, ctr=ctr)
            c = _cluster_around(rng, A, side, cu, cv, 1, (5, 10), (0.04, 0.08), 0.07, (0.05, 0.08))
            haze = (3, cu, cv, float(rng.uniform(0.11, 0.16)), float(rng.uniform(0.05, 0.08)), 0.0)
            clusters.append(_Cluster(1, (haze,) + c.lesions))
        if labels[2]:  # Effusion
            rng = np.random.default_rng([seed, _T_FINDINGS, pid, code, 2])
            sides = [int(rng.integers(0, 2))]
            if rng.random() < 0.25:
                sides.append(1 - sides[0])
            for side in sides:
                effusion.append((side, float(rng.uniform(0.16, 0.38)), float(rng.uniform(0.55, 0.9))))
    return _Findings(labels, tuple(clusters), tuple(effusion), ctr)


def _effusion_geom(A: _Anatomy, side: int, height: float, insp: float):
    medial, lateral, hwb, cb, apex, cp = _lung_geom(A, side, insp)
    level = cp - height  # fluid level at the lateral chest wall (top of the meniscus)
    return medial, lateral, hwb, cb, cp, level


def _effusion_density(A: _Anatomy, side: int, height: float, insp: float, u, v):
    s = -1.0 if side == 0 else 1.0
    l = s * u
    medial, lateral, hwb, cb, cp, level = _effusion_geom(A, side, height, insp)
    # meniscus: the surface climbs towards the lateral wall
    x = np.clip((l - medial) / (lateral - medial), 0.0, 1.0)
    surface = level + 0.4 * height * (1.0 - x) ** 1.5
    return _smooth(v - surface, 0.03)


# ----------------------------------------------------------------------------- public API


def _patient_state(seed: int, index: int, task: str, prevalence: float):
    _check_task(task)
    _check_args(seed, index, prevalence)
    pid = _patient_of(int(seed), int(index))
    return (pid,) + _patient(int(seed), pid, task, float(prevalence))


@functools.lru_cache(maxsize=1024)
def _patient(seed: int, pid: int, task: str, prevalence: float) -> tuple[_Anatomy, _Findings]:
    A = _anatomy(seed, pid)
    return A, _findings(seed, pid, task, prevalence, A)


def _boxes(A: _Anatomy, F: _Findings, V: _View, task: str) -> tuple[Box, ...]:
    boxes = [_box(V, c.label, *c.extent()) for c in F.clusters]
    if task == "multilabel":
        for side, height, _ in F.effusion:
            s = -1.0 if side == 0 else 1.0
            medial, lateral, hwb, cb, cp, level = _effusion_geom(A, side, height, V.insp)
            inner = medial + 0.25 * (lateral - medial)
            ls = sorted((s * inner, s * (lateral + 0.02)))
            boxes.append(_box(V, 2, ls[0], level - 0.02, ls[1], cp + 0.03))
        if F.labels[3]:
            top, bottom, left, right = _heart_params(A, F.ctr)
            boxes.append(_box(V, 3, left - 0.02, top + 0.1 * (bottom - top), right + 0.02, bottom + 0.06))
    return tuple(b for b in boxes if b.xmax > b.xmin and b.ymax > b.ymin)


def phantom_meta(
    seed: int, index: int, task: str = "tb", prevalence: float = 0.35
) -> tuple[tuple[float, ...], tuple[Box, ...], str]:
    """Labels, boxes and patient id of phantom ``index`` -- cheap, no pixels drawn.

    Boxes are in normalised image coordinates (0..1); ``Box.label`` indexes
    ``TASKS[task]``.  There is one box per lesion cluster (Tuberculosis, Nodule,
    Consolidation), per effusion side and one around an enlarged heart.
    """
    pid, A, F = _patient_state(seed, index, task, prevalence)
    V = _view(seed, index)
    return F.labels, _boxes(A, F, V, task), _patient_id(pid)


@functools.lru_cache(maxsize=64)
def _texture(seed: int, pid: int, grid: int = 112) -> np.ndarray:
    """Per-patient lung texture (vessel markings + mottle) on a grid over [-1.1, 1.1]^2.

    Vessels are binary trees growing from the hila, drawn by splatting points along the
    branches onto the grid (vectorised level by level) and blurring.
    """
    rng = np.random.default_rng([seed, _T_TEXTURE, pid])
    step = 2.2 / (grid - 1)
    trunks = 7
    # level 0: trunks from each hilum fanning out from up-lateral to down-lateral
    side = np.repeat([-1.0, 1.0], trunks)
    hu = side * rng.uniform(0.17, 0.22, 2).repeat(trunks)
    hv = rng.uniform(-0.12, 0.0, 2).repeat(trunks)
    fan = np.tile(np.linspace(-1.2, 1.1, trunks), 2) + rng.normal(0.0, 0.12, 2 * trunks)
    ang = np.arctan2(np.sin(fan), side * np.cos(fan))
    length = rng.uniform(0.12, 0.18, 2 * trunks)
    width = np.ones(2 * trunks)
    us, vs, ws = [], [], []
    n = 24  # points per branch
    t = (np.arange(1, n + 1) / n)[None, :]
    for depth in range(4):
        bend = rng.normal(0.0, 0.15, len(ang))[:, None]
        a = ang[:, None] + bend * t
        uu = hu[:, None] + np.cumsum(np.cos(a), axis=1) * (length / n)[:, None]
        vv = hv[:, None] + np.cumsum(np.sin(a), axis=1) * (length / n)[:, None]
        us.append(uu.ravel())
        vs.append(vv.ravel())
        ws.append(np.repeat(width, n))
        # two children per branch
        k = len(ang)
        hu, hv = np.repeat(uu[:, -1], 2), np.repeat(vv[:, -1], 2)
        ang = np.repeat(a[:, -1], 2) + np.tile([-1.0, 1.0], k) * rng.uniform(0.25, 0.55, 2 * k)
        length = np.repeat(length, 2) * rng.uniform(0.65, 0.85, 2 * k)
        width = np.repeat(width, 2) * 0.72
    u = np.concatenate(us)
    v = np.concatenate(vs)
    w = np.concatenate(ws)
    gx = (u + 1.1) / step
    gy = (v + 1.1) / step
    ok = (gx >= 0) & (gx < grid - 1) & (gy >= 0) & (gy < grid - 1)
    gx, gy, w = gx[ok], gy[ok], w[ok]
    x0 = gx.astype(np.int64)
    y0 = gy.astype(np.int64)
    fx = gx - x0
    fy = gy - y0
    flat = np.zeros(grid * grid)
    corners = ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy))
    for dy, dx, wt in corners:
        flat += np.bincount((y0 + dy) * grid + x0 + dx, weights=w * wt, minlength=grid * grid)
    g = gaussian_blur(flat.reshape(grid, grid).astype(np.float32), 0.7)
    g /= max(float(g.max()), 1e-6)
    mottle = gaussian_blur(rng.normal(0.0, 1.0, (grid, grid)).astype(np.float32), 1.5)
    mottle /= max(float(np.abs(mottle).max()), 1e-6)
    tex = 0.13 * np.sqrt(g) + 0.03 * mottle
    tex.setflags(write=False)
    return tex


def _sample_grid(tex: np.ndarray, u, v) -> np.ndarray:
    grid = tex.shape[0]
    step = 2.2 / (grid - 1)
    gx = np.clip((u + 1.1) / step, 0, grid - 1.001)
    gy = np.clip((v + 1.1) / step, 0, grid - 1.001)
    x0 = gx.astype(np.int64)
    y0 = gy.astype(np.int64)
    fx = (gx - x0).astype(np.float32)
    fy = (gy - y0).astype(np.float32)
    return (
        tex[y0, x0] * (1 - fx) * (1 - fy)
        + tex[y0, x0 + 1] * fx * (1 - fy)
        + tex[y0 + 1, x0] * (1 - fx) * fy
        + tex[y0 + 1, x0 + 1] * fx * fy
    )


def _ribs(A: _Anatomy, insp: float, u, v, lo_d: float, hi_d: float, posterior: bool):
    """Rib band intensity (0..1) at anatomy coordinates."""
    d = np.abs(u)
    step = A.rib_step * (1.0 + 0.04 * insp)
    if posterior:
        # from the spine the rib first rises a little, then arcs down to the lateral wall
        curve = -A.rib_rise * d + A.rib_curve * d * d
        first = A.rib_first
        thick = A.rib_thick
    else:
        # anterior ribs run from the lateral wall downwards towards the sternum
        curve = 0.45 * (hi_d - d) - 0.25 * (hi_d - d) ** 2
        first = A.rib_first + 0.12
        thick = A.rib_thick * 0.8
    z = (v - curve - first) / step
    a = A.rib_growth
    phase = (np.sqrt(np.maximum(1.0 + 2.0 * a * z, 1e-6)) - 1.0) / a  # spacing widens downwards
    k = np.floor(phase)
    f = (phase - k) / thick
    inside = (f < 1.0) & (k >= 0) & (k < A.n_ribs)
    fc = np.clip(f, 0.0, 1.0)
    band = np.sin(np.pi * fc)
    # a bone band with a brighter cortex at its edges
    prof = np.where(inside, np.sqrt(np.maximum(band, 0.0)) * (0.75 + 0.25 * (1.0 - band)), 0.0)
    return prof * _smooth(d - lo_d, 0.04) * _smooth(hi_d - d, 0.04)


def _render(seed: int, index: int, size: int, task: str, prevalence: float,
            findings: bool = True) -> np.ndarray:
    pid, A, F = _patient_state(seed, index, task, prevalence)
    V = _view(seed, index)
    size = int(size)
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    rng = np.random.default_rng([seed, _T_VIEW, index, 1])
    c = (np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0
    px, py = np.meshgrid(c, c)
    u, v = _to_anatomy(V, px, py)
    u = u.astype(np.float32)
    v = v.astype(np.float32)
    au = np.abs(u)
    insp = V.insp
    ctr = F.ctr if findings else A.ctr

    # --- body: neck, sloping shoulders, thorax, waist (soft tissue thickness profile)
    W = A.body_w
    sh = np.clip((v - A.shoulder_v) / 0.30, 0.0, 1.0)
    half = A.neck_w + (W + 0.04 - A.neck_w) * sh ** 0.45 * (v > A.shoulder_v)
    half = half - 0.05 * _smooth(v - 0.2, 0.8)  # waist
    body = _smooth(half - au, 0.025)
    thick = np.sqrt(np.clip(1.0 - (u / (half + 0.04)) ** 2, 0.0, 1.0))
    D = body * (0.30 + 0.24 * thick) * A.tissue
    # arms beside the thorax (separated by the axilla) with the humeral heads
    arm_in, arm_out = W + 0.07, W + 0.30
    arm = _smooth(au - arm_in, 0.04) * _smooth(arm_out - au, 0.04) * _smooth(v - (A.shoulder_v + 0.14), 0.08)
    D = D + 0.30 * arm
    for s in (-1.0, 1.0):
        hu, hv = s * (W + 0.10), A.shoulder_v + 0.22
        r = np.sqrt((u - hu) ** 2 + ((v - hv) / 1.15) ** 2)
        D = D + 0.12 * _smooth(0.12 - r, 0.02)

    # --- lungs (air), cut by heart, aortic knob and mediastinum
    lungs = _lung_mask(A, 0, u, v, insp) + _lung_mask(A, 1, u, v, insp)
    heart = _heart_mask(A, ctr, u, v)
    kr = np.sqrt((u - (A.medial[1] + 0.03)) ** 2 + (v - (A.apex[1] + 0.38)) ** 2)
    knob = _smooth(A.knob - kr, _EDGE)
    lung_eff = lungs * (1.0 - heart) * (1.0 - knob)
    # lungs are slightly darker laterally and at the apices, hila denser
    t = np.clip((v - A.apex[0]) / (A.cp[0] - A.apex[0]), 0.0, 1.0)
    air = _LUNG_AIR * (0.9 + 0.12 * _smooth(au - 0.35, 0.4) - 0.05 * t)
    D = D - air * lung_eff

    # effusion: bright fluid filling the costophrenic angle with a meniscus
    for side, height, opacity in F.effusion if findings else ():
        D = D + opacity * air * lung_eff * _effusion_density(A, side, height, insp, u, v)

    # hila (pulmonary arteries) and lung markings
    for sgn in (-1.0, 1.0):
        hr = np.sqrt(((u - sgn * 0.17) / 0.9) ** 2 + ((v + 0.02) / 1.8) ** 2)
        D = D + 0.05 * _smooth(0.12 - hr, 0.16) * lung_eff
    tex = _texture(seed, pid)
    D = D + _sample_grid(tex, u, v) * lung_eff

    # --- mediastinum, heart, spine, trachea
    below = _smooth(v - (A.cp[1] - A.dome[1] + 0.05 * insp), 0.06)  # under the diaphragm
    D = D + 0.04 * heart * (1.0 - below) + 0.03 * knob
    D = D + 0.05 * _smooth(0.13 - au, 0.05) * _smooth(0.55 - v, 0.5)
    vert = 0.5 + 0.5 * np.cos(2 * np.pi * (v - A.rib_first) / (A.rib_step * 0.95))
    spine = _smooth(A.spine_w - au, 0.015) * (0.025 + 0.025 * vert)
    D = D + spine * _smooth(v + 1.05, 0.1) * (1.0 - 0.6 * below)
    trachea = _smooth(A.trachea_w - np.abs(u + 0.01 * (v + 0.4)), 0.01) * _smooth(-0.38 - v, 0.06)
    D = D - 0.07 * trachea * _smooth(v - A.shoulder_v + 0.05, 0.05)
    if A.bubble > 0:
        bu, bv = 0.55 * A.thorax + 0.1, A.cp[1] - 0.5 * A.dome[1] + 0.05 * insp + A.bubble + 0.03
        br = np.sqrt(((u - bu) / 1.4) ** 2 + (v - bv) ** 2)
        D = D - 0.12 * _smooth(A.bubble - br, 0.02) * _smooth(v - (bv - 0.2 * A.bubble), 0.01)

    # --- bones: posterior + anterior ribs, clavicles
    rib_hi = A.thorax + 0.08
    ribs = _ribs(A, insp, u, v, 0.06, rib_hi, True) + 0.45 * _ribs(A, insp, u, v, 0.38, rib_hi, False)
    D = D + ribs * body * (0.025 + 0.07 * np.clip(lungs, 0.0, 1.0)) * (1.0 - 0.5 * heart)
    for s in (-1.0, 1.0):
        d = s * u
        x = np.clip((d - 0.08) / 0.55, 0.0, 1.0)
        cv = A.clav_v - A.clav_slope * (d - 0.08) + 0.012 * np.sin(2.0 * np.pi * x)  # gentle S
        cl = _smooth(0.026 + 0.012 * d - np.abs(v - cv), 0.014) * _smooth(d - 0.07, 0.04)
        cl = cl * _smooth(0.66 - d, 0.08)
        D = D + 0.09 * cl

    # --- findings (clipped to the lung fields)
    if findings and F.clusters:
        L = np.zeros_like(D)
        for cl in F.clusters:
            for kind, lu, lv, r, amp, extra in cl.lesions:
                _add_lesion(L, V, u, v, size, kind, lu, lv, r, amp, extra)
        D = D + L * np.clip(lungs * (1.0 - heart * 0.7), 0.0, 1.0)

    # --- acquisition: blur, window/gamma, heel effect, film noise
    D = gaussian_blur(D.astype(np.float32), max(0.5, V.blur * size))
    I = np.clip((D - V.lo) / (V.hi - V.lo), 0.0, 1.0)
    I = I ** V.gamma
    I = I * (1.0 + V.heel * (math.cos(V.heel_dir) * px + math.sin(V.heel_dir) * py))
    n = rng.normal(0.0, V.noise, (size, size)).astype(np.float32)
    if size >= 96:
        n = gaussian_blur(n, 0.6 * size / 256) * 1.4
    I = I + n
    return np.clip(np.rint(I * 255.0), 0, 255).astype(np.uint8)


def _add_lesion(L, V, u, v, size, kind, lu, lv, r, amp, extra):
    """Add one lesion to L, evaluated only in its pixel window."""
    x, y = _to_image(V, lu, lv)
    rad = (3.2 * r + extra * 2) * V.scale * size / 2.0 + 2
    cx, cy = x * size, y * size
    x0, x1 = max(0, int(cx - rad)), min(size, int(cx + rad) + 1)
    y0, y1 = max(0, int(cy - rad)), min(size, int(cy + rad) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    uu = u[y0:y1, x0:x1] - lu
    vv = v[y0:y1, x0:x1] - lv
    rr = np.sqrt(uu * uu + vv * vv)
    if kind in (0, 3):
        L[y0:y1, x0:x1] += amp * np.exp(-0.5 * (rr / r) ** 2)
    elif kind == 1:
        dome = np.sqrt(np.clip(1 - (rr / r) ** 2, 0, 1))
        L[y0:y1, x0:x1] += amp * _smooth(r - rr, 0.35 * r) * (0.8 + 0.2 * dome)
    else:
        wall = np.exp(-0.5 * ((rr - r) / extra) ** 2)
        L[y0:y1, x0:x1] += amp * wall - 0.05 * _smooth(r - extra - rr, extra)


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


def synthetic_source(
    num_images: int = 600, size: int = 128, task: str = "tb", prevalence: float = 0.35, seed: int = 0
) -> Source:
    """A :class:`Source` of ``num_images`` phantoms (pixels drawn lazily by workers)."""
    _check_task(task)
    _check_args(seed, 0, prevalence)
    if int(num_images) != num_images or num_images < 0:
        raise ValueError(f"num_images must be a non-negative integer, got {num_images!r}")
    if int(size) != size or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size!r}")
    items = []
    for index in range(int(num_images)):
        labels, boxes, patient_id = phantom_meta(seed, index, task, prevalence)
        items.append(
            Item(
                image_id=f"synthetic_{index:06d}",
                patient_id=patient_id,
                labels=labels,
                image=PhantomImage(seed, index, int(size), task, float(prevalence)),
                boxes=boxes,
                split=None,
                origin="phantom",
            )
        )
    info = {
        "generator": "tfxr.data.synthetic (procedural PA chest phantom)",
        "num_images": int(num_images),
        "num_patients": len({it.patient_id for it in items}),
        "size": int(size),
        "task": task,
        "prevalence": float(prevalence),
        "seed": int(seed),
    }
    return Source(name="synthetic", label_names=list(TASKS[task]), items=items, info=info)
