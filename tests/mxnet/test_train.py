import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from workflow.lib import networks
from workflow.lib.cli import UserError
from workflow.lib.stopping import plan_epochs
from workflow.train import (
    Validator,
    WarmupStepSchedule,
    WeightAverage,
    _mosaic_share,
    _objects,
    _record_iter,
    parse_args,
    train,
)

REPO = Path(__file__).resolve().parents[2]
REFERENCE_LAYOUT = REPO.parent / "shared" / "reference" / "resnet50_ssd_voc0712_params.json"
COLOURS = ((0, 0, 255), (255, 0, 0))  # BGR: class 0 red, class 1 blue


def pack_examples(prefix, examples):
    """(image, label) pairs as `prefix`.rec and .idx in the pack stage's format; returns the .rec path."""
    records = mx.recordio.MXIndexedRecordIO(f"{prefix}.idx", f"{prefix}.rec", "w")
    for i, (image, label) in enumerate(examples):
        header = mx.recordio.IRHeader(0, np.asarray(label, dtype=np.float32), i, 0)
        records.write_idx(i, mx.recordio.pack_img(header, image, quality=90, img_fmt=".jpg"))
    records.close()
    return f"{prefix}.rec"


def write_records(prefix, count, seed=0):
    """`count` 80x80 noise images, each with one filled rectangle of class i % 2, in the pack stage's format."""
    rng = np.random.default_rng(seed)

    def examples():
        for i in range(count):
            image = rng.integers(90, 160, size=(80, 80, 3), dtype=np.uint8)
            x0, y0 = rng.integers(2, 38, size=2)
            x1, y1 = x0 + rng.integers(24, 40), y0 + rng.integers(24, 40)
            image[y0:y1, x0:x1] = COLOURS[i % 2]
            yield image, [2, 6, i % 2, x0 / 80, y0 / 80, x1 / 80, y1 / 80, 0]

    return pack_examples(prefix, examples())


def left_right_records(prefix, count):
    """`count` 80x80 noise images with a class-0 box in the left half and a class-1 box in the right half."""
    rng = np.random.default_rng(0)
    label = [2, 6, 0, 0.05, 0.3, 0.4, 0.7, 0, 1, 0.6, 0.3, 0.95, 0.7, 0]
    return pack_examples(
        prefix, ((rng.integers(90, 160, size=(80, 80, 3), dtype=np.uint8), label) for _ in range(count))
    )


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    folder = tmp_path_factory.mktemp("records")
    return write_records(str(folder / "train"), 16), write_records(str(folder / "val"), 6, seed=1)


# The settings every test run shares (the rules pass every one of them from config.yaml)
SETTINGS = [
    "--classes",
    '["red", "blue"]',
    "--network",
    "tiny",
    "--data-shape",
    "64",
    "--batch-size",
    "4",
    "--begin-epoch",
    "0",
    "--learning-rate",
    "0.05",
    "--momentum",
    "0.9",
    "--wd",
    "0.0005",
    "--warmup-epochs",
    "1",
    "--lr-steps",
    "3",
    "--lr-factor",
    "0.1",
    "--final-epoch",
    "6",
    "--ema-epochs",
    "0",
    "--quarter-turns",
    "0",
    "--mosaic",
    "0",
    "--mosaic-close-epochs",
    "0",
    "--freeze=",
    "--mirror",
    "--threads",
    "1",
    "--seed",
    "3",
    "--budget-minutes",
    "0",
    "--patience",
    "0",
    "--patience-smoothing",
    "1",
    "--gpus",
    "",
]


def options(records, out, **changes):
    train_rec, val_rec = records
    argv = ["--train-rec", train_rec, "--val-rec", val_rec, *SETTINGS, "--end-epoch", "4", "--out", str(out)]
    parsed = parse_args(argv)
    vars(parsed).update(changes)
    return parsed


def read_log(folder):
    with open(os.path.join(folder, "log.csv"), newline="") as file:
        return list(csv.DictReader(file))


