"""Detection metrics exact to the PASCAL VOC devkit (numpy only).

Input, one entry per image:
  ground truth rows  [class, xmin, ymin, xmax, ymax, difficult]   (difficult column optional)
  detection rows     [class, score, xmin, ymin, xmax, ymax]
Coordinates may be normalised or pixels: the IoU is the continuous one (no +1), so it is scale free.
Rows whose class is not in range(num_classes), such as MXNet's -1 padding rows, are ignored.

Rules (PASCAL VOC devkit, VOCevaldet.m):
  * The detections of a class are pooled over ALL images, including images without any ground truth
    (there every detection is a false positive), and sorted by descending score (stable sort).
  * In that order each detection takes the ground-truth box of its class in its image with the highest
    IoU. The match counts only if IoU > iou_threshold (strictly). Then:
      - a difficult box: the detection is ignored (neither TP nor FP), unless use_difficult;
      - a box not yet matched: true positive, and the box is now matched;
      - a box already matched: false positive (duplicate detection).
    No match at all is a false positive.
  * npos = number of non-difficult ground-truth boxes (all boxes when use_difficult).
  * AP VOC07 = mean over recall levels t = 0, 0.1, ..., 1 of the highest precision at recall >= t.
    AP area (VOC2010+) = area under the monotone precision envelope of the PR curve.
  * A class with detections but no ground truth has AP 0; a class with neither has AP NaN and is
    left out of the means.
"""

from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

TRUE_POSITIVE, FALSE_POSITIVE, IGNORED = 1, 0, -1
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
# np.arange, as in the devkit's python port (voc_eval.py) and the reference cases: its levels are
# 0.30000000000000004, 0.6000000000000001, 0.7000000000000001, so e.g. recall 3/10 does not reach "0.3"
VOC07_RECALL_LEVELS = np.arange(0.0, 1.1, 0.1)


