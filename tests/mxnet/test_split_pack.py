import hashlib
import io
import json
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
import pytest
from PIL import Image

from workflow import check, pack, split
from workflow.lib.images import exif_orientation, jpeg_ends_early, load_rgb

CLASSES = ["swoosh", "stripes"]
NO_SPLITS = {"named": [], "images": {}}  # the check's splits.json of an export that carries none


def checked(root):
    records, problems = check.check_dataset(root, check.Settings(CLASSES, {}, 50_000_000, True))
    assert problems == []
    return records


def fake_records(n, cls=0):
    return [{"id": f"img{i:03d}", "source": "dataset", "objects": [{"class": cls}]} for i in range(n)]


def test_hash_split_is_stable_when_images_are_added(tmp_path):
    train, val, _ = split.split_records(fake_records(100), NO_SPLITS, 0.2, seed=3)
    assert 10 < len(val) < 30 and not set(train) & set(val)
    train2, val2, _ = split.split_records(fake_records(150), NO_SPLITS, 0.2, seed=3)
    assert set(val) <= set(val2) and set(train) <= set(train2)
    _, val_other_seed, _ = split.split_records(fake_records(100), NO_SPLITS, 0.2, seed=4)
    assert val_other_seed != val


def test_every_class_gets_a_val_image_where_possible(tmp_path):
    records = fake_records(40) + [{"id": f"rare{i}", "source": "dataset", "objects": [{"class": 1}]} for i in range(2)]
    _, val, _ = split.split_records(records, NO_SPLITS, 0.05, seed=0)
    assert any(i.startswith("rare") for i in val)


def test_image_sets_are_used_when_present(voc):
    root = voc(5)
    ids = sorted(p.stem for p in (root / "Annotations").glob("*.xml"))
    sets = root / "ImageSets" / "Main"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("".join(f"{i}\n" for i in ids[:3]))
    (sets / "val.txt").write_text(f"{ids[3]}\n")
    records, problems, splits = check.check_export(root, check.Settings(CLASSES, {}, 50_000_000, True))
    assert problems == [] and splits["named"] == ["train", "val"]
    train, val, how = split.split_records(records, splits, 0.5, seed=0)
    assert (train, val) == (ids[:3], ids[3:4]) and how == "the export's splits"  # ids[4] is in neither: left out
    (sets / "val.txt").write_text(f"{ids[3]}\n{ids[1]}\n")
    _, problems, _ = check.check_export(root, check.Settings(CLASSES, {}, 50_000_000, True))
    assert [(p.problem, p.message) for p in problems] == [
        ("in-two-splits", f"image {ids[1]} is in train.txt and in val.txt")
    ]
    (sets / "train.txt").write_bytes(b"\xff\xfe\x00 not text")
    with pytest.raises(check.UserError, match=f"{sets / 'train.txt'} is no UTF-8 text"):
        check.check_export(root, check.Settings(CLASSES, {}, 50_000_000, True))


def test_pack_is_byte_identical_and_reads_back_through_image_det_record_iter(voc, tmp_path):
    records = checked(voc(6))
    for run in ("a", "b"):
        pack.pack(records, tmp_path / run, max_side=160, quality=90, max_pixels=50_000_000, processes=2)
    digest = {run: hashlib.sha256((tmp_path / f"{run}.rec").read_bytes()).hexdigest() for run in ("a", "b")}
    assert digest["a"] == digest["b"]
    first = (tmp_path / "a.lst").read_text().splitlines()[0].split("\t")
    assert first[:3] == ["0", "2", "6"] and first[-1] == records[0]["image"]

    iterator = mx.io.ImageDetRecordIter(
        path_imgrec=str(tmp_path / "a.rec"), batch_size=6, data_shape=(3, 96, 96), label_pad_width=60, shuffle=False
    )
    labels = iterator.next().label[0].asnumpy()
    for record, raw in zip(records, labels):
        # the iterator prepends (channels, height, width, label length) to the packed [2, 6, objects...]
        assert raw[:6].tolist() == [3, 96, 96, 2 + 6 * len(record["objects"]), 2, 6]
        rows = raw[6 : 6 + 6 * len(record["objects"])].reshape(-1, 6)
        assert (raw[6 + 6 * len(record["objects"]) :] == -1).all()
        expected = [
            [
                o["class"],
                o["box"][0] / record["width"],
                o["box"][1] / record["height"],
                o["box"][2] / record["width"],
                o["box"][3] / record["height"],
                o["difficult"],
            ]
            for o in record["objects"]
        ]
        np.testing.assert_allclose(rows[:, :6], expected, atol=1e-6)


