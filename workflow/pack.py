"""pack: one split's images into an im2rec-format .lst and an MXNet RecordIO .rec/.idx.

Record i holds the image and the label [2, 6, cls, xmin, ymin, xmax, ymax, difficult, ...] with
coordinates normalised to [0, 1], which mx.io.ImageDetRecordIter reads. A complete baseline RGB or gray JPEG
without EXIF rotation that needs no downscaling is stored as it is (its pixels are exactly what the check saw);
any other image is decoded as workflow.lib.images does, downscaled so its longer side is at most --max-side
(a JPEG is decoded at 1/2, 1/4 or 1/8 scale first where that stays above the target), and JPEG-encoded as
im2rec does. Images are prepared in parallel but written in list order, so identical input gives identical
bytes.
"""

import argparse
import io
import json
import os
import struct
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np

from workflow.lib.cli import Progress, UserError, log, run_main
from workflow.lib.images import ImageProblem, decode_rgb, is_plain_jpeg, open_image

HEADER = [2, 6]  # header width, values per object
RECORDIO_MAGIC = struct.pack("<I", 0xCED7230A)


def label_of(record):
    values = list(HEADER)
    for obj in record["objects"]:
        xmin, ymin, xmax, ymax = obj["box"]
        w, h = record["width"], record["height"]
        values += [obj["class"], xmin / w, ymin / h, xmax / w, ymax / h, obj["difficult"]]
    return np.array(values, dtype=np.float32)


def target_size(width, height, max_side):
    """(width, height) after downscaling so that the longer side is at most max_side (0 keeps the size)."""
    scale = max_side / max(width, height) if max_side else 1.0
    if scale >= 1.0:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def encode(task):
    """The JPEG bytes of one record, or an error message; runs in a worker process."""
    path, max_side, quality, max_pixels, pass_through, ends_early = task
    try:
        data = Path(path).read_bytes()
        image = open_image(io.BytesIO(data), max_pixels)
        size = target_size(image.width, image.height, max_side)
        if size == image.size and pass_through and not ends_early and is_plain_jpeg(image):
            return data
        if size != image.size:
            image.draft(None, size)  # JPEG only: decode at a reduced scale, never below the target size
        rgb = decode_rgb(image, ends_early)
    except (ImageProblem, OSError) as error:
        return f"{path}: {error}"
    if rgb.shape[1::-1] != size:
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return jpeg.tobytes()


def lst_line(index, record, label):
    values = "\t".join(f"{v:.4f}" for v in label[2:])
    fields = [str(index), "2", "6"] + ([values] if values else []) + [record["image"]]
    return "\t".join(fields) + "\n"


def record_payload(label, index, jpeg):
    """mx.recordio.pack(IRHeader(0, label, index, 0), jpeg): header (flag = label length, 0, id, id2), label, image."""
    return struct.pack("<IfQQ", label.size, 0.0, index, 0) + label.astype("<f4").tobytes() + jpeg


def recordio_frame(payload):
    """One record as MXNet's RecordIO writer (dmlc-core RecordIOWriter::WriteRecord) frames it, byte for byte:
    magic, length word (continuation flag << 29 | part length), part, and zero padding to 4 bytes at the end.
    A magic word at an aligned offset inside the payload splits it into parts (flags 1, 2 ... 3), the magic
    itself left out, so a reader can always find record starts. Written here because importing MXNet for its
    writer takes 1.6 s, longer than packing a few hundred images."""
    parts, start = [], 0
    found = payload.find(RECORDIO_MAGIC)
    while found != -1:
        if found % 4 == 0:
            parts.append((1 if start == 0 else 2, payload[start:found]))
            start = found + 4
        found = payload.find(RECORDIO_MAGIC, found + 1)
    parts.append((3 if start else 0, payload[start:]))
    framed = b"".join(RECORDIO_MAGIC + struct.pack("<I", flag << 29 | len(part)) + part for flag, part in parts)
    return framed + bytes(-len(payload) % 4)


def pack(records, out_prefix, max_side, quality, max_pixels, processes, pass_through=True):
    """Write OUT_PREFIX.{rec,idx,lst} (what mx.recordio.MXIndexedRecordIO writes, and im2rec's list);
    pass_through=False re-encodes every image (for comparisons)."""
    out_prefix = Path(out_prefix)
    tmp = {suffix: out_prefix.with_suffix(f".{suffix}.part") for suffix in ("rec", "idx", "lst")}
    progress = Progress(f"pack {out_prefix.name}", len(records))
    tasks = [
        (r["image"], max_side, quality, max_pixels, pass_through, r.get("jpeg_ends_early", False)) for r in records
    ]
    with (
        Pool(processes) as pool,
        open(tmp["rec"], "wb") as rec,
        open(tmp["idx"], "w") as idx,
        open(tmp["lst"], "w") as lst,
    ):
        for index, (record, jpeg) in enumerate(zip(records, pool.imap(encode, tasks, chunksize=4))):
            if isinstance(jpeg, str):
                raise UserError(f"cannot pack {jpeg}")
            label = label_of(record)
            idx.write(f"{index}\t{rec.tell()}\n")
            rec.write(recordio_frame(record_payload(label, index, jpeg)))
            lst.write(lst_line(index, record, label))
            progress.update(index + 1)
    for suffix, path in tmp.items():
        os.replace(path, out_prefix.with_suffix(f".{suffix}"))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.pack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", required=True, help="the split's checked records (JSON list, in list order)")
    parser.add_argument("--out-prefix", required=True, help="writes PREFIX.lst, PREFIX.rec and PREFIX.idx")
    parser.add_argument(
        "--max-side", type=int, required=True, help="downscale so the longer side is at most this (0 = keep)"
    )
    parser.add_argument("--jpeg-quality", type=int, required=True)
    parser.add_argument("--max-image-pixels", type=int, required=True)
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument(
        "--re-encode", action="store_true", help="re-encode every image, also JPEGs that could be stored as they are"
    )
    args = parser.parse_args(argv)
    records = json.loads(Path(args.records).read_text())
    pack(
        records,
        args.out_prefix,
        args.max_side,
        args.jpeg_quality,
        args.max_image_pixels,
        args.processes,
        pass_through=not args.re_encode,
    )
    log(f"pack: {len(records)} images -> {args.out_prefix}.rec")


if __name__ == "__main__":
    run_main(main)
