"""A pre-label is never a box the check refuses: corners inside the image, some area in whole pixels."""

import pytest

from workflow.prelabel import pixel_box

WIDTH, HEIGHT = 400, 300


@pytest.mark.parametrize(
    "box",
    [
        (0.0, -0.05, 1.0, 0.0),  # above the top edge: once written as <ymin>1</ymin> ... <ymax>0</ymax>
        (0.5, 0.5, 0.5005, 0.7),  # under one pixel wide
        (1.02, 0.2, 1.3, 0.4),  # right of the image
    ],
)
def test_boxes_with_no_area_in_whole_pixels_are_set_aside(box):
    assert pixel_box(box, WIDTH, HEIGHT) is None


def test_boxes_are_labelimg_integers_inside_the_image():
    assert pixel_box((0.1, 0.2, 0.5, 0.9), WIDTH, HEIGHT) == (40, 60, 200, 270)
    assert pixel_box((-0.02, -0.01, 1.04, 1.1), WIDTH, HEIGHT) == (1, 1, WIDTH, HEIGHT)
