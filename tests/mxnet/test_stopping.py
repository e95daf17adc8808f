import csv

import pytest

from workflow.lib.cli import UserError
from workflow.deploy import choose_epoch
from workflow.lib.stopping import best_epoch, plan_epochs, planned_epochs, stop_reason


def rows(*val_maps, seconds=10.0):
    return [
        {"epoch": str(i), "seconds": str(seconds), "val_map": "" if m is None else str(m)}
        for i, m in enumerate(val_maps, start=1)
    ]


def test_patience_counts_epochs_since_the_first_epoch_with_the_best_val_map():
    assert stop_reason(rows(0.1, 0.3, 0.3), patience=2) is None
    assert (
        stop_reason(rows(0.1, 0.3, 0.3, 0.2), patience=2)
        == "val mAP did not improve for 2 epochs (best 0.3000 at epoch 2)"
    )
    assert stop_reason(rows(0.1, 0.3, 0.3, 0.31), patience=2) is None
    assert stop_reason(rows(0.5, 0.1, 0.1, 0.1), patience=0) is None


def timed(*seconds):
    return [{"epoch": str(i), "seconds": str(s), "val_map": ""} for i, s in enumerate(seconds, start=1)]


def test_the_budget_is_planned_after_the_warm_up_from_the_epochs_after_the_first():
    # 1 minute: 40 s spent after epoch 2, 20 s left at 10 s per epoch (the first epoch's set-up time left out)
    assert plan_epochs(timed(30, 10), budget_minutes=1, final_epoch=10, warmup_epochs=1) == 4
    assert plan_epochs(timed(30, 10), budget_minutes=1, final_epoch=3, warmup_epochs=1) == 3
    assert plan_epochs(timed(30), budget_minutes=1, final_epoch=10, warmup_epochs=0) is None
    assert plan_epochs(timed(30, 10, 10), budget_minutes=1, final_epoch=10, warmup_epochs=1) == 4
    assert plan_epochs(timed(10, 10), budget_minutes=1, final_epoch=10, warmup_epochs=2.5) is None
    assert plan_epochs(timed(10, 10, 11), budget_minutes=1, final_epoch=10, warmup_epochs=2.5) == 5
    assert plan_epochs(timed(30, 40), budget_minutes=1, final_epoch=10, warmup_epochs=2) == 2
    assert plan_epochs(timed(30, 10), budget_minutes=0, final_epoch=10, warmup_epochs=1) is None


def plan_after(seconds, plans, lr_steps=(8,)):
    rows = timed(*seconds)
    for row, planned in zip(rows, plans):
        row["planned_epochs"] = planned
    return plan_epochs(rows, budget_minutes=2, final_epoch=10, warmup_epochs=1, lr_steps=lr_steps)


def test_the_plan_is_made_again_after_every_epoch_until_its_first_lr_step_is_reached():
    # 2 minutes; the first epochs are the slowest: after epoch 2, 70 s left at 20 s per epoch: 5 epochs, the
    # step (8 of 10) at 4.0; after epoch 3, 60 s left at 15 s: 7 epochs, the step at 5.6; ...; 8 epochs after
    # epoch 5, the step at 6.4, so the plan holds after epoch 7
    assert plan_after((30, 20), ()) == 5
    assert plan_after((30, 20, 10), ("", 5)) == 7
    assert plan_after((30, 20, 10, 10), ("", 5, 7)) == 7
    assert plan_after((30, 20, 10, 10, 10), ("", 5, 7, 7)) == 8
    assert plan_after((30, 20, 10, 10, 10, 10), ("", 5, 7, 7, 8)) == 8
    assert plan_after((30, 20, 10, 10, 10, 10, 10), ("", 5, 7, 7, 8, 8)) is None
    assert plan_after((30, 20, 10, 10, 10), ("", 5, 7, 4), lr_steps=(8,)) is None
    # without lr steps the plan follows the pace to the end
    assert plan_after((30, 20, 10, 10, 10, 10), ("", 5, 7, 7, 8), lr_steps=()) == 8


def test_the_plan_ends_training_at_its_epoch_and_is_read_from_the_log():
    planned = timed(30, 10, 10, 9)
    planned[1]["planned_epochs"] = "4"
    assert planned_epochs(planned) == 4 and planned_epochs(timed(30, 10)) is None
    assert stop_reason(planned[:3], budget_minutes=1) is None
    assert stop_reason(planned, budget_minutes=1) == (
        "the plan for the training budget of 1 minutes ended at epoch 4 (1.0 min spent)"
    )
    assert planned_epochs([{"epoch": 1, "planned_epochs": float("nan")}]) is None
    planned[2]["planned_epochs"] = "5"
    assert planned_epochs(planned) == 5  # the last plan


