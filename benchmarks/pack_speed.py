"""Pack speed: our pack stage against MXNet's own tools/im2rec.py on the same images.

Both run as commands (start-up and imports included) and pack the same list of images with 2 workers, no resize, the same JPEG quality and the labels packed
(im2rec --pack-label). im2rec decodes with OpenCV and re-encodes every image; ours stores a JPEG that
needs no change as it is (pass-through) and re-encodes the rest. Ours is also timed with pass-through off
(everything re-encoded) so that the like-for-like figure is there too. Each is run `--repeat` times; the best
time counts. The records are checked first (not timed).

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
    command = [sys.executable, "-m", "workflow.pack", "--records", f"{prefix}.json", "--out-prefix", str(prefix),
               "--max-side", "0", "--jpeg-quality", str(quality), "--processes", "2"] + ([] if pass_through else ["--re-encode"])
    return timed(command)


def time_im2rec(records, prefix, quality):
    write_im2rec_list(records, f"{prefix}.lst")
    command = [sys.executable, str(IM2REC), "--pack-label", "--num-thread", "2", "--quality", str(quality),
               "--no-shuffle", str(prefix), "/"]
    return timed(command)


def timed(command):
    """Seconds a command takes, start-up and imports included (as the workflow runs it)."""
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=dict(os.environ, OMP_NUM_THREADS="1"))
    return time.perf_counter() - start


def best_of(repeat, measure):
    return min(measure() for _ in range(repeat))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=str(CARDS), help="a VOC folder")
    parser.add_argument("--classes", default=",".join(CARD_CLASSES))
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    records = checked_records(args.dataset, args.classes.split(","))
    megabytes = sum(Path(r["image"]).stat().st_size for r in records) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        times = {
            "im2rec.py --pack-label --num-thread 2": best_of(args.repeat, lambda: time_im2rec(records, tmp / "im2rec", args.quality)),
            "ours, processes=2": best_of(args.repeat, lambda: time_ours(records, tmp / "ours", args.quality, True)),
            "ours, processes=2, pass-through off": best_of(args.repeat, lambda: time_ours(records, tmp / "reenc", args.quality, False)),
        }
        sizes = {name: (tmp / f"{stem}.rec").stat().st_size / 1e6 for name, stem in zip(times, ("im2rec", "ours", "reenc"))}
    print(f"\n{len(records)} images ({megabytes:.1f} MB) from {args.dataset}; no resize, JPEG quality {args.quality}, "
          f"best of {args.repeat}\n")
    reference = times["im2rec.py --pack-label --num-thread 2"]
    print(f"{'packer':<40} {'time (s)':>9} {'images/s':>9} {'.rec (MB)':>10} {'im2rec time / this':>19}")
    for name, seconds in times.items():
        print(f"{name:<40} {seconds:>9.2f} {len(records) / seconds:>9.1f} {sizes[name]:>10.1f} {reference / seconds:>19.2f}")


if __name__ == "__main__":
    main()
