"""Generate the bundled sample dataset: synthetic logo-like shapes in a LabelImg-style PASCAL VOC folder.

Two classes stand in for the "nike vs adidas" story without copying any trademark:
`swoosh` (a curved, tapering tick stroke) and `stripes` (three slanted bars of increasing length).
Image i depends only on (seed, i), so any prefix of a larger run is byte-identical to a smaller run.
"""

import argparse
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np

from workflow.lib.cli import UserError, log, run_main
from workflow.lib.metrics import iou_matrix

CLASSES = ("swoosh", "stripes")
JPEG_QUALITY = 90
FAKE_LABELLER_DIR = "/home/labeler/sample/JPEGImages"
WIDTH_RANGE = (288, 416)
HEIGHT_RANGE = (224, 320)
OBJECT_SIZE_RANGE = (0.12, 0.50)  # longest side of an object, as a fraction of the image's shorter side
MAX_ROTATION_DEG = 25
MAX_IOU = 0.3
MIN_VISIBLE = 0.7
SUBPIXEL_BITS = 4  # cv2 polygon coordinates are fixed point with this many fractional bits


# ---------------------------------------------------------------- shapes (unit polygons)


def normalised(points):
    """Centre a polygon on its bounding box and scale its longest side to 1."""
    points = np.asarray(points, dtype=np.float64)
    low, high = points.min(axis=0), points.max(axis=0)
    return (points - (low + high) / 2) / (high - low).max()


def swoosh_polygon():
    """A tick-like crescent: a quadratic curve that dips then sweeps up, thick near the dip, tapering to a point."""
    t = np.linspace(0.0, 1.0, 40)[:, None]
    start, control, end = np.array([0.0, 0.30]), np.array([0.28, 0.95]), np.array([1.0, 0.0])
    centre = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end
    tangent = 2 * (1 - t) * (control - start) + 2 * t * (end - control)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1) / np.linalg.norm(tangent, axis=1, keepdims=True)
    half_width = 0.09 * t**0.6 * (1 - t) / 0.347 + 0.012
    upper, lower = centre + normal * half_width, centre - normal * half_width
    return normalised(np.vstack([upper, lower[::-1]]))


def stripes_polygons():
    """Three parallel bars slanted to the right, bottoms aligned, growing taller left to right."""
    bar_width, gap, slant = 0.22, 0.12, 0.35
    bars = []
    for index, bar_height in enumerate((0.45, 0.72, 1.0)):
        left = index * (bar_width + gap)
        top = 1.0 - bar_height
        shift = slant * bar_height
        bars.append([(left, 1.0), (left + bar_width, 1.0), (left + bar_width + shift, top), (left + shift, top)])
    flat = normalised(np.concatenate(bars))
    return [flat[i : i + 4] for i in range(0, 12, 4)]


SHAPES = {"swoosh": lambda: [swoosh_polygon()], "stripes": stripes_polygons}


# ---------------------------------------------------------------- drawing helpers


def to_fixed_point(polygons):
    return [np.round(p * (1 << SUBPIXEL_BITS)).astype(np.int32) for p in polygons]


def fill_polygons(image, polygons, colour):
    cv2.fillPoly(image, to_fixed_point(polygons), colour, lineType=cv2.LINE_AA, shift=SUBPIXEL_BITS)


def polygon_mask(polygons, height, width):
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, to_fixed_point(polygons), 1, lineType=cv2.LINE_8, shift=SUBPIXEL_BITS)
    return mask.astype(bool)


def random_colour(rng):
    return tuple(int(c) for c in rng.integers(0, 256, size=3))


def luminance(colour):
    blue, green, red = colour
    return 0.114 * blue + 0.587 * green + 0.299 * red


def contrasting_colour(rng, image, mask, min_difference=60):
    """A random colour whose brightness differs clearly from the image under `mask`."""
    under = tuple(image[mask].mean(axis=0))
    best = None
    for _ in range(20):
        colour = random_colour(rng)
        difference = abs(luminance(colour) - luminance(under))
        if difference >= min_difference:
            return colour
        if best is None or difference > best[0]:
            best = (difference, colour)
    return best[1]


def rotation(degrees):
    angle = math.radians(degrees)
    return np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])


# ---------------------------------------------------------------- backgrounds and distractors


def gradient_background(rng, height, width):
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:height, 0:width]
    along = xs * math.cos(angle) + ys * math.sin(angle)
    along = (along - along.min()) / (along.max() - along.min())
    start, end = np.array(random_colour(rng)), np.array(random_colour(rng))
    return np.round(start + along[..., None] * (end - start)).astype(np.uint8)


def noise_background(rng, height, width):
    """Smooth colour blotches: a coarse random grid upscaled, plus a little fine grain."""
    cells = int(rng.integers(3, 12))
    coarse = rng.integers(0, 256, size=(cells, cells, 3), dtype=np.uint8)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)
    grain = rng.normal(0, rng.uniform(1, 4), size=image.shape)
    return np.clip(image + grain, 0, 255).round().astype(np.uint8)