def test_epochs_without_val_map_never_end_training_by_patience():
    assert stop_reason(rows(None, None, None), patience=1) is None
    assert best_epoch(rows(None, 0.2, None)) == (0.2, 2)
    assert best_epoch([{"epoch": 1, "seconds": 1.0, "val_map": float("nan")}]) is None


def test_budget_counts_the_seconds_of_all_rows_and_comes_first():
    assert stop_reason(rows(0.1, 0.2, seconds=29.0), budget_minutes=1) is None
    assert (
        stop_reason(rows(0.1, 0.2, 0.1, seconds=29.0), budget_minutes=1, patience=1)
        == "the training budget of 1 minutes was reached (1.4 min)"
    )


def write_stop(folder, val_maps, epochs):
    folder.mkdir()
    with open(folder / "log.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["epoch", "seconds", "val_map"])
        writer.writeheader()
        writer.writerows(rows(*val_maps))
    for epoch in epochs:
        (folder / f"ssd-{epoch:04d}.params").write_bytes(b"")
    return str(folder)


def test_deploy_epoch_picks_last_best_or_a_number_across_stops(tmp_path):
    first = write_stop(tmp_path / "epoch_2", [0.2, 0.6], [1, 2])
    second = write_stop(tmp_path / "epoch_4", [0.2, 0.6, 0.4, 0.6], [3, 4])
    assert choose_epoch([first, second], "last")[:2] == (4, tmp_path / "epoch_4")
    assert choose_epoch([first, second], "best") == (
        2,
        tmp_path / "epoch_2",
        "highest val mAP 0.6000 over 4 evaluated epochs (deploy_epoch: best)",
    )
    assert choose_epoch([first, second], "3")[:2] == (3, tmp_path / "epoch_4")
    with pytest.raises(UserError, match="no checkpoint of epoch 7"):
        choose_epoch([first, second], "7")
    unscored = write_stop(tmp_path / "unscored", [None, None], [1, 2])
    with pytest.raises(UserError, match="deploy_epoch: best needs val mAP in .*unscored/log.csv"):
        choose_epoch([unscored], "best")


def test_the_report_says_why_training_ended_early():
    import pandas as pd

    from workflow.report import stop_note

    config = {"epochs": [3, 6], "train_budget_minutes": 0, "early_stop_patience": 2, "early_stop_smoothing": 1}
    frame = pd.DataFrame(rows(0.1, 0.3, 0.3, 0.2)).astype(float)
    assert stop_note(frame, config) == (
        "<p>Training stopped after epoch 4 of 6: val mAP did not improve for 2 epochs (best 0.3000 at epoch 2).</p>"
    )
    assert stop_note(pd.DataFrame(rows(*[0.1] * 6)).astype(float), config) == "<p>Trained all 6 epochs.</p>"


def test_the_report_says_how_the_learning_rate_went_and_which_weights_are_deployed():
    import pandas as pd

    from workflow.report import schedule_note

    config = {"epochs": [8], "lr_factor": 0.1, "lr_steps": [6], "ema_epochs": 0}
    assert schedule_note(pd.DataFrame(timed(30, 10)), config) == (
        "<p>The learning rate stepped by 0.1 at epochs [6] after the warm-up.</p>"
    )
    planned = pd.DataFrame(timed(30, 10, 10)).assign(planned_epochs=[None, 3, None])
    assert schedule_note(planned, {**config, "ema_epochs": 2}) == (
        "<p>After the warm-up the plan for the training budget fitted 3 of 8 epochs, and the learning rate stepped "
        "by 0.1 at epochs [2.2] (lr_steps scaled to them). The val mAP of every epoch and the deployed model are of "
        "the moving average of the weights over about 2 epochs (ema_epochs).</p>"
    )


def test_smoothed_patience_watches_the_moving_average_of_the_val_map():
    # one lucky epoch (0.9 at epoch 4) restarts the raw count; the 3-epoch average is 0.6333 at epochs 4 and 5,
    # peaks at epoch 6 ((0.9 + 0.5 + 0.6) / 3) and is 0.5333 after
    maps = (0.5, 0.5, 0.5, 0.9, 0.5, 0.6, 0.5, 0.5)
    assert best_epoch(rows(*maps), smoothing=3) == (pytest.approx(2 / 3), 6)
    assert best_epoch(rows(0.3, 0.6), smoothing=3) == (pytest.approx(0.45), 2)  # fewer epochs at the start
    assert (
        stop_reason(rows(*maps), patience=2, smoothing=3)
        == "val mAP (moving average over 3 epochs) did not improve for 2 epochs (best 0.6667 at epoch 6)"
    )
    assert stop_reason(rows(*maps), patience=5) is None  # raw best 0.9 at epoch 4, 4 epochs ago
    assert best_epoch(rows(None, 0.2, None, 0.4), smoothing=2) == (pytest.approx(0.3), 4)  # unmeasured epochs skipped