def load_params(path):
    return {name: array.asnumpy() for name, array in mx.nd.load(str(path)).items()}


def test_training_writes_checkpoints_and_log_and_learns(records, tmp_path):
    rows = train(options(records, tmp_path))
    assert sorted(os.listdir(tmp_path)) == [
        "log.csv",
        "progress.csv",
        "ssd-0001.params",
        "ssd-0002.params",
        "ssd-0003.params",
        "ssd-0004.params",
        "ssd-0004.states",
        "ssd-symbol.json",
    ]
    assert (tmp_path / "log.csv").read_text() == (tmp_path / "progress.csv").read_text()
    log = read_log(tmp_path)
    assert list(log[0]) == [
        "epoch",
        "lr",
        "cls_loss",
        "loc_loss",
        "samples_per_s",
        "seconds",
        "val_map",
        "planned_epochs",
    ]
    assert [int(row["epoch"]) for row in log] == [1, 2, 3, 4]
    assert [float(row["lr"]) for row in log] == pytest.approx([0.05, 0.05, 0.05, 0.005])
    assert float(log[-1]["cls_loss"]) < float(log[0]["cls_loss"])
    assert all(0 <= float(row["val_map"]) <= 1 for row in log)
    assert rows[-1]["epoch"] == 4
    _, args, auxs = mx.model.load_checkpoint(str(tmp_path / "ssd"), 4)
    offline = Validator(options(records, tmp_path), 2, [mx.cpu()]).mean_ap(args, auxs)
    assert rows[-1]["val_map"] == pytest.approx(offline)


def test_checkpoint_loads_into_the_deploy_graph(records, tmp_path):
    train(options(records, tmp_path, end_epoch=1, val_rec=None))
    assert read_log(tmp_path)[0]["val_map"] == ""
    _, args, auxs = mx.model.load_checkpoint(str(tmp_path / "ssd"), 1)
    deploy = networks.build_deploy_symbol("tiny", 2, 64)
    module = mx.mod.Module(deploy, data_names=["data"], label_names=None)
    module.bind(data_shapes=[("data", (1, 3, 64, 64))], for_training=False)
    module.set_params(args, auxs, allow_missing=False, allow_extra=False)
    module.forward(mx.io.DataBatch([mx.nd.zeros((1, 3, 64, 64))]), is_train=False)
    assert module.get_outputs()[0].shape == (1, len(networks.anchor_boxes("tiny", 64)), 6)


def test_resume_continues_exactly(records, tmp_path):
    straight, first, second = tmp_path / "straight", tmp_path / "first", tmp_path / "second"
    train(options(records, straight))
    train(options(records, first, end_epoch=2))
    train(options(records, second, begin_epoch=2, resume=str(first)))
    resumed, reference = load_params(second / "ssd-0004.params"), load_params(straight / "ssd-0004.params")
    assert resumed.keys() == reference.keys()
    for name in reference:
        np.testing.assert_allclose(resumed[name], reference[name], rtol=1e-4, atol=1e-5, err_msg=name)
    log = read_log(second)
    assert [int(row["epoch"]) for row in log] == [1, 2, 3, 4]
    assert log[:2] == read_log(first)
    assert [row["lr"] for row in log] == [row["lr"] for row in read_log(straight)]


def test_pretrained_loads_what_fits_and_initialises_the_class_heads(records, tmp_path):
    train(options(records, tmp_path / "two", end_epoch=1, val_rec=None))
    pretrained = tmp_path / "two" / "ssd-0001.params"
    # learning rate 0: the loaded weights stay as they were
    train(
        options(
            records,
            tmp_path / "six",
            end_epoch=1,
            val_rec=None,
            classes=["a", "b", "c", "d", "e", "f"],
            learning_rate=0.0,
            pretrained=str(pretrained),
        )
    )
    before, after = load_params(pretrained), load_params(tmp_path / "six" / "ssd-0001.params")
    assert before.keys() == after.keys()
    heads = {name for name in before if "_cls_pred_conv_" in name}
    assert len(heads) == 4
    for name in heads:
        assert after[name].shape[0] == before[name].shape[0] // 3 * 7
    # bn_data has fix_gamma: MXNet resets its gamma to 1 on the forward pass.
    for name in before.keys() - heads - {"arg:bn_data_gamma"}:
        if name.startswith("arg:"):
            np.testing.assert_array_equal(after[name], before[name], err_msg=name)


