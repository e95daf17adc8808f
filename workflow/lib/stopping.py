"""When training ends: its last configured epoch, a wall-clock budget (and the epoch it planned for it) or a val-mAP
plateau.

Functions of the training log rows alone (dicts with 'epoch', 'seconds', 'val_map' and 'planned_epochs'), so that
train.py decides with them, a resumed segment continues the same plan, and the report explains the same decision.
"""

import math


def stop_reason(rows, budget_minutes=0, patience=0, smoothing=1):
    """Why training stops after the last of `rows`, or None when it goes on.

    budget_minutes: the total time of the epochs (their validation included) that ends training (0: none).
    patience: the number of epochs without a val mAP higher than the best before that ends it (0: never).
    smoothing: patience watches the moving average of the val mAP over this many evaluated epochs (1: the
    val mAP itself), so that one lucky epoch does not restart the count.
    """
    spent = sum(float(row["seconds"]) for row in rows)
    if budget_minutes > 0 and spent >= 60 * budget_minutes:
        return f"the training budget of {budget_minutes:g} minutes was reached ({spent / 60:.1f} min)"
    planned = planned_epochs(rows)
    if planned and int(rows[-1]["epoch"]) >= planned:
        return (
            f"the plan for the training budget of {budget_minutes:g} minutes ended at epoch {planned} "
            f"({spent / 60:.1f} min spent)"
        )
    if patience > 0:
        best = best_epoch(rows, smoothing)
        if best and int(rows[-1]["epoch"]) - best[1] >= patience:
            what = "val mAP" if smoothing <= 1 else f"val mAP (moving average over {smoothing} epochs)"
            return f"{what} did not improve for {patience} epochs (best {best[0]:.4f} at epoch {best[1]})"
    return None


def best_epoch(rows, smoothing=1):
    """(val mAP, epoch) of the first epoch with the highest val mAP, or None when no epoch has one.

    With smoothing k > 1 the value of an epoch is the mean of its val mAP and that of the k - 1 evaluated epochs
    before it (fewer at the start).
    """
    scored = [(score, int(row["epoch"])) for row in rows if (score := val_map(row)) is not None]
    if smoothing > 1:
        scores = [score for score, _ in scored]
        scored = [
            (sum(scores[max(0, i + 1 - smoothing) : i + 1]) / min(i + 1, smoothing), epoch)
            for i, (_, epoch) in enumerate(scored)
        ]
    return max(scored, key=lambda pair: (pair[0], -pair[1]), default=None)


def val_map(row):
    """The row's val mAP as a float, None when it was not measured (empty in the CSV, NaN in pandas)."""
    value = row.get("val_map")
    if value in ("", None) or math.isnan(float(value)):
        return None
    return float(value)


def plan_epochs(rows, budget_minutes, final_epoch, warmup_epochs, lr_steps=()):
    """The epoch training ends at, chosen so that it ends within the budget (the lr steps move with it), or None when
    the plan stands as it is.

    Planned after epoch max(2, warm-up epochs) and again after every epoch until the first lr step of the plan is
    reached (then the plan holds, so that the steps stay where they were taken): the epochs done plus the time left
    divided by the mean time of the epochs after the first (whose time includes one-off set-up), at most final_epoch.
    The first epochs run slower than the rest: the plans after them grow as the mean settles. None before the first
    plan, once it holds, or without a budget.
    """
    done = int(rows[-1]["epoch"]) if rows else 0
    if budget_minutes <= 0 or done < max(2, math.ceil(warmup_epochs)) or done >= final_epoch:
        return None
    planned = planned_epochs(rows[:-1])
    if planned and lr_steps and done >= min(lr_steps) * planned / final_epoch:
        return None
    seconds = [float(row["seconds"]) for row in rows]
    pace = sum(seconds[1:]) / (len(seconds) - 1)
    left = 60 * budget_minutes - sum(seconds)
    return min(final_epoch, done + max(0, math.floor(left / pace)))


def planned_epochs(rows):
    """The epoch the budget's last plan chose (the log's planned_epochs column), or None when there is no plan."""
    for row in reversed(rows):
        if row.get("planned_epochs") not in ("", None) and not math.isnan(float(row["planned_epochs"])):
            return int(float(row["planned_epochs"]))
    return None
