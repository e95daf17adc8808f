import numpy as np
from test_mosaic import SIZE, marked_batch

from workflow.lib.quarter_turns import turn_batch, turn_boxes


def test_each_turned_box_frames_its_own_objects_pixels_and_both_turns_happen():
    images, objects = marked_batch(6)
    objects[:, 1] = objects[:, 0]  # a second row per image (the same box): every real row turns
    objects[5, 1] = -1  # padding stays padding
    rng = np.random.default_rng(0)
    turned_left = turned_right = 0
    for _ in range(10):
        turned, rows = turn_batch(images, objects, 1.0, rng)
        assert turned.shape == images.shape and rows.shape == objects.shape
        assert np.array_equal(rows[5, 1], objects[5, 1]) and np.array_equal(rows[:, :, [0, 5]], objects[:, :, [0, 5]])
        for image, original, image_rows in zip(turned, images, rows):
            for cls, x0, y0, x1, y1, _ in image_rows[image_rows[:, 0] >= 0]:
                box = np.s_[:, round(y0 * SIZE) : round(y1 * SIZE), round(x0 * SIZE) : round(x1 * SIZE)]
                assert np.all(image[box] == cls) and np.sum(image[0] == cls) == 16 * 20  # the box holds it all
            turned_left += np.array_equal(image, np.rot90(original, 1, axes=(1, 2)))
            turned_right += np.array_equal(image, np.rot90(original, -1, axes=(1, 2)))
    assert turned_left + turned_right == 60 and turned_left > 10 and turned_right > 10


def test_turns_come_at_the_share_asked_and_leave_the_input_as_it_was():
    images, objects = marked_batch(6)
    before = images.copy(), objects.copy()
    turned, rows = turn_batch(images, objects, 0.0, np.random.default_rng(1))
    assert np.array_equal(turned, images) and np.array_equal(rows, objects)
    counts = [
        np.sum(np.any(turn_batch(images, objects, 0.5, np.random.default_rng(seed))[0] != images, axis=(1, 2, 3)))
        for seed in range(40)
    ]
    assert 2 <= np.mean(counts) <= 4
    assert np.array_equal(images, before[0]) and np.array_equal(objects, before[1])


def test_four_quarter_turns_the_same_way_give_the_boxes_back():
    boxes = np.array([[0.1, 0.2, 0.4, 0.9], [0.0, 0.0, 1.0, 0.5]])
    for left in (True, False):
        turned = boxes
        for _ in range(4):
            turned = turn_boxes(turned, left)
        np.testing.assert_allclose(turned, boxes)
    np.testing.assert_allclose(turn_boxes(boxes[:1], True), [[0.2, 0.6, 0.9, 0.9]])
    np.testing.assert_allclose(turn_boxes(boxes[:1], False), [[0.1, 0.1, 0.8, 0.4]])
