"""Decoding user images into RGB arrays, one rule for every stage.

EXIF orientation is ignored everywhere: boxes refer to the pixels as stored in the file, which is how
LabelImg shows an image to the person drawing the boxes. (OpenCV's imread would silently rotate such
photos, moving them away from their boxes.) The check stage warns about such images.
"""
import numpy as np
from PIL import Image

EXIF_ORIENTATION = 0x0112
ROTATING_ORIENTATIONS = {5, 6, 7, 8}


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
    """Fully decode an image to an HxWx3 uint8 RGB array; truncated files are refused."""
    return decode_rgb(open_image(path, max_pixels))


def decode_rgb(image):
    """Decode an opened image (see open_image) to an HxWx3 uint8 RGB array."""
    try:
        image.load()
    except (OSError, SyntaxError) as error:
        raise ImageProblem(f"image data is broken or truncated: {error}") from None
    return to_rgb_array(image)


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
    return (image.format == "JPEG" and image.mode in ("RGB", "L") and not image.info.get("progressive")
            and exif_orientation(image) == 1)


def exif_orientation(image):
    try:
        return int(image.getexif().get(EXIF_ORIENTATION, 1))
    except (ValueError, TypeError, OSError):
        return 1
