"""Training speed of workflow.train, for comparison with the original apache/mxnet example/ssd train.py.

Packs the first --images of the cards train split with this project's check and pack stages, trains the
given network for --epochs at the given data shape and batch size on the CPU, and prints samples/s per
epoch. The reference: the original example trains ResNet-50 SSD 300 at batch 4 on 2 cores at about
2.0 samples/s (measured on this kind of machine; its code is not part of this project).

    .venvs/mxnet-*/bin/python benchmarks/train_speed.py --network resnet50 --data-shape 300 --batch-size 4
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CARDS = REPO.parent / "shared" / "datasets" / "cards" / "train"
CLASSES = ["nine", "ten", "jack", "queen", "king", "ace"]
REFERENCE_SAMPLES_PER_S = {("resnet50", 300, 4): 2.0}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="resnet50")
    parser.add_argument("--data-shape", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    from workflow import check, pack, train

    records, _ = check.check_dataset(CARDS, check.Settings(CLASSES, {}, 50_000_000, True))
    with tempfile.TemporaryDirectory() as work:
        pack.pack(
            records[: args.images],
            Path(work) / "train",
            max_side=512,
            quality=90,
            max_pixels=50_000_000,
            processes=args.threads,
        )
        options = train.parse_args(
            [
                "--train-rec",
                str(Path(work) / "train.rec"),
                "--classes",
                json.dumps(CLASSES),
                "--network",
                args.network,
                "--data-shape",
                str(args.data_shape),
                "--batch-size",
                str(args.batch_size),
                "--begin-epoch",
                "0",
                "--end-epoch",
                str(args.epochs),
                "--learning-rate",
                "0.05",
                "--momentum",
                "0.9",
                "--wd",
                "0.0005",
                "--warmup-epochs",
                "0",
                "--lr-steps",
                "",
                "--lr-factor",
                "0.1",
                "--freeze=",
                "--mirror",
                "--seed",
                "0",
                "--budget-minutes",
                "0",
                "--patience",
                "0",
                "--patience-smoothing",
                "1",
                "--gpus",
                "",
                "--threads",
                str(args.threads),
                "--out",
                str(Path(work) / "out"),
            ]
        )
        rows = train.train(options)
    print(
        f"\n{args.network} SSD {args.data_shape}, batch {args.batch_size}, {args.images} images, {args.threads} threads"
    )
    for row in rows:
        print(f"  epoch {row['epoch']}: {row['samples_per_s']:.2f} samples/s")
    best = max(row["samples_per_s"] for row in rows)
    reference = REFERENCE_SAMPLES_PER_S.get((args.network, args.data_shape, args.batch_size))
    if reference:
        print(
            f"  best {best:.2f} samples/s vs the original example/ssd train.py {reference:.2f}: {best / reference:.2f}x"
        )


if __name__ == "__main__":
    main()
