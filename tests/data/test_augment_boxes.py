"""Box-aware augmentation: on a phantom with known lesion boxes, the boxes stay on the lesion."""
import numpy as np
import pytest
import tensorflow as tf

from tfxr.data.augment import AugmentConfig, augment_with_boxes
from tfxr.data.phantom_drawing import phantom_meta, render_phantom

SIZE = 128
GEOMETRIC = AugmentConfig(flip=True, zoom=0.3, rotation_deg=7.0, brightness=0.0, gamma=0.0, noise_std=0.0)


def boxed_phantom():
    for index in range(50):
        labels, boxes, _ = phantom_meta(3, index, "tb", 0.5)
        if boxes:
            return index, boxes
    raise AssertionError("no phantom with boxes")


def lesion_share(diff: np.ndarray, boxes: np.ndarray) -> float:
    """Share of the lesion's pixel mass (|with - without findings|) inside the boxes (1 px margin)."""
    inside = np.zeros(diff.shape, bool)
    for x0, y0, x1, y1 in boxes:
        inside[max(0, int(y0 * SIZE) - 1):int(np.ceil(y1 * SIZE)) + 1,
               max(0, int(x0 * SIZE) - 1):int(np.ceil(x1 * SIZE)) + 1] = True
    return float(diff[inside].sum() / diff.sum())


def test_boxes_stay_on_the_lesion():
    index, boxes = boxed_phantom()
    with_lesion = render_phantom(3, index, SIZE, "tb", 0.5).astype(np.float32)[..., None] / 255
    without = render_phantom(3, index, SIZE, "tb", 0.5, findings=False).astype(np.float32)[..., None] / 255
    coords = np.array([[b.xmin, b.ymin, b.xmax, b.ymax] for b in boxes], np.float32)
    labels = np.array([b.label for b in boxes], np.int64)
    base = lesion_share(np.abs(with_lesion - without)[..., 0], coords)
    assert base > 0.75      # the phantom's boxes hold most of its lesions (blur reaches past them)
    flips, crops = set(), 0
    for k in range(24):
        seed = tf.constant([7, k], tf.int64)
        a, a_labels, a_boxes = augment_with_boxes(tf.constant(with_lesion), labels, coords, seed, GEOMETRIC)
        b, _, _ = augment_with_boxes(tf.constant(without), labels, coords, seed, GEOMETRIC)
        diff = np.abs(a.numpy() - b.numpy())[..., 0]
        a_boxes = a_boxes.numpy()
        assert a.shape == (SIZE, SIZE, 1) and len(a_labels) == len(a_boxes)
        assert np.all((a_boxes >= 0) & (a_boxes <= 1)) and np.all(a_boxes[:, 2:] > a_boxes[:, :2])
        if len(a_boxes) == len(coords):          # every box kept: all the lesion stays boxed
            assert lesion_share(diff, a_boxes) > base - 0.08, k
        for box in a_boxes:                      # each kept box is on lesion pixels, not beside them
            x0, y0, x1, y1 = (box * SIZE).astype(int)
            patch = diff[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]
            assert patch.mean() > 5 * diff.mean(), k
        centre = (a_boxes[:, 0] + a_boxes[:, 2]).mean() / 2 if len(a_boxes) else None
        if centre is not None:
            flips.add(bool((centre > 0.5) != ((coords[:, 0] + coords[:, 2]).mean() / 2 > 0.5)))
        crops += int(not np.allclose(a_boxes, coords[:len(a_boxes)]) if len(a_boxes) else 1)
    assert flips == {True, False} and crops >= 20   # both flip states and real crops were drawn


def test_negatives_stay_negatives_and_photometric_only_keeps_boxes():
    image = tf.random.stateless_uniform((SIZE, SIZE, 1), [1, 1])
    out, labels, boxes = augment_with_boxes(image, tf.zeros([0], tf.int64), tf.zeros([0, 4]),
                                            tf.constant([1, 2], tf.int64), AugmentConfig())
    assert out.shape == image.shape and labels.shape == (0,) and boxes.shape == (0, 4)
    coords = np.array([[0.2, 0.3, 0.4, 0.5]], np.float32)
    photometric = AugmentConfig(flip=False, zoom=0.0)
    _, _, same = augment_with_boxes(image, np.array([0]), coords, tf.constant([3, 4], tf.int64), photometric)
    np.testing.assert_array_equal(same.numpy(), coords)


@pytest.mark.parametrize("zoom", [0.0, 0.5])
def test_box_dropped_when_cropped_away(zoom):
    image = tf.zeros((SIZE, SIZE, 1))
    coords = np.array([[0.0, 0.0, 0.05, 0.05], [0.3, 0.3, 0.7, 0.7]], np.float32)
    kept = []
    for k in range(20):
        _, labels, boxes = augment_with_boxes(image, np.array([0, 1]), coords, tf.constant([9, k], tf.int64),
                                              AugmentConfig(flip=False, zoom=zoom))
        kept.append(labels.numpy().tolist())
    assert all(1 in k for k in kept)                 # the central box always survives
    if zoom == 0.0:
        assert all(k == [0, 1] for k in kept)
    else:
        assert any(k == [1] for k in kept)           # the corner box is cropped away sometimes


def test_pipeline_reads_boxes_and_keeps_negatives(synthetic_tfrec):
    """build_dataset(boxes=N): padded targets equal to the records' boxes (evaluation), negatives
    kept; in training the boxes move with the augmentation and stay inside the image."""
    import json

    from tfxr.data.pipeline import PAD_BOX, DataConfig, build_dataset
    from tfxr.data.records import read_manifest
    from tfxr.evaluation.boxes import read_boxed_images

    manifest = read_manifest(str(synthetic_tfrec))
    cfg = DataConfig(batch_size=8, deterministic=True)
    ds = build_dataset(str(synthetic_tfrec), "val", cfg, training=False, boxes=4, with_meta=True)
    truth = {it.image_id: it for it in read_boxed_images(str(synthetic_tfrec), "val", manifest, 64, 1,
                                                        only_boxed=False)}
    negatives = positives = 0
    for batch in ds:
        for image_id, boxes, classes in zip(batch["image_id"].numpy(), batch["boxes"].numpy(),
                                            batch["classes"].numpy()):
            expected = truth[image_id.decode()].boxes
            real = classes >= 0
            assert real.sum() == min(len(expected), 4)
            np.testing.assert_allclose(boxes[real], np.reshape([b for _, b in expected][:4], (-1, 4)), atol=1e-6)
            assert np.all(boxes[~real] == PAD_BOX)
            negatives += not expected
            positives += bool(expected)
    assert negatives and positives
    assert negatives + positives == json.loads((synthetic_tfrec / "manifest.json").read_text())["splits"]["val"]["count"]
    train = build_dataset(str(synthetic_tfrec), "train", cfg, training=True, boxes=4)
    x, y = next(iter(train))
    assert x.shape == (8, 64, 64, 1) and y["boxes"].shape == (8, 4, 4) and y["classes"].shape == (8, 4)
    real = y["classes"].numpy() >= 0
    assert np.all((y["boxes"].numpy()[real] >= 0) & (y["boxes"].numpy()[real] <= 1))