def test_finetune_from_a_checkpoint_with_the_public_voc_model_layout(tmp_path, capsys):
    """A fake resnet50 SSD 300 VOC checkpoint (the reference names and shapes, 20 classes, random values) finetuned
    to 2 classes for one step: every array but the 12 class-head arrays loads as it was; those get the new shapes."""
    layout = json.loads(REFERENCE_LAYOUT.read_text())["resnet50_300"]
    rng = np.random.default_rng(0)
    fake = {f"arg:{name}": rng.normal(0, 0.01, shape).astype(np.float32) for name, shape in layout["args"].items()}
    fake.update(
        {f"aux:{name}": rng.uniform(0.5, 1.5, shape).astype(np.float32) for name, shape in layout["aux"].items()}
    )
    mx.nd.save(str(tmp_path / "voc-0000.params"), {name: mx.nd.array(value) for name, value in fake.items()})
    one_batch = (write_records(str(tmp_path / "two"), 2), None)
    train(
        options(
            one_batch,
            tmp_path / "out",
            network="resnet50",
            data_shape=300,
            batch_size=2,
            end_epoch=1,
            val_rec=None,
            warmup_epochs=0,
            lr_steps="",
            learning_rate=0.0,
            pretrained=str(tmp_path / "voc-0000.params"),
        )
    )
    heads = sorted(name for name in fake if "_cls_pred_conv_" in name)
    assert (
        len(heads) == 12
        and f"left out (initialised): {', '.join(sorted(h[4:] for h in heads))}" in capsys.readouterr().err
    )
    tuned = load_params(tmp_path / "out" / "ssd-0001.params")
    assert tuned.keys() == fake.keys()
    for name in heads:
        assert tuned[name].shape[0] == fake[name].shape[0] // 21 * 3, name
    for name in fake.keys() - set(heads) - {"arg:bn_data_gamma"}:  # bn_data has fix_gamma: MXNet sets it to 1
        if name.startswith("arg:"):
            np.testing.assert_array_equal(tuned[name], fake[name], err_msg=name)


def test_mistakes_are_user_errors(records, tmp_path):
    with pytest.raises(UserError, match="--resume"):
        train(options(records, tmp_path, begin_epoch=2))
    with pytest.raises(UserError, match="no checkpoint"):
        train(options(records, tmp_path, begin_epoch=2, resume=str(tmp_path)))
    with pytest.raises(UserError, match="too small"):
        train(options(records, tmp_path, network="resnet50"))
    bad = mx.recordio.MXIndexedRecordIO(str(tmp_path / "bad.idx"), str(tmp_path / "bad.rec"), "w")
    bad.write_idx(
        0,
        mx.recordio.pack_img(
            mx.recordio.IRHeader(0, np.array([0, 0.1, 0.1, 0.5, 0.5], np.float32), 0, 0), np.zeros((8, 8, 3), np.uint8)
        ),
    )
    bad.close()
    with pytest.raises(UserError, match="label is not"):
        train(options(records, tmp_path, train_rec=str(tmp_path / "bad.rec")))


def test_schedule_warms_up_then_steps():
    schedule = WarmupStepSchedule(0.1, warmup_updates=4, step_updates=[10, 20], factor=0.1)
    assert [schedule(n) for n in (0, 3)] == pytest.approx([0.02, 0.08])
    assert [schedule(n) for n in (4, 10, 11, 20, 21)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])


class TickingClock:
    """A clock that advances one second per reading: every epoch of the tests' records takes the same seconds."""

    now = 0.0

    @classmethod
    def monotonic(cls):
        cls.now += 1
        return cls.now