def draw_distractor(rng, image, centre, size, colour):
    """A random circle, ring, rotated rectangle or line: never one of the classes."""
    kind = rng.choice(["circle", "ring", "rectangle", "line"])
    cx, cy = (int(round(v)) for v in centre)
    if kind in ("circle", "ring"):
        thickness = -1 if kind == "circle" else max(2, int(size * rng.uniform(0.08, 0.2)))
        cv2.circle(image, (cx, cy), max(2, int(size / 2)), colour, thickness, cv2.LINE_AA)
    elif kind == "rectangle":
        half = np.array([size / 2, size * rng.uniform(0.25, 1.0) / 2])
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
        fill_polygons(image, [corners @ rotation(rng.uniform(0, 180)).T + centre], colour)
    else:
        offset = rotation(rng.uniform(0, 180)) @ np.array([size / 2, 0.0])
        start, end = (tuple(int(v) for v in np.round(point)) for point in (centre - offset, centre + offset))
        cv2.line(image, start, end, colour, max(1, int(size * rng.uniform(0.03, 0.12))), cv2.LINE_AA)


def draw_clutter(rng, image):
    height, width = image.shape[:2]
    short_side = min(height, width)
    for _ in range(int(rng.integers(0, 9))):
        centre = rng.uniform([0, 0], [width, height])
        draw_distractor(rng, image, centre, short_side * rng.uniform(0.05, 0.35), random_colour(rng))


def background(rng, height, width):
    maker = gradient_background if rng.random() < 0.5 else noise_background
    image = maker(rng, height, width)
    draw_clutter(rng, image)
    return image


# ---------------------------------------------------------------- object placement


def random_object(rng, name, height, width):
    """The class's polygons scaled, aspect-jittered, rotated and moved to a random spot fully inside the image."""
    # uniform in area rather than side length, so that tiny objects are not over-represented
    smallest, largest = OBJECT_SIZE_RANGE
    size = math.sqrt(rng.uniform(smallest**2, largest**2)) * min(height, width)
    aspect = math.exp(rng.uniform(-0.2, 0.2))
    transform = rotation(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)) @ np.diag([size * aspect, size / aspect])
    polygons = [p @ transform.T for p in SHAPES[name]()]
    points = np.concatenate(polygons)
    margin = 2
    lowest_offset = margin - points.min(axis=0)
    highest_offset = np.array([width - 1, height - 1]) - margin - points.max(axis=0)
    offset = rng.uniform(lowest_offset, highest_offset)
    return {"name": name, "polygons": [p + offset for p in polygons]}


def box_of(mask):
    """(xmin, ymin, xmax, ymax) of a mask's pixels, 0-based and inclusive."""
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return cols[0], rows[0], cols[-1], rows[-1]


def pixel_iou(a, b):
    """IoU of two boxes of whole pixels, corners inclusive (each pixel a unit square)."""
    squares = np.array([a, b], np.float64) + [0, 0, 1, 1]
    return iou_matrix(squares[:1], squares[1:])[0, 0]


def visible_masks(masks, cover=None):
    """Each mask minus everything drawn after it (later masks, then an optional cover on top)."""
    hidden = np.zeros_like(masks[0]) if cover is None else cover.copy()
    visible = []
    for mask in reversed(masks):
        visible.append(mask & ~hidden)
        hidden |= mask
    return visible[::-1]


def enough_visible(masks, cover=None):
    return all(v.sum() >= MIN_VISIBLE * m.sum() for m, v in zip(masks, visible_masks(masks, cover)))


def place_objects(rng, height, width):
    """1-3 objects of mixed classes, pairwise box IoU < MAX_IOU, each at least MIN_VISIBLE unhidden."""
    wanted = int(rng.integers(1, 4))
    objects = []
    for _ in range(wanted):
        name = CLASSES[int(rng.integers(0, len(CLASSES)))]
        for _attempt in range(30):
            candidate = random_object(rng, name, height, width)
            candidate["mask"] = polygon_mask(candidate["polygons"], height, width)
            box = box_of(candidate["mask"])
            masks = [o["mask"] for o in objects] + [candidate["mask"]]
            if all(pixel_iou(box, box_of(o["mask"])) < MAX_IOU for o in objects) and enough_visible(masks):
                objects.append(candidate)
                break
    return objects


