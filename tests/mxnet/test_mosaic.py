import numpy as np

from workflow.lib.mosaic import OBJECTS_FACTOR, _window_rows, mosaic_batch

SIZE = 40


def marked_batch(count):
    """Image k: background 100 + k with a square of value k where its one box (class k) says."""
    images = np.zeros((count, 3, SIZE, SIZE), dtype=np.float32)
    objects = np.full((count, 2, 6), -1, dtype=np.float32)
    for k in range(count):
        images[k] = 100 + k
        x0, y0 = 4 + 3 * k, 6 + 2 * k
        images[k, :, y0 : y0 + 20, x0 : x0 + 16] = k
        objects[k, 0] = [k, x0 / SIZE, y0 / SIZE, (x0 + 16) / SIZE, (y0 + 20) / SIZE, k % 2]
    return images, objects


def test_each_box_of_a_mosaic_frames_its_own_objects_pixels_and_nothing_is_lost_unseen():
    images, objects = marked_batch(6)
    rng = np.random.default_rng(0)
    kept_counts = []
    for _ in range(20):
        mosaics, rows = mosaic_batch(images, objects, 1.0, rng)
        assert mosaics.shape == images.shape and rows.shape == (6, 2 * OBJECTS_FACTOR, 6)
        for image, image_rows in zip(mosaics, rows):
            kept = image_rows[image_rows[:, 0] >= 0]
            kept_counts.append(len(kept))
            covered = np.zeros((SIZE, SIZE), bool)
            for cls, x0, y0, x1, y1, difficult in kept:
                box = np.s_[round(y0 * SIZE) : round(y1 * SIZE), round(x0 * SIZE) : round(x1 * SIZE)]
                assert np.all(image[:, box[0], box[1]] == cls) and difficult == cls % 2
                covered[box] = True
            # an object's pixels outside every kept box belong to a box cut to under a quarter of its area
            uncovered = (image[0] < 6) & ~covered
            for cls in np.unique(image[0][uncovered]):
                assert np.sum(image[0] == cls) < 0.25 * 16 * 20
    assert min(kept_counts) < 4 and max(kept_counts) == 4  # boxes were cut away, and all four shown


def test_no_mosaic_leaves_the_batch_as_it_was_with_room_for_more_objects():
    images, objects = marked_batch(4)
    same, rows = mosaic_batch(images, objects, 0.0, np.random.default_rng(0))
    np.testing.assert_array_equal(same, images)
    np.testing.assert_array_equal(rows[:, :2], objects)
    assert np.all(rows[:, 2:] == -1)


def test_a_share_of_half_makes_about_half_the_images_mosaics():
    images, objects = marked_batch(8)
    rng = np.random.default_rng(1)
    changed = sum(
        np.sum(np.any(mosaic_batch(images, objects, 0.5, rng)[0] != images, axis=(1, 2, 3))) for _ in range(50)
    )
    assert 160 < changed < 240  # of 400 images


def test_a_box_cut_by_the_window_is_clipped_and_kept_only_when_a_quarter_of_it_shows():
    four = np.full((4, 1, 6), -1, dtype=np.float32)
    four[0, 0] = [1, 0.0, 0.0, 0.5, 0.5, 0]  # top-left image's box, 20 x 20 px at its top-left corner
    # window at x = 10, y = 10: 10 x 10 of the box shows, exactly a quarter
    np.testing.assert_allclose(_window_rows(four, np.array([10, 10]), SIZE), [[1, 0, 0, 0.25, 0.25, 0]])
    assert _window_rows(four, np.array([11, 10]), SIZE).shape == (0, 6)
    four[3, 0] = [2, 0.0, 0.0, 0.5, 0.5, 1]  # bottom-right image's box starts at the tile's centre (40, 40)
    np.testing.assert_allclose(
        _window_rows(four, np.array([30, 20]), SIZE)[-1], [2, 10 / SIZE, 20 / SIZE, 30 / SIZE, 1.0, 1]
    )
