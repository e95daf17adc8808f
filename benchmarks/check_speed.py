"""Check speed per image: the check of the cards' train images (296 phone photos, VOC as shipped) and of the same
labels written as each tool exports them (tests/mxnet/exports.py's writers), best of --repeat, in this process
(imports excluded: the whole command is timed with farm-bench against the check of another commit, docs/benchmarks.md).

    .venvs/mxnet-<hash>/bin/python benchmarks/check_speed.py [--repeat 3]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests" / "mxnet")]
from exports import WRITERS  # noqa: E402

from workflow import check  # noqa: E402
from workflow.lib import cpu, voc  # noqa: E402

CARDS = REPO.parent / "shared" / "datasets" / "cards" / "train"
CLASSES = ["nine", "ten", "jack", "queen", "king", "ace"]


def best_ms_per_image(dataset, repeat):
    settings = check.Settings(CLASSES, {}, 50_000_000, True)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        records, problems = check.check_dataset(dataset, settings)
        times.append(time.perf_counter() - start)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        sys.exit(f"{dataset}: {len(errors)} errors, e.g. {errors[0]}")
    return min(times) * 1000 / len(records), len(records)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    items = [
        (e.image, e.width, e.height, [(b.label, b.xmin, b.ymin, b.xmax, b.ymax) for b in e.boxes])
        for e in voc.read_voc(CARDS).entries
    ]
    print(f"{cpu.one_line()}")
    ms, count = best_ms_per_image(CARDS, args.repeat)
    print(f"voc (as shipped)   {count} images  {ms:.2f} ms per image")
    with tempfile.TemporaryDirectory() as work:
        for name, writer in WRITERS.items():
            dataset = writer(items, CLASSES, Path(work) / name)
            ms, count = best_ms_per_image(dataset, args.repeat)
            print(f"{name:18} {count} images  {ms:.2f} ms per image")


if __name__ == "__main__":
    main()