@dataclass
class ClassResult:
    """Metrics of one class at the evaluation IoU threshold."""

    class_id: int
    npos: int  # positives: non-difficult gt boxes (all boxes when use_difficult)
    tp: int
    fp: int
    ap_voc07: float  # NaN when the class has neither gt nor detections
    ap_area: float
    ap_coco: float  # area AP averaged over IoU thresholds 0.50:0.05:0.95
    precision_curve: np.ndarray = field(repr=False)  # one point per counted detection, by score
    recall_curve: np.ndarray = field(repr=False)

    @property
    def precision(self):
        """Final precision tp / (tp + fp); NaN without counted detections."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    @property
    def recall(self):
        """Final recall tp / npos; NaN without positives."""
        return self.tp / self.npos if self.npos else float("nan")


BACKGROUND = -1  # the class of a false alarm's (missing) box and of a missed box's (missing) detection


@dataclass
class EvaluationResult:
    per_class: list  # ClassResult for each class id 0 .. num_classes-1
    map_voc07: float  # mean over classes with an AP (NaN ones left out)
    map_area: float
    coco_map: float  # mean of ap_coco = area mAP averaged over IoU thresholds 0.50:0.05:0.95
    iou_threshold: float
    use_difficult: bool


def evaluate_detections(ground_truth, detections, num_classes, iou_threshold=0.5, use_difficult=False):
    """Evaluate detections against ground truth by the PASCAL VOC devkit rules (see module docstring).

    ground_truth, detections: sequences with one array per image (same length, same image order).
    Returns an EvaluationResult; coco_map repeats the same matching at IoU 0.50, 0.55, ..., 0.95.
    """
    return MatchedImages(ground_truth, detections, num_classes, iou_threshold, use_difficult).result()


class MatchedImages:
    """The devkit matching of every image, done once.

    Matching is decided inside each image (greedy by score against that image's boxes), so any multiset of the
    images, such as a bootstrap resample, is evaluated by pooling their stored outcomes: no image is matched again.
    """

    def __init__(self, ground_truth, detections, num_classes, iou_threshold=0.5, use_difficult=False):
        if len(ground_truth) != len(detections):
            raise ValueError(f"{len(ground_truth)} ground-truth images but {len(detections)} detection images")
        gts = [_as_rows(g, "ground truth", difficult_optional=True) for g in ground_truth]
        dets = [_as_rows(d, "detections") for d in detections]
        thresholds = np.concatenate(([iou_threshold], COCO_IOU_THRESHOLDS))
        self.images, self.num_classes = len(gts), num_classes
        self.iou_threshold, self.use_difficult = iou_threshold, use_difficult
        # per class, per image: (scores (n,), outcomes (len(thresholds), n), npos)
        self.matched = [
            [_match_image_class(gt, det, class_id, thresholds, use_difficult) for gt, det in zip(gts, dets)]
            for class_id in range(num_classes)
        ]

    def pooled(self, class_id, images=None, threshold_index=None):
        """(scores, outcomes, npos) of one class over `images` (indices, repeats allowed; default all in order)."""
        per_image = self.matched[class_id]
        chosen = [per_image[i] for i in (range(self.images) if images is None else images)]
        npos = sum(c[2] for c in chosen)
        scores = np.concatenate([c[0] for c in chosen]) if chosen else np.zeros(0)
        outcomes = (
            np.concatenate([c[1] for c in chosen], axis=1)
            if chosen
            else np.zeros((1 + len(COCO_IOU_THRESHOLDS), 0), int)
        )
        return scores, (outcomes if threshold_index is None else outcomes[threshold_index]), npos

    def result(self, images=None):
        """The EvaluationResult of `images` (indices, repeats allowed; default all in order)."""
        per_class = []
        for class_id in range(self.num_classes):
            scores, outcomes, npos = self.pooled(class_id, images)
            curves = [_pr_curve(scores, row, npos) for row in outcomes]
            precision, recall, tp, fp = curves[0]
            has_data = npos > 0 or len(scores) > 0
            nan = float("nan")
            per_class.append(
                ClassResult(
                    class_id=class_id,
                    npos=npos,
                    tp=tp,
                    fp=fp,
                    ap_voc07=voc07_ap(recall, precision) if has_data else nan,
                    ap_area=area_ap(recall, precision) if has_data else nan,
                    ap_coco=float(np.mean([area_ap(c[1], c[0]) for c in curves[1:]])) if has_data else nan,
                    precision_curve=precision,
                    recall_curve=recall,
                )
            )
        return EvaluationResult(
            per_class=per_class,
            map_voc07=_mean_ignoring_nan([c.ap_voc07 for c in per_class]),
            map_area=_mean_ignoring_nan([c.ap_area for c in per_class]),
            coco_map=_mean_ignoring_nan([c.ap_coco for c in per_class]),
            iou_threshold=self.iou_threshold,
            use_difficult=self.use_difficult,
        )


# ---------------------------------------------------------------- bootstrap intervals over the val images

MAP_KEYS = ("map_voc07", "map_area", "coco_map")
AP_KEYS = ("ap_voc07", "ap_area", "ap_coco")


def resample_draws(images, resamples, seed):
    """`resamples` bootstrap draws of image indices (each `images` long, with replacement), from numpy's PCG64."""
    return np.random.default_rng(seed).integers(0, images, size=(resamples, images))


def resampled_values(matched, draws):
    """{key: array over draws} of the three mAPs, and per class {key: array} of its three APs (NaN: no data)."""
    results = [matched.result(draw) for draw in draws]
    maps = {key: np.array([getattr(r, key) for r in results]) for key in MAP_KEYS}
    per_class = [
        {key: np.array([getattr(r.per_class[c], key) for r in results]) for key in AP_KEYS}
        for c in range(matched.num_classes)
    ]
    return maps, per_class


def percentile_interval(values, confidence, point=None):
    """(low, high) bootstrap interval of the finite resampled values; (None, None) when there are none.

    Without `point`, the plain percentile interval (the middle `confidence` of the values). With the estimate
    `point`, Efron's bias-corrected percentile interval: AP takes the maximum precision beyond each recall, so
    resampled APs run higher than the estimate (on the sample the resampled VOC07 mAP averages 0.899 against
    0.880, only 30% below it), and the plain percentiles would sit mostly above the estimate. With z0 the normal
    quantile of the share of values below `point` (ties count half), the bounds are the values at the normal
    probabilities of 2 z0 -+ z; z0 = 0 (no bias) gives the plain interval.
    """
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if not values.size:
        return None, None
    tail = (1 - confidence) / 2
    probabilities = [tail, 1 - tail]
    if point is not None and not np.isnan(point):
        share = np.mean(values < point) + 0.5 * np.mean(values == point)
        share = min(max(share, 0.5 / values.size), 1 - 0.5 / values.size)  # all on one side: as far as n allows
        normal = NormalDist()
        z0, z = normal.inv_cdf(share), normal.inv_cdf(1 - tail)
        probabilities = [normal.cdf(2 * z0 - z), normal.cdf(2 * z0 + z)]
    low, high = np.percentile(values, [100 * p for p in probabilities])
    return float(low), float(high)


def bootstrap_intervals(matched, resamples=1000, seed=0, confidence=0.95):
    """Bias-corrected percentile bootstrap intervals, resampling the val images: {map key: (low, high)} and
    [{ap key: (low, high)}] per class."""
    maps, per_class = resampled_values(matched, resample_draws(matched.images, resamples, seed))
    point = matched.result()
    return (
        {key: percentile_interval(values, confidence, getattr(point, key)) for key, values in maps.items()},
        [
            {
                key: percentile_interval(values, confidence, getattr(point.per_class[c], key))
                for key, values in v.items()
            }
            for c, v in enumerate(per_class)
        ],
    )


def paired_difference(matched_a, matched_b, resamples=1000, seed=0, confidence=0.95, key="map_voc07"):
    """mAP of a minus mAP of b on the same val images, with its paired bootstrap interval (both models scored on
    the same resamples) and the share of resamples where a scores higher."""
    if matched_a.images != matched_b.images:
        raise ValueError(f"paired comparison needs the same images: {matched_a.images} vs {matched_b.images}")
    draws = resample_draws(matched_a.images, resamples, seed)
    a, b = resampled_values(matched_a, draws)[0][key], resampled_values(matched_b, draws)[0][key]
    difference = getattr(matched_a.result(), key) - getattr(matched_b.result(), key)
    low, high = percentile_interval(a - b, confidence, difference)
    return {
        "metric": key,
        "difference": difference,
        "low": low,
        "high": high,
        "share_a_higher": float(np.mean(a > b)) if resamples else None,
        "resamples": resamples,
    }


# ---------------------------------------------------------------- the score threshold that maximises F1


def f1_curve(scores, outcome, npos):
    """F1, precision and recall when keeping the detections scoring at least each threshold, for every distinct
    score (descending): (thresholds, f1, precision, recall, tp, fp). Ignored detections count neither way."""
    counted = outcome != IGNORED
    scores, outcome = scores[counted], outcome[counted]
    order = np.argsort(-scores, kind="stable")
    scores, outcome = scores[order], outcome[order]
    tp = np.cumsum(outcome == TRUE_POSITIVE)
    fp = np.cumsum(outcome == FALSE_POSITIVE)
    last_of_score = np.flatnonzero(np.append(scores[1:] != scores[:-1], len(scores) > 0))  # a threshold keeps all ties
    tp, fp = tp[last_of_score], fp[last_of_score]
    f1 = 2 * tp / np.maximum(tp + fp + npos, 1)
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / npos if npos else np.zeros(len(tp))
    return scores[last_of_score], f1, precision, recall, tp, fp


def best_f1(scores, outcome, npos):
    """The threshold with the highest F1 (the highest such threshold on ties) and its figures; threshold None
    without detections."""
    thresholds, f1, precision, recall, tp, fp = f1_curve(scores, outcome, npos)
    if not len(thresholds):
        return {
            "threshold": None,
            "f1": 0.0,
            "precision": None,
            "recall": 0.0 if npos else None,
            "tp": 0,
            "fp": 0,
            "npos": int(npos),
        }
    i = int(np.argmax(f1))
    return {
        "threshold": float(thresholds[i]),
        "f1": float(f1[i]),
        "precision": float(precision[i]),
        "recall": float(recall[i]) if npos else None,
        "tp": int(tp[i]),
        "fp": int(fp[i]),
        "npos": int(npos),
    }


def f1_thresholds(matched):
    """The F1-maximising score threshold at the evaluation IoU, over all classes pooled and per class.

    Returns ({'overall': best_f1, 'per_class': [best_f1 ...]}, {'overall': curve, 'per_class': [curve ...]}),
    matching as in the AP (devkit rules: duplicates false, difficult ignored unless use_difficult).
    """
    pooled = [matched.pooled(c, threshold_index=0) for c in range(matched.num_classes)]
    overall = (
        np.concatenate([p[0] for p in pooled]),
        np.concatenate([p[1] for p in pooled]),
        sum(p[2] for p in pooled),
    )
    best = {"overall": best_f1(*overall), "per_class": [best_f1(*p) for p in pooled]}
    curves = {"overall": f1_curve(*overall)[:2], "per_class": [f1_curve(*p)[:2] for p in pooled]}
    return best, curves


def per_class_table(result, class_names=None):
    """Rows of dicts, one per class, ready for pandas.DataFrame(...).to_csv()."""
    rows = []
    for c in result.per_class:
        row = {"class_id": c.class_id}
        if class_names is not None:
            row["name"] = class_names[c.class_id]
        row.update(
            ap_voc07=c.ap_voc07,
            ap_area=c.ap_area,
            npos=c.npos,
            tp=c.tp,
            fp=c.fp,
            precision=c.precision,
            recall=c.recall,
        )
        rows.append(row)
    return rows


def voc07_ap(recall, precision):
    """VOC2007 11-point AP: mean over t in 0, 0.1, .., 1 of max precision at recall >= t (0 if none)."""
    return float(sum(np.max(precision[recall >= t], initial=0.0) for t in VOC07_RECALL_LEVELS) / 11.0)


def area_ap(recall, precision):
    """VOC2010+ AP: area under the precision envelope (precision made non-increasing in recall)."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    envelope = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * envelope[steps + 1]))


def iou_matrix(boxes_a, boxes_b):
    """Continuous IoU of every box in boxes_a (n, 4) with every box in boxes_b (m, 4): shape (n, m)."""
    a, b = boxes_a[:, None, :], boxes_b[None, :, :]
    width = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0.0)
    height = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0.0)
    intersection = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def above(rows, threshold):
    """The detection rows [class, score, xmin, ymin, xmax, ymax] (an array) scoring at least threshold."""
    return rows[rows[:, 1] >= threshold]


def match_image(truth, found, iou_threshold, use_difficult=False):
    """(true class, predicted class) pairs of one image, BACKGROUND where a side is missing.

    The detections are matched in descending score order, each to the not yet matched box of any class with the
    highest IoU, which must be above iou_threshold; each box is matched at most once. Unless use_difficult,
    difficult boxes and the detections matched to them are left out, as in the mAP.

    truth: rows [cls, xmin, ymin, xmax, ymax, difficult]; found: rows [cls, score, xmin, ymin, xmax, ymax],
    already cut at the score threshold.
    """
    truth = np.asarray(truth, dtype=float).reshape(-1, 6)
    found = np.asarray(found, dtype=float).reshape(-1, 6)
    found = found[np.argsort(-found[:, 1], kind="stable")]
    left_out = (truth[:, 5] > 0) & (not use_difficult)
    ious = iou_matrix(found[:, 2:6], truth[:, 1:5])
    taken = np.zeros(len(truth), bool)
    pairs = []
    for d, row in enumerate(found):
        candidates = np.where(taken, -1.0, ious[d])
        g = int(np.argmax(candidates)) if len(truth) else -1
        if g >= 0 and candidates[g] > iou_threshold:
            taken[g] = True
            if not left_out[g]:
                pairs.append((int(truth[g, 0]), int(row[0])))
        else:
            pairs.append((BACKGROUND, int(row[0])))
    pairs += [(int(truth[g, 0]), BACKGROUND) for g in np.flatnonzero(~taken & ~left_out)]
    return pairs


def confusion_matrix(pairs_per_image, num_classes):
    """(num_classes + 1) square counts: rows true class, columns predicted class, the last of each background."""
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=int)
    for pairs in pairs_per_image:
        for true, predicted in pairs:
            matrix[true, predicted] += 1  # BACKGROUND = -1 indexes the last row and column
    return matrix


def _match_image_class(gt, det, class_id, thresholds, use_difficult):
    """One class in one image: scores (n,) in descending order, outcomes (len(thresholds), n) and npos."""
    gt = gt[gt[:, 0] == class_id]
    difficult = (gt[:, 5] > 0) & (not use_difficult)
    npos = int(np.sum(~difficult))
    det = det[det[:, 0] == class_id]
    if len(det) == 0:
        return np.zeros(0), np.zeros((len(thresholds), 0), int), npos
    det = det[np.argsort(-det[:, 1], kind="stable")]
    ious = iou_matrix(det[:, 2:6], gt[:, 1:5])
    return det[:, 1], np.array([_match_image(ious, difficult, t) for t in thresholds]), npos


def _match_image(ious, difficult, threshold):
    """Greedy devkit matching in one image; ious rows are detections in descending score order."""
    outcome = np.full(ious.shape[0], FALSE_POSITIVE)
    if ious.shape[1] == 0:
        return outcome
    matched = np.zeros(ious.shape[1], bool)
    best = np.argmax(ious, axis=1)  # first box on ties, like the devkit's max()
    for d, g in enumerate(best):
        if ious[d, g] <= threshold:
            continue
        if difficult[g]:
            outcome[d] = IGNORED
        elif not matched[g]:
            outcome[d], matched[g] = TRUE_POSITIVE, True
    return outcome


def _pr_curve(scores, outcome, npos):
    """Precision and recall after each counted detection in descending score order, final tp and fp."""
    order = np.argsort(-scores, kind="stable")
    outcome = outcome[order]
    outcome = outcome[outcome != IGNORED]
    tp = np.cumsum(outcome == TRUE_POSITIVE)
    fp = np.cumsum(outcome == FALSE_POSITIVE)
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / npos if npos else np.zeros(len(tp))
    final_tp, final_fp = (int(tp[-1]), int(fp[-1])) if len(tp) else (0, 0)
    return precision, recall, final_tp, final_fp


def _as_rows(array, what, difficult_optional=False):
    """One image's rows as a float (n, 6) array; ground truth may omit the difficult column."""
    rows = np.asarray(array, dtype=float)
    if rows.size == 0:
        return np.zeros((0, 6))
    if difficult_optional and rows.ndim == 2 and rows.shape[1] == 5:
        rows = np.hstack([rows, np.zeros((len(rows), 1))])
    if rows.ndim != 2 or rows.shape[1] != 6:
        raise ValueError(f"{what}: expected rows of 6 numbers, got shape {rows.shape}")
    return rows


def _mean_ignoring_nan(values):
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")
