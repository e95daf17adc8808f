"""Quarter turns: training images turned 90 degrees left or right, for objects that show up in any orientation
(playing cards on a table, parts on a belt, aerial views), whose sideways examples are few in a small dataset.

Works on a batch as the record iterator gives it (already cropped, jittered and resized to S x S): images
(batch, 3, S, S) and object rows (batch, objects, 6: class, xmin, ymin, xmax, ymax in [0, 1], difficult; class -1
pads).
"""

import numpy as np


def turn_batch(images, objects, probability, rng):
    """(images, objects) with each image turned a quarter turn, left or right at random, with `probability`."""
    out_images, out_objects = images.copy(), objects.copy()
    for i in np.flatnonzero(rng.random(len(images)) < probability):
        left = rng.random() < 0.5
        out_images[i] = np.rot90(images[i], 1 if left else -1, axes=(1, 2))
        real = objects[i, :, 0] >= 0
        out_objects[i, real, 1:5] = turn_boxes(objects[i, real, 1:5], left)
    return out_images, out_objects


def turn_boxes(boxes, left):
    """Boxes [xmin, ymin, xmax, ymax] in [0, 1] of a square image turned a quarter turn left (counterclockwise: a
    point x, y goes to y, 1 - x) or right (to 1 - y, x)."""
    xmin, ymin, xmax, ymax = boxes.T
    turned = (ymin, 1 - xmax, ymax, 1 - xmin) if left else (1 - ymax, xmin, 1 - ymin, xmax)
    return np.stack(turned, axis=1)
