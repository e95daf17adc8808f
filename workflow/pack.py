"""pack: one split's images into an im2rec-format .lst and an MXNet RecordIO .rec/.idx.

Record i holds the image (RGB as decoded by workflow.images, optionally downscaled so its longer side is
at most --max-side, JPEG-encoded as im2rec does) and the label [2, 6, cls, xmin, ymin, xmax, ymax,
difficult, ...] with coordinates normalised to [0, 1], which mx.io.ImageDetRecordIter reads. Images are
decoded and encoded in parallel but written in list order, so identical input gives identical bytes.
"""
import argparse
import json
import os
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np

from workflow.cli import Progress, UserError, log, run_main
from workflow.images import ImageProblem, load_rgb

HEADER = [2, 6]  # header width, values per object


def label_of(record):
    values = list(HEADER)
    for obj in record["objects"]:
        xmin, ymin, xmax, ymax = obj["box"]
        w, h = record["width"], record["height"]
        values += [obj["class"], xmin / w, ymin / h, xmax / w, ymax / h, obj["difficult"]]
    return np.array(values, dtype=np.float32)


def encode(task):
    """Decode, downscale and JPEG-encode one image; runs in a worker process."""
    path, max_side, quality, max_pixels = task
    try:
        rgb = load_rgb(path, max_pixels)
    except ImageProblem as error:
        return f"{path}: {error}"
    scale = max_side / max(rgb.shape[:2]) if max_side else 1.0
    if scale < 1.0:
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return jpeg.tobytes()


def lst_line(index, record, label):
    values = "\t".join(f"{v:.4f}" for v in label[2:])
    fields = [str(index), "2", "6"] + ([values] if values else []) + [record["image"]]
    return "\t".join(fields) + "\n"


def pack(records, out_prefix, max_side, quality, max_pixels, processes):
    import mxnet as mx  # imported late: worker processes only need OpenCV and Pillow

    out_prefix = Path(out_prefix)
    tmp = {suffix: out_prefix.with_suffix(f".{suffix}.part") for suffix in ("rec", "idx", "lst")}
    writer = mx.recordio.MXIndexedRecordIO(str(tmp["idx"]), str(tmp["rec"]), "w")
    progress = Progress(f"pack {out_prefix.name}", len(records))
    tasks = [(r["image"], max_side, quality, max_pixels) for r in records]
    with Pool(processes) as pool, open(tmp["lst"], "w") as lst:
        for index, (record, jpeg) in enumerate(zip(records, pool.imap(encode, tasks, chunksize=4))):
            if isinstance(jpeg, str):
                raise UserError(f"cannot pack {jpeg}")
            label = label_of(record)
            writer.write_idx(index, mx.recordio.pack(mx.recordio.IRHeader(0, label, index, 0), jpeg))
            lst.write(lst_line(index, record, label))
            progress.update(index + 1)
    writer.close()
    for suffix, path in tmp.items():
        os.replace(path, out_prefix.with_suffix(f".{suffix}"))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.pack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotations", required=True)
    parser.add_argument("--ids", required=True, help="the split's list of image ids")
    parser.add_argument("--out-prefix", required=True, help="writes PREFIX.lst, PREFIX.rec and PREFIX.idx")
    parser.add_argument("--max-side", type=int, default=0, help="downscale so the longer side is at most this (0 = keep)")
    parser.add_argument("--jpeg-quality", type=int, default=90)
    parser.add_argument("--max-image-pixels", type=int, default=50_000_000)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args(argv)
    by_id = {r["id"]: r for r in json.loads(Path(args.annotations).read_text())}
    ids = Path(args.ids).read_text().split()
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise UserError(f"{args.ids}: ids without a checked annotation: {missing[:5]}")
    pack([by_id[i] for i in ids], args.out_prefix, args.max_side, args.jpeg_quality, args.max_image_pixels, args.processes)
    log(f"pack: {len(ids)} images -> {args.out_prefix}.rec")


if __name__ == "__main__":
    run_main(main)