def occluder(rng, objects, height, width):
    """Sometimes a distractor over the edge of one object, hiding a bit of it but at most 1 - MIN_VISIBLE."""
    if rng.random() >= 0.25:
        return None
    target = objects[int(rng.integers(0, len(objects)))]
    xmin, ymin, xmax, ymax = box_of(target["mask"])
    object_size = max(xmax - xmin, ymax - ymin)
    masks = [o["mask"] for o in objects]
    for _ in range(20):
        centre = rng.uniform([xmin, ymin], [xmax, ymax])
        side = int(rng.integers(0, 4))  # centre the occluder on the left, top, right or bottom edge of the box
        centre[side % 2] = (xmin, ymin, xmax, ymax)[side]
        size = object_size * rng.uniform(0.3, 0.6)
        colour = random_colour(rng)
        layer = np.zeros((height, width, 3), np.uint8)
        draw_distractor(rng, layer, centre, size, (255, 255, 255))
        cover = layer[..., 0] > 127
        hidden = (target["mask"] & cover).sum() / target["mask"].sum()
        if 0.05 <= hidden and enough_visible(masks, cover):
            return {"layer": layer, "colour": colour}
    return None


# ---------------------------------------------------------------- image effects


def photometric_jitter(rng, image):
    """Blur, contrast/brightness, sensor noise and an occasional low-quality JPEG round trip."""
    sigma = rng.uniform(0.0, 1.2)
    if sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    contrast, brightness = rng.uniform(0.75, 1.25), rng.uniform(-30, 30)
    noise = rng.normal(0, rng.uniform(0, 3), size=image.shape)
    image = np.clip(image * contrast + brightness + noise, 0, 255).round().astype(np.uint8)
    if rng.random() < 0.5:
        quality = int(rng.integers(30, 75))
        image = cv2.imdecode(encode_jpeg(image, quality), cv2.IMREAD_COLOR)
    return image


def encode_jpeg(image, quality):
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV failed to encode a JPEG")
    return data


# ---------------------------------------------------------------- one sample


def blend_layer(image, layer, colour):
    """Paint `colour` over `image` with the anti-aliased white-on-black `layer` as its opacity."""
    alpha = layer.astype(np.float64) / 255
    return np.round(image * (1 - alpha) + np.array(colour) * alpha).astype(np.uint8)


def image_rng(seed, index):
    return np.random.default_rng([seed, index])


def render_sample(seed, index):
    """The image (BGR uint8) and its labelled boxes [(name, xmin, ymin, xmax, ymax)], 1-based inclusive pixels."""
    rng = image_rng(seed, index)
    width = int(rng.integers(WIDTH_RANGE[0], WIDTH_RANGE[1] + 1))
    height = int(rng.integers(HEIGHT_RANGE[0], HEIGHT_RANGE[1] + 1))
    image = background(rng, height, width)
    objects = place_objects(rng, height, width)
    for obj in objects:
        fill_polygons(image, obj["polygons"], contrasting_colour(rng, image, obj["mask"]))
    cover = occluder(rng, objects, height, width)
    cover_mask = None
    if cover is not None:
        image = blend_layer(image, cover["layer"], cover["colour"])
        cover_mask = cover["layer"][..., 0] > 127
    visible = visible_masks([o["mask"] for o in objects], cover_mask)
    boxes = [(o["name"], *(int(v) + 1 for v in box_of(v_mask))) for o, v_mask in zip(objects, visible)]
    return photometric_jitter(rng, image), boxes


# ---------------------------------------------------------------- LabelImg XML


def labelimg_xml(filename, width, height, boxes):
    """The annotation exactly as LabelImg lays it out (tab indented, no XML declaration)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = filename
    ET.SubElement(root, "path").text = f"{FAKE_LABELLER_DIR}/{filename}"
    ET.SubElement(ET.SubElement(root, "source"), "database").text = "Unknown"
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for name, *coordinates in boxes:
        obj = ET.SubElement(root, "object")
        for tag, value in (("name", name), ("pose", "Unspecified"), ("truncated", "0"), ("difficult", "0")):
            ET.SubElement(obj, tag).text = value
        bndbox = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), coordinates):
            ET.SubElement(bndbox, tag).text = str(value)
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode") + "\n"


def sample_name(index):
    return f"sample_{index + 1:04d}"


def write_sample(out, seed, index):
    image, boxes = render_sample(seed, index)
    name = sample_name(index)
    height, width = image.shape[:2]
    (out / "JPEGImages" / f"{name}.jpg").write_bytes(encode_jpeg(image, JPEG_QUALITY).tobytes())
    annotation = labelimg_xml(f"{name}.jpg", width, height, boxes)
    (out / "Annotations" / f"{name}.xml").write_text(annotation, encoding="utf-8")
    return boxes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write JPEGImages/ and Annotations/ into")
    parser.add_argument("--count", type=int, default=160, help="number of images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.count < 1:
        raise UserError(f"--count must be at least 1, got {args.count}")
    if args.seed < 0:
        raise UserError(f"--seed must be non-negative, got {args.seed}")
    for sub in ("JPEGImages", "Annotations"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    per_class = dict.fromkeys(CLASSES, 0)
    for index in range(args.count):
        for name, *_ in write_sample(args.out, args.seed, index):
            per_class[name] += 1
    log(f"wrote {args.count} images to {args.out}: " + ", ".join(f"{n} {c}" for c, n in per_class.items()))


if __name__ == "__main__":
    run_main(main)
