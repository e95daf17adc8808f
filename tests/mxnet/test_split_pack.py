import hashlib

import mxnet as mx
import numpy as np
import pytest

from workflow import check, pack, split
from workflow.cli import UserError

CLASSES = ["swoosh", "stripes"]


def checked(root):
    records, problems = check.check_dataset(root, check.Settings(CLASSES, {}, 50_000_000, True))
    assert problems == []
    return records


def fake_records(n, cls=0):
    return [{"id": f"img{i:03d}", "source": "dataset", "objects": [{"class": cls}]} for i in range(n)]


def test_hash_split_is_stable_when_images_are_added(tmp_path):
    train, val, _ = split.split_records(fake_records(100), tmp_path, 0.2, seed=3)
    assert 10 < len(val) < 30 and not set(train) & set(val)
    train2, val2, _ = split.split_records(fake_records(150), tmp_path, 0.2, seed=3)
    assert set(val) <= set(val2) and set(train) <= set(train2)
    _, val_other_seed, _ = split.split_records(fake_records(100), tmp_path, 0.2, seed=4)
    assert val_other_seed != val


def test_every_class_gets_a_val_image_where_possible(tmp_path):
    records = fake_records(40) + [{"id": f"rare{i}", "source": "dataset", "objects": [{"class": 1}]} for i in range(2)]
    _, val, _ = split.split_records(records, tmp_path, 0.05, seed=0)
    assert any(i.startswith("rare") for i in val)


def test_image_sets_are_used_when_present(tmp_path):
    sets = tmp_path / "ImageSets" / "Main"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("img000\nimg001\nimg002\n")
    (sets / "val.txt").write_text("img003\n")
    train, val, how = split.split_records(fake_records(5), tmp_path, 0.5, seed=0)
    assert (train, val) == (["img000", "img001", "img002"], ["img003"]) and "ImageSets" in how
    (sets / "val.txt").write_text("img003\nimg001\n")
    with pytest.raises(UserError, match="in both train.txt and val.txt"):
        split.split_records(fake_records(5), tmp_path, 0.5, seed=0)


def test_pack_is_byte_identical_and_reads_back_through_image_det_record_iter(voc, tmp_path):
    records = checked(voc(6))
    for run in ("a", "b"):
        pack.pack(records, tmp_path / run, max_side=160, quality=90, max_pixels=50_000_000, processes=2)
    digest = {run: hashlib.sha256((tmp_path / f"{run}.rec").read_bytes()).hexdigest() for run in ("a", "b")}
    assert digest["a"] == digest["b"]
    first = (tmp_path / "a.lst").read_text().splitlines()[0].split("\t")
    assert first[:3] == ["0", "2", "6"] and first[-1] == records[0]["image"]

    iterator = mx.io.ImageDetRecordIter(path_imgrec=str(tmp_path / "a.rec"), batch_size=6, data_shape=(3, 96, 96),
                                        label_pad_width=60, shuffle=False)
    labels = iterator.next().label[0].asnumpy()
    for record, raw in zip(records, labels):
        # the iterator prepends (channels, height, width, label length) to the packed [2, 6, objects...]
        assert raw[:6].tolist() == [3, 96, 96, 2 + 6 * len(record["objects"]), 2, 6]
        rows = raw[6:6 + 6 * len(record["objects"])].reshape(-1, 6)
        assert (raw[6 + 6 * len(record["objects"]):] == -1).all()
        expected = [[o["class"], o["box"][0] / record["width"], o["box"][1] / record["height"], o["box"][2] / record["width"],
                     o["box"][3] / record["height"], o["difficult"]] for o in record["objects"]]
        np.testing.assert_allclose(rows[:, :6], expected, atol=1e-6)


def test_pack_downscales_to_max_side(voc, tmp_path):
    records = checked(voc(1))
    pack.pack(records, tmp_path / "p", max_side=100, quality=90, max_pixels=50_000_000, processes=1)
    reader = mx.recordio.MXIndexedRecordIO(str(tmp_path / "p.idx"), str(tmp_path / "p.rec"), "r")
    _, image = mx.recordio.unpack_img(reader.read_idx(0))
    assert max(image.shape[:2]) == 100