def budget_for_six_of_ten_epochs(records, tmp_path):
    """Minutes of budget that the plan made after the second epoch (1-epoch warm-up) turns into 6 of 10 epochs."""
    probe = train(options(records, tmp_path / "probe", end_epoch=2, budget_minutes=100))
    epoch_seconds = float(probe[1]["seconds"])
    minutes = (sum(float(row["seconds"]) for row in probe) + 4.5 * epoch_seconds) / 60
    assert plan_epochs(probe, minutes, final_epoch=10, warmup_epochs=1) == 6
    return minutes, epoch_seconds


def test_with_a_budget_the_lr_steps_move_into_the_epochs_the_measured_pace_allows(records, tmp_path, monkeypatch):
    monkeypatch.setattr("workflow.train.time", TickingClock)
    minutes, epoch_seconds = budget_for_six_of_ten_epochs(records, tmp_path)
    rows = train(options(records, tmp_path / "run", end_epoch=10, final_epoch=10, lr_steps="8", budget_minutes=minutes))
    assert [row["planned_epochs"] for row in rows] == ["", 6, 6, 6, "", ""]  # planned until the step at 4.8
    # lr step 8 of 10 epochs becomes 4.8 of 6: the lr after epoch 4 is the full one, after epoch 5 a tenth of it
    assert [row["lr"] for row in rows] == pytest.approx([0.05, 0.05, 0.05, 0.05, 0.005, 0.005])
    assert [row["seconds"] for row in rows[1:]] == [epoch_seconds] * 5


def test_a_resumed_run_continues_the_budget_plan_and_the_weight_average_exactly(records, tmp_path, monkeypatch):
    monkeypatch.setattr("workflow.train.time", TickingClock)
    minutes, _ = budget_for_six_of_ten_epochs(records, tmp_path)

    def run(out, **changes):
        return train(
            options(records, out, lr_steps="8", final_epoch=10, budget_minutes=minutes, ema_epochs=1, **changes)
        )

    straight, first, second = tmp_path / "straight", tmp_path / "first", tmp_path / "second"
    run(straight, end_epoch=10)
    run(first, end_epoch=3)
    run(second, begin_epoch=3, end_epoch=10, resume=str(first))
    assert sorted(p.name for p in second.glob("ssd-0006.*")) == [
        "ssd-0006.params",
        "ssd-0006.sgd.params",
        "ssd-0006.states",
    ]
    assert [p.name for p in straight.glob("*.sgd.params")] == ["ssd-0006.sgd.params"]
    for kind in ("params", "sgd.params"):
        resumed, reference = load_params(second / f"ssd-0006.{kind}"), load_params(straight / f"ssd-0006.{kind}")
        assert resumed.keys() == reference.keys()
        for name in reference:
            np.testing.assert_allclose(resumed[name], reference[name], rtol=1e-4, atol=1e-5, err_msg=f"{kind} {name}")
    log = read_log(second)
    assert [row["planned_epochs"] for row in log] == ["", "6", "6", "6", "", ""]
    assert [row["lr"] for row in log] == [row["lr"] for row in read_log(straight)] and float(log[-1]["lr"]) < 0.01
    # the weights validated and deployed are the average, which is not SGD's last step
    averaged, own = load_params(straight / "ssd-0006.params"), load_params(straight / "ssd-0006.sgd.params")
    assert not np.allclose(averaged["arg:tiny3_conv_weight"], own["arg:tiny3_conv_weight"])
    _, args, auxs = mx.model.load_checkpoint(str(straight / "ssd"), 6)
    offline = Validator(options(records, straight), 2, [mx.cpu()]).mean_ap(args, auxs)
    assert float(log[-1]["val_map"]) == pytest.approx(offline)