def test_pack_downscales_to_max_side(voc, tmp_path):
    records = checked(voc(1))
    pack.pack(records, tmp_path / "p", max_side=100, quality=90, max_pixels=50_000_000, processes=1)
    reader = mx.recordio.MXIndexedRecordIO(str(tmp_path / "p.idx"), str(tmp_path / "p.rec"), "r")
    _, image = mx.recordio.unpack_img(reader.read_idx(0))
    assert max(image.shape[:2]) == 100


def test_record_files_are_byte_identical_to_mxnets_writer(tmp_path):
    magic = pack.RECORDIO_MAGIC
    jpegs = [
        b"",
        b"a",
        b"ab",
        b"abc",
        b"abcd",
        magic,
        b"xxxx" + magic + b"yy",
        b"x" + magic + b"yyy",
        magic + b"zz" + magic * 2,
        bytes(range(256)) * 3 + magic,
    ]  # the magic word splits a record where it sits at a 4-byte boundary
    label = np.array([2, 6, 1, 0.1, 0.2, 0.3, 0.4, 0], dtype=np.float32)
    writer = mx.recordio.MXIndexedRecordIO(str(tmp_path / "mx.idx"), str(tmp_path / "mx.rec"), "w")
    with open(tmp_path / "ours.rec", "wb") as rec, open(tmp_path / "ours.idx", "w") as idx:
        for index, jpeg in enumerate(jpegs):
            payload = pack.record_payload(label, index, jpeg)
            assert payload == mx.recordio.pack(mx.recordio.IRHeader(0, label, index, 0), jpeg)
            writer.write_idx(index, payload)
            idx.write(f"{index}\t{rec.tell()}\n")
            rec.write(pack.recordio_frame(payload))
    writer.close()
    for suffix in ("rec", "idx"):
        assert (tmp_path / f"ours.{suffix}").read_bytes() == (tmp_path / f"mx.{suffix}").read_bytes()
    reader = mx.recordio.MXIndexedRecordIO(str(tmp_path / "ours.idx"), str(tmp_path / "ours.rec"), "r")
    assert [mx.recordio.unpack(reader.read_idx(i))[1] for i in range(len(jpegs))] == jpegs


def one_image_record(root, name, image, **save):
    image.save(root / "JPEGImages" / name, **save)
    return {
        "id": Path(name).stem,
        "image": str(root / "JPEGImages" / name),
        "width": image.width,
        "height": image.height,
        "objects": [{"class": 0, "box": [1, 1, 20, 20], "difficult": 0}],
        "source": "dataset",
    }


def packed_image(tmp_path, record, max_side=0):
    pack.pack([record], tmp_path / "p", max_side=max_side, quality=90, max_pixels=50_000_000, processes=1)
    reader = mx.recordio.MXIndexedRecordIO(str(tmp_path / "p.idx"), str(tmp_path / "p.rec"), "r")
    _, jpeg = mx.recordio.unpack(reader.read_idx(0))
    return jpeg


def test_a_plain_jpeg_is_stored_as_it_is_and_decodes_to_what_the_check_saw(voc, tmp_path):
    record = checked(voc(1))[0]
    jpeg = packed_image(tmp_path, record)
    assert jpeg == Path(record["image"]).read_bytes()
    stored = mx.image.imdecode(jpeg).asnumpy()  # what ImageDetRecordIter decodes (RGB)
    assert np.abs(stored.astype(int) - load_rgb(record["image"], 50_000_000)).max() <= 1


@pytest.mark.parametrize(
    "name, save",
    [
        ("progressive.jpg", {"progressive": True}),
        (
            "rotated.jpg",
            {
                "exif": b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01"
                b"\x00\x06\x00\x00\x00\x00\x00\x00"
            },
        ),
        ("cmyk.jpg", {}),
        ("flat.png", {}),
    ],
)
def test_other_images_are_re_encoded(voc, tmp_path, name, save):
    root = voc(0)
    mode = "CMYK" if name.startswith("cmyk") else "RGB"
    image = Image.new(mode, (64, 48), (30, 60, 90, 0)[: len(mode)])
    record = one_image_record(root, name, image, **save)
    jpeg = packed_image(tmp_path, record)
    assert jpeg != Path(record["image"]).read_bytes()
    decoded = Image.open(io.BytesIO(jpeg))
    assert (decoded.format, decoded.mode, decoded.size, exif_orientation(decoded)) == ("JPEG", "RGB", (64, 48), 1)


def test_a_jpeg_that_ends_early_is_stored_re_encoded_and_complete(voc, tmp_path):
    root = voc(1)
    record = checked(root)[0]
    image = Path(record["image"])
    image.write_bytes(image.read_bytes()[:-30])
    records, problems = check.check_dataset(root, check.Settings(CLASSES, {}, 50_000_000, True))
    assert [p.problem for p in problems] == ["jpeg-ends-early"] and records[0]["jpeg_ends_early"]
    jpeg = packed_image(tmp_path, records[0])
    assert jpeg != image.read_bytes() and not jpeg_ends_early(jpeg)
    Image.open(io.BytesIO(jpeg)).load()  # strict: complete data
    stored = mx.image.imdecode(jpeg).asnumpy().astype(int)
    assert np.abs(stored - load_rgb(image, 50_000_000)).mean() < 2  # the check's pixels, through JPEG quality 90


