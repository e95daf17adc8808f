"""split: deterministic train/val image lists.

In order of precedence: a separate validation dataset (val_dataset) is the val set; else the splits the export
carries (the check's splits.json: a VOC folder's ImageSets/Main/{train,val}.txt, Roboflow's train/ and valid/,
data.yaml's train and val ...), its test images left out (name them as val_dataset to evaluate on them); else each
image (of the export's train split, when it names no val) goes to val when a stable hash of (seed, image id) falls
below val_fraction, so adding new images never moves old ones between train and val. A class that the
hash leaves without any val image gets its lowest-hash train image moved to val, where the data allows.

Writes each split's ids (train.txt, val.txt) and its checked records in the same order (train.json,
val.json): the pack of a split reads only its own records, so a change that leaves a split's records as
they were does not repack it.
"""

import argparse
import hashlib
import json
from pathlib import Path

from workflow.lib.cli import UserError, log, run_main


def stable_fraction(seed, image_id):
    digest = hashlib.sha256(f"{seed}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_records(records, splits, val_fraction, seed):
    """Return (train ids, val ids, how) for the checked records and the splits their export carries."""
    ids = [r["id"] for r in records]
    if len(set(ids)) != len(ids):
        raise UserError("two images share a file name (stem) across the dataset folders; rename one of them")
    if any(r["source"] == "val_dataset" for r in records):
        return _ids(records, "dataset"), _ids(records, "val_dataset"), "val_dataset"
    given = {i: splits["images"].get(i) for i in ids}
    left_out = sorted(i for i, split in given.items() if split not in ("train", "val"))
    if "val" in given.values():
        if left_out:
            log(
                f"split: {len(left_out)} images in neither the export's train nor val are left out, e.g. {left_out[:3]}"
            )
        return [i for i in ids if given[i] == "train"], [i for i in ids if given[i] == "val"], "the export's splits"
    if "train" in given.values():
        records = [r for r in records if given[r["id"]] == "train"]
        how = f"the export's train split (it names no val images), hash split: val_fraction {val_fraction}, seed {seed}"
        if left_out:
            log(f"split: {len(left_out)} images outside the export's train split are left out, e.g. {left_out[:3]}")
        return _hash_split(records, val_fraction, seed) + (how,)
    return _hash_split(records, val_fraction, seed) + (f"hash split, val_fraction {val_fraction}, seed {seed}",)


def _ids(records, source):
    return [r["id"] for r in records if r["source"] == source]


def _hash_split(records, val_fraction, seed):
    fraction = {r["id"]: stable_fraction(seed, r["id"]) for r in records}
    val = {i for i, f in fraction.items() if f < val_fraction}
    classes = sorted({o["class"] for r in records for o in r["objects"]})
    for cls in classes:
        holders = sorted((fraction[r["id"]], r["id"]) for r in records if any(o["class"] == cls for o in r["objects"]))
        if len(holders) >= 2 and not any(i in val for _, i in holders):
            val.add(holders[0][1])
    ordered = sorted(fraction, key=fraction.get)
    return [i for i in ordered if i not in val], [i for i in ordered if i in val]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.split", description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotations", required=True)
    parser.add_argument("--splits", required=True, help="the check's splits.json: the splits the export carries")
    parser.add_argument("--val-fraction", type=float, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--train-out", required=True)
    parser.add_argument("--val-out", required=True)
    parser.add_argument("--train-records", required=True, help="JSON of the train records, in train list order")
    parser.add_argument("--val-records", required=True, help="JSON of the val records, in val list order")
    args = parser.parse_args(argv)
    records = json.loads(Path(args.annotations).read_text())
    splits = json.loads(Path(args.splits).read_text())
    train, val, how = split_records(records, splits, args.val_fraction, args.seed)
    if not train or not val:
        raise UserError(f"split ({how}) gives {len(train)} train and {len(val)} val images; both need at least one")
    by_id = {r["id"]: r for r in records}
    for ids, list_out, records_out in (
        (train, args.train_out, args.train_records),
        (val, args.val_out, args.val_records),
    ):
        Path(list_out).write_text("".join(f"{i}\n" for i in ids))
        Path(records_out).write_text("[\n" + ",\n".join(json.dumps(by_id[i]) for i in ids) + "\n]\n")  # a record a line
    log(f"split: {len(train)} train, {len(val)} val ({how})")


if __name__ == "__main__":
    run_main(main)