def test_mosaics_and_quarter_turns_train_and_resume_exactly_and_mosaics_close_for_the_last_epochs(records, tmp_path):
    def run(out, **changes):
        return train(
            options(records, out, mosaic=0.5, mosaic_close_epochs=1, quarter_turns=0.5, val_rec=None, **changes)
        )

    straight, first, second = tmp_path / "straight", tmp_path / "first", tmp_path / "second"
    run(straight)
    run(first, end_epoch=2)
    run(second, begin_epoch=2, resume=str(first))
    resumed, reference = load_params(second / "ssd-0004.params"), load_params(straight / "ssd-0004.params")
    for name in reference:
        np.testing.assert_allclose(resumed[name], reference[name], rtol=1e-4, atol=1e-5, err_msg=name)
    plain = tmp_path / "plain"
    train(options(records, plain, val_rec=None))
    assert not np.allclose(
        load_params(plain / "ssd-0004.params")["arg:tiny3_conv_weight"], reference["arg:tiny3_conv_weight"]
    )
    settings = options(records, tmp_path, mosaic=0.5, mosaic_close_epochs=2, final_epoch=10)
    assert [_mosaic_share(settings, epoch, None) for epoch in (0, 7, 8, 9)] == [0.5, 0.5, 0, 0]
    assert [_mosaic_share(settings, epoch, 6) for epoch in (3, 4, 5)] == [0.5, 0, 0]


def test_the_weight_average_follows_the_trained_arrays_with_a_short_memory_at_first():
    start = {"w": mx.nd.zeros((2, 2)), "bn_moving_mean": mx.nd.zeros(1)}
    average = WeightAverage(start, ["w", "bn_moving_mean"], horizon_updates=4)
    average.update({"w": mx.nd.ones((2, 2)), "bn_moving_mean": mx.nd.full(1, 2)})
    sgd_args, sgd_auxs = {"w": mx.nd.ones((2, 2)), "fixed": mx.nd.full(1, 5)}, {"bn_moving_mean": mx.nd.full(1, 2)}
    args, auxs = average.params(sgd_args, sgd_auxs)
    np.testing.assert_allclose(args["w"].asnumpy(), np.full((2, 2), 1 - 2 / 11), rtol=1e-6)  # decay 2 / 11
    assert auxs["bn_moving_mean"].asnumpy().tolist() == pytest.approx([2 * (1 - 2 / 11)])
    assert args["fixed"].asnumpy().tolist() == [5] and sgd_args["w"].asnumpy().min() == 1
    late = WeightAverage({"w": mx.nd.zeros(2)}, ["w"], horizon_updates=4, updates=1000)
    late.update({"w": mx.nd.ones(2)})
    assert late.params({"w": mx.nd.ones(2)}, {})[0]["w"].asnumpy().tolist() == pytest.approx([1 - np.exp(-1 / 4)] * 2)


def test_frozen_parameters_do_not_change(records, tmp_path):
    train(options(records, tmp_path, end_epoch=2, val_rec=None, pretrained=None, freeze="^(bn_data|tiny[12]_)"))
    first, last = load_params(tmp_path / "ssd-0001.params"), load_params(tmp_path / "ssd-0002.params")
    frozen = [name for name in first if name.startswith(("arg:bn_data", "arg:tiny1_", "arg:tiny2_"))]
    assert len(frozen) == 8 and all(np.array_equal(first[name], last[name]) for name in frozen)
    assert not np.array_equal(first["arg:tiny3_conv_weight"], last["arg:tiny3_conv_weight"])
    # a frozen BatchNorm keeps its statistics as well; a trained one goes on estimating them
    kept = [name for name in first if name.startswith(("aux:bn_data", "aux:tiny1_", "aux:tiny2_"))]
    assert len(kept) == 6 and all(np.array_equal(first[name], last[name]) for name in kept)
    assert not np.array_equal(first["aux:tiny3_bn_moving_mean"], last["aux:tiny3_bn_moving_mean"])
    with pytest.raises(UserError, match="freeze: '\\(' is not a regular expression"):
        train(options(records, tmp_path / "bad", end_epoch=1, val_rec=None, freeze="("))


