"""Decoding user images into RGB arrays, one rule for every stage.

EXIF orientation is ignored everywhere: boxes refer to the pixels as stored in the file, which is how
LabelImg shows an image to the person drawing the boxes. (OpenCV's imread would silently rotate such
photos, moving them away from their boxes.) The check stage warns about such images.

A JPEG whose data stops before its end marker (a download cut short, common in scraped image sets) is decoded
as libjpeg does for every viewer: what is missing comes out mid-gray. The check accepts it, with a warning,
when every pixel row still holds decoded data, and the pack stage re-encodes it.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

EXIF_ORIENTATION = 0x0112
ROTATING_ORIENTATIONS = {5, 6, 7, 8}
MISSING_DATA_GRAY = 128  # libjpeg decodes the blocks it has no data for to this level in every channel


class ImageProblem(Exception):
    """The image cannot be used; the message says why."""


def open_image(path, max_pixels):
    """Open (header only) and bound the size before any pixel is decoded."""
    try:
        image = Image.open(path)
    except (OSError, Image.DecompressionBombError) as error:
        raise ImageProblem(f"not a readable image: {error}") from None
    if image.width * image.height > max_pixels:
        raise ImageProblem(f"{image.width}x{image.height} pixels exceeds the limit of {max_pixels} (max_image_pixels)")
    return image


def load_rgb(path, max_pixels):
    """Fully decode an image to an HxWx3 uint8 RGB array; broken files are refused, JPEGs cut short decoded."""
    image = open_image(path, max_pixels)
    return decode_rgb(image, ends_early=image.format == "JPEG" and jpeg_ends_early(Path(path).read_bytes()))


def decode_rgb(image, ends_early=False):
    """Decode an opened image (see open_image) to an HxWx3 uint8 RGB array. With ends_early (a JPEG cut short, see
    jpeg_ends_early) the data it has is decoded and the rest comes out gray; any other broken data is refused."""
    try:
        ImageFile.LOAD_TRUNCATED_IMAGES = ends_early  # read at load time; each pack worker decodes one image at a time
        image.load()
    except (OSError, SyntaxError) as error:
        raise ImageProblem(f"image data is broken or truncated: {error}") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    return to_rgb_array(image)


def jpeg_ends_early(data):
    """True when a JPEG's data stops before its end-of-image marker. The marker segments are walked from the start
    of the file; the entropy-coded data after each start-of-scan is skipped up to the next marker (inside it, 0xFF is
    only ever followed by 0x00, a fill byte or a restart marker)."""
    position = 2  # after the start-of-image marker
    while position + 2 <= len(data):
        if data[position] != 0xFF:
            return False  # not a marker: broken data that the decoder will name
        marker = data[position + 1]
        if marker == 0xD9:  # end of image
            return False
        if marker == 0xFF or 0xD0 <= marker <= 0xD7 or marker == 0x01:  # fill byte, or a marker without a segment
            position += 1 if marker == 0xFF else 2
            continue
        if position + 4 > len(data):
            return True
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        if marker == 0xDA:  # start of scan
            position = next_marker(data, position)
            if position is None:
                return True
    return True


def next_marker(data, position):
    """The offset of the first marker at or after position in entropy-coded data, or None when the data ends first."""
    while True:
        position = data.find(b"\xff", position)
        if position == -1 or position + 1 >= len(data):
            return None
        follower = data[position + 1]
        if follower != 0x00 and follower != 0xFF and not 0xD0 <= follower <= 0xD7:
            return position
        position += 1 if follower == 0xFF else 2


def missing_rows(rgb):
    """How many pixel rows at the bottom of a JPEG decoded with ends_early hold no decoded data (all mid-gray)."""
    decoded = np.flatnonzero((rgb != MISSING_DATA_GRAY).any(axis=(1, 2)))
    return len(rgb) - (decoded[-1] + 1 if len(decoded) else 0)


def to_rgb_array(image):
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(image, dtype=np.float64)
        scale = 255.0 / 65535.0 if wide.max() > 255 else 1.0
        gray = np.clip(wide * scale, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    return np.asarray(image.convert("RGB"))


def is_plain_jpeg(image):
    """A baseline JPEG in RGB (YCbCr) or gray without EXIF rotation: any JPEG decoder shows exactly its stored
    pixels, so its bytes can be used as they are."""
    return (
        image.format == "JPEG"
        and image.mode in ("RGB", "L")
        and not image.info.get("progressive")
        and exif_orientation(image) == 1
    )


def exif_orientation(image):
    try:
        return int(image.getexif().get(EXIF_ORIENTATION, 1))
    except (ValueError, TypeError, OSError):
        return 1
