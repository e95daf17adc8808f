"""Mosaic augmentation (YOLOv4, Ultralytics): four training images tiled 2 x 2, and a window of the size of one
cut at random around the middle, so one image holds parts of four, with objects cut at its edges and on no
fixed background.

Works on a batch as the record iterator gives it (already cropped, jittered and resized to S x S): images
(batch, 3, S, S) and object rows (batch, objects, 6: class, xmin, ymin, xmax, ymax in [0, 1], difficult; class -1
pads). The four images of a mosaic are the image itself and three others of the same batch (drawn without
repeats where the batch has them).
"""

import numpy as np

# A box cut by the window is kept when this much of its area is inside, as a box of its own.
MIN_VISIBLE_AREA = 0.25
# The boxes a mosaic of four can hold, as a multiple of one image's.
OBJECTS_FACTOR = 4


def mosaic_batch(images, objects, probability, rng):
    """(images, objects) with each image turned into a mosaic with `probability`; the objects array holds
    OBJECTS_FACTOR times the rows (class -1 pads)."""
    batch, _, size, _ = images.shape
    out_images = images.copy()
    out_objects = np.full((batch, OBJECTS_FACTOR * objects.shape[1], 6), -1, dtype=objects.dtype)
    out_objects[:, : objects.shape[1]] = objects
    for i in np.flatnonzero(rng.random(batch) < probability):
        others = np.delete(np.arange(batch), i)
        picks = [i, *rng.choice(others, size=3, replace=len(others) < 3)]
        corner = rng.integers(size // 2, size + size // 2 + 1, size=2) - size // 2  # the window's top-left x, y
        out_images[i] = _tile(images[picks])[:, corner[1] : corner[1] + size, corner[0] : corner[0] + size]
        rows = _window_rows(objects[picks], corner, size)
        out_objects[i] = -1
        out_objects[i, : len(rows)] = rows
    return out_images, out_objects


def _tile(four):
    """Four (3, S, S) images as one (3, 2S, 2S): top-left, top-right, bottom-left, bottom-right."""
    return np.concatenate([np.concatenate(four[:2], axis=2), np.concatenate(four[2:], axis=2)], axis=1)


def _window_rows(four_objects, corner, size):
    """The object rows of four tiled images, in the coordinates of the window at `corner` (pixels) of the 2S x 2S
    tile, normalised to it; boxes less than MIN_VISIBLE_AREA inside it are left out."""
    rows = []
    for quadrant, objects in enumerate(four_objects):
        offset = np.array([quadrant % 2, quadrant // 2]) * size - corner
        for row in objects[objects[:, 0] >= 0]:
            box = row[1:5] * size + np.tile(offset, 2)
            clipped = np.clip(box, 0, size)
            area, visible = _area(box), _area(clipped)
            if area > 0 and visible >= MIN_VISIBLE_AREA * area:
                rows.append([row[0], *(clipped / size), row[5]])
    return np.array(rows, dtype=four_objects.dtype).reshape(-1, 6)


def _area(box):
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])