def test_budget_stops_after_the_epoch_that_crosses_it_and_later_stops_train_nothing(records, tmp_path):
    rows = train(options(records, tmp_path / "first", end_epoch=4, budget_minutes=1e-6))
    assert [row["epoch"] for row in rows] == [1] and [int(r["epoch"]) for r in read_log(tmp_path / "first")] == [1]
    assert float(read_log(tmp_path / "first")[0]["seconds"]) > 0
    later = train(
        options(
            records,
            tmp_path / "second",
            begin_epoch=4,
            end_epoch=6,
            resume=str(tmp_path / "first"),
            budget_minutes=1e-6,
        )
    )
    assert [int(row["epoch"]) for row in later] == [1]
    assert sorted(os.listdir(tmp_path / "second")) == ["log.csv", "progress.csv", "ssd-symbol.json"]


def test_patience_stops_on_a_val_map_plateau_and_later_stops_train_nothing(records, tmp_path, monkeypatch):
    scores = iter([0.1, 0.3, 0.3, 0.2, 0.9])
    monkeypatch.setattr(Validator, "mean_ap", lambda self, args, auxs: next(scores))
    rows = train(options(records, tmp_path / "first", end_epoch=6, patience=2))
    assert [(row["epoch"], row["val_map"]) for row in rows] == [(1, 0.1), (2, 0.3), (3, 0.3), (4, 0.2)]
    assert [int(row["epoch"]) for row in read_log(tmp_path / "first")] == [1, 2, 3, 4]
    later = train(
        options(records, tmp_path / "second", begin_epoch=6, end_epoch=8, resume=str(tmp_path / "first"), patience=2)
    )
    assert [int(row["epoch"]) for row in later] == [1, 2, 3, 4]
    assert sorted(os.listdir(tmp_path / "second")) == ["log.csv", "progress.csv", "ssd-symbol.json"]
    with pytest.raises(UserError, match="--patience stops on the val mAP: it needs --val-rec"):
        train(options(records, tmp_path / "no_val", val_rec=None, patience=2))


def test_a_killed_run_continues_after_its_last_finished_epoch(records, tmp_path):
    straight = tmp_path / "straight"
    train(options(records, straight, end_epoch=6, val_rec=None))
    out = tmp_path / "killed"
    argv = ["--train-rec", records[0], *SETTINGS, "--end-epoch", "6", "--out", str(out)]
    process = subprocess.Popen(
        [sys.executable, "-m", "workflow.train", *argv], cwd=REPO, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while len(read_rows(out / "progress.csv")) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.kill()
    process.wait()
    finished = len(read_rows(out / "progress.csv"))
    assert 2 <= finished < 6 and not (out / "log.csv").exists()

    rerun = subprocess.run([sys.executable, "-m", "workflow.train", *argv], cwd=REPO, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"holds epoch {finished} from an interrupted run: continuing after it" in rerun.stderr
    assert [int(row["epoch"]) for row in read_log(out)] == [1, 2, 3, 4, 5, 6]
    assert sorted(p.name for p in out.glob("*.states")) == ["ssd-0006.states"]
    for name, value in load_params(straight / "ssd-0006.params").items():
        np.testing.assert_allclose(
            load_params(out / "ssd-0006.params")[name], value, rtol=1e-4, atol=1e-6, err_msg=name
        )


def read_rows(path):
    if not path.exists():
        return []
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


@pytest.mark.parametrize("mirror", [False, True])
def test_only_mirroring_puts_the_right_object_left_of_the_left_one(tmp_path, mirror):
    """Crops, zoom-out and colour jitter keep the objects' left-to-right order; --mirror flips half the images."""
    path = left_right_records(str(tmp_path / "train"), 16)
    parsed = options((path, path), tmp_path, mirror=mirror)
    batches = _record_iter(path, parsed, seed=0, augment=True, max_objects=2)
    both = swapped = 0
    for _ in range(5):
        for batch in batches:
            for objects in _objects(batch.label[0]).asnumpy():
                centres = {int(row[0]): row[1] + row[3] for row in objects if row[0] >= 0}
                if len(centres) == 2:
                    both += 1
                    swapped += centres[0] > centres[1]
        batches.reset()
    assert both > 40
    assert 0.3 * both < swapped < 0.7 * both if mirror else swapped == 0