def test_downscaling_decodes_a_jpeg_at_reduced_scale_to_the_same_size(voc, tmp_path):
    root = voc(0)
    y, x = np.mgrid[0:600, 0:800]
    image = Image.fromarray(
        np.stack([x * 255 // 800, y * 255 // 600, (x // 100 + y // 100) % 2 * 200], axis=2).astype(np.uint8)
    )
    record = one_image_record(root, "big.jpg", image, quality=95)
    small = mx.image.imdecode(packed_image(tmp_path, record, max_side=190)).asnumpy()
    assert small.shape == (142, 190, 3)  # 800x600 -> 190x142.5, rounded; decoded at 1/4 (200x150) first
    full = cv2.resize(load_rgb(record["image"], 50_000_000), (190, 142), interpolation=cv2.INTER_AREA)
    _, encoded = cv2.imencode(".jpg", cv2.cvtColor(full, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    without_draft = mx.image.imdecode(encoded.tobytes()).asnumpy()  # what a full-size decode would have packed
    assert np.abs(small.astype(int) - without_draft).mean() < 1


def split_in(folder, root, records):
    """split.main on the checked records of `root` (val fraction 0.3, seed 0), everything written in `folder`:
    {file name: path} of train.txt, val.txt, train.json and val.json (a.json holds the records)."""
    (folder / "a.json").write_text(json.dumps(records))
    outputs = {name: folder / name for name in ("train.txt", "val.txt", "train.json", "val.json")}
    (folder / "splits.json").write_text(json.dumps(NO_SPLITS))
    arguments = [
        "--annotations",
        str(folder / "a.json"),
        "--splits",
        str(folder / "splits.json"),
        "--val-fraction",
        "0.3",
    ]
    arguments += ["--seed", "0", "--train-out", str(outputs["train.txt"]), "--val-out", str(outputs["val.txt"])]
    arguments += ["--train-records", str(outputs["train.json"]), "--val-records", str(outputs["val.json"])]
    split.main(arguments)
    return outputs


def test_split_writes_each_splits_records_in_list_order(voc, tmp_path):
    root = voc(8)
    records = checked(root)
    outputs = split_in(tmp_path, root, records)
    by_id = {r["id"]: r for r in records}
    for name in ("train", "val"):
        ids = outputs[f"{name}.txt"].read_text().split()
        assert ids and json.loads(outputs[f"{name}.json"].read_text()) == [by_id[i] for i in ids]
    assert len(outputs["train.json"].read_text().splitlines()) == len(outputs["train.txt"].read_text().split()) + 2


def test_image_names_with_spaces_go_through_split_pack_and_the_dataset_report(voc, tmp_path):
    """Google-image downloads are often named like 'nike logo (1).jpg'."""
    from workflow import dataset_stats

    root = voc(6)
    for xml in sorted((root / "Annotations").glob("*.xml")):
        spaced = f"logo {xml.stem} (1)"
        (root / "JPEGImages" / f"{xml.stem}.jpg").rename(root / "JPEGImages" / f"{spaced}.jpg")
        xml.write_text(xml.read_text().replace(f"{xml.stem}.jpg", f"{spaced}.jpg"))
        xml.rename(xml.with_name(f"{spaced}.xml"))
    records = checked(root)
    assert all(" " in record["id"] for record in records)
    outputs = split_in(tmp_path, root, records)
    ids = {name: outputs[f"{name}.txt"].read_text().splitlines() for name in ("train", "val")}
    assert sorted(ids["train"] + ids["val"]) == sorted(record["id"] for record in records)
    pack.pack(
        json.loads((tmp_path / "train.json").read_text()),
        tmp_path / "train",
        max_side=160,
        quality=90,
        max_pixels=50_000_000,
        processes=1,
    )
    packed = mx.recordio.MXIndexedRecordIO(str(tmp_path / "train.idx"), str(tmp_path / "train.rec"), "r")
    assert len(packed.keys) == len(ids["train"])
    dataset_stats.main(
        [
            "--annotations",
            str(tmp_path / "a.json"),
            "--train",
            str(outputs["train.txt"]),
            "--val",
            str(outputs["val.txt"]),
            "--classes",
            json.dumps(CLASSES),
            "--network",
            "tiny",
            "--data-shape",
            "64",
            "--out-dir",
            str(tmp_path),
        ]
    )
    stats = [line.split(",")[:2] for line in (tmp_path / "stats.csv").read_text().splitlines()[1:3]]
    assert stats == [["train", str(len(ids["train"]))], ["val", str(len(ids["val"]))]]
