"""Pack speed: our pack stage against MXNet's own tools/im2rec.py on the same images.

Both run as commands, start-up and imports included, as a workflow job would, and pack the same list of
images with 2 workers, no resize, the same JPEG quality and the labels packed (im2rec --pack-label).
im2rec decodes every image with OpenCV and re-encodes it; ours stores a JPEG that needs no change as it is
(pass-through) and re-encodes the rest, and writes RecordIO without importing MXNet. Ours is also timed with
--re-encode (every image decoded and re-encoded, like for like with im2rec). Each is run --repeat times and
the best time counts. The records are checked first (not timed).

    .venvs/mxnet-<hash>/bin/python benchmarks/pack_speed.py [--dataset ../shared/datasets/cards/train]
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from workflow import check, pack  # noqa: E402

IM2REC = Path(importlib.util.find_spec("mxnet").origin).parent / "tools" / "im2rec.py"
CARDS = REPO.parent / "shared" / "datasets" / "cards" / "train"
CARD_CLASSES = ["nine", "ten", "jack", "queen", "king", "ace"]


def checked_records(dataset, classes):
    records, problems = check.check_dataset(dataset, check.Settings(classes, {}, 50_000_000, True))
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        sys.exit(f"{dataset}: {len(errors)} check errors, e.g. {errors[0]}")
    return records


def write_im2rec_list(records, path):
    """The im2rec .lst of the records: the same lines our pack writes (absolute image paths)."""
    with open(path, "w") as handle:
        for index, record in enumerate(records):
            handle.write(pack.lst_line(index, record, pack.label_of(record)))


def time_ours(records, prefix, quality, pass_through):
    """Our pack stage as the workflow runs it: a `python -m workflow.pack` command."""
    Path(f"{prefix}.json").write_text(json.dumps(records))
    command = [
        sys.executable,
        "-m",
        "workflow.pack",
        "--records",
        f"{prefix}.json",
        "--out-prefix",
        str(prefix),
        "--max-side",
        "0",
        "--jpeg-quality",
        str(quality),
        "--processes",
        "2",
    ] + ([] if pass_through else ["--re-encode"])
    return timed(command)


def time_im2rec(records, prefix, quality):
    write_im2rec_list(records, f"{prefix}.lst")
    command = [
        sys.executable,
        str(IM2REC),
        "--pack-label",
        "--num-thread",
        "2",
        "--quality",
        str(quality),
        "--no-shuffle",
        str(prefix),
        "/",
    ]
    return timed(command)


def timed(command):
    """Seconds a command takes, start-up and imports included (as the workflow runs it)."""
    start = time.perf_counter()
    subprocess.run(
        command,
        check=True,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=str(CARDS), help="a VOC folder")
    parser.add_argument("--classes", default=",".join(CARD_CLASSES))
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    records = checked_records(
        Path(args.dataset).resolve(), args.classes.split(",")
    )  # absolute paths: im2rec's root is /
    megabytes = sum(Path(r["image"]).stat().st_size for r in records) / 1e6
    runs = [
        ("im2rec.py --pack-label --num-thread 2", "im2rec", lambda prefix: time_im2rec(records, prefix, args.quality)),
        ("ours, processes=2", "ours", lambda prefix: time_ours(records, prefix, args.quality, True)),
        ("ours, processes=2, --re-encode", "reencoded", lambda prefix: time_ours(records, prefix, args.quality, False)),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, stem, measure in runs:
            seconds = min(measure(Path(tmp) / stem) for _ in range(args.repeat))
            rows.append((name, seconds, (Path(tmp) / f"{stem}.rec").stat().st_size / 1e6))
    print(
        f"\n{len(records)} images ({megabytes:.1f} MB) from {args.dataset}; no resize, JPEG quality {args.quality}, "
        f"best of {args.repeat}\n"
    )
    print(f"{'packer':<40} {'time (s)':>9} {'images/s':>9} {'.rec (MB)':>10} {'im2rec time / this':>19}")
    for name, seconds, size in rows:
        print(f"{name:<40} {seconds:>9.2f} {len(records) / seconds:>9.1f} {size:>10.1f} {rows[0][1] / seconds:>19.2f}")


if __name__ == "__main__":
    main()
