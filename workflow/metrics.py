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
    if len(ground_truth) != len(detections):
        raise ValueError(f"{len(ground_truth)} ground-truth images but {len(detections)} detection images")
    gts = [_as_rows(g, "ground truth", difficult_optional=True) for g in ground_truth]
    dets = [_as_rows(d, "detections") for d in detections]
    thresholds = np.concatenate(([iou_threshold], COCO_IOU_THRESHOLDS))

    per_class = []
    for class_id in range(num_classes):
        scores, outcomes, npos = _match_class(gts, dets, class_id, thresholds, use_difficult)
        curves = [_pr_curve(scores, row, npos) for row in outcomes]
        precision, recall, tp, fp = curves[0]
        has_data = npos > 0 or len(scores) > 0
        nan = float("nan")
        per_class.append(ClassResult(
            class_id=class_id, npos=npos, tp=tp, fp=fp,
            ap_voc07=voc07_ap(recall, precision) if has_data else nan,
            ap_area=area_ap(recall, precision) if has_data else nan,
            ap_coco=float(np.mean([area_ap(c[1], c[0]) for c in curves[1:]])) if has_data else nan,
            precision_curve=precision, recall_curve=recall,
        ))

    return EvaluationResult(
        per_class=per_class,
        map_voc07=_mean_ignoring_nan([c.ap_voc07 for c in per_class]),
        map_area=_mean_ignoring_nan([c.ap_area for c in per_class]),
        coco_map=_mean_ignoring_nan([c.ap_coco for c in per_class]),
        iou_threshold=iou_threshold,
        use_difficult=use_difficult,
    )


def per_class_table(result, class_names=None):
    """Rows of dicts, one per class, ready for pandas.DataFrame(...).to_csv()."""
    rows = []
    for c in result.per_class:
        row = {"class_id": c.class_id}
        if class_names is not None:
            row["name"] = class_names[c.class_id]
        row.update(ap_voc07=c.ap_voc07, ap_area=c.ap_area, npos=c.npos, tp=c.tp, fp=c.fp,
                   precision=c.precision, recall=c.recall)
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


def _match_class(gts, dets, class_id, thresholds, use_difficult):
    """Pool one class over all images: scores (n,), outcomes (len(thresholds), n) and npos."""
    scores, outcomes, npos = [], [], 0
    for gt, det in zip(gts, dets):
        gt = gt[gt[:, 0] == class_id]
        difficult = (gt[:, 5] > 0) & (not use_difficult)
        npos += int(np.sum(~difficult))
        det = det[det[:, 0] == class_id]
        if len(det) == 0:
            continue
        det = det[np.argsort(-det[:, 1], kind="stable")]
        ious = iou_matrix(det[:, 2:6], gt[:, 1:5])
        scores.append(det[:, 1])
        outcomes.append([_match_image(ious, difficult, t) for t in thresholds])
    if not scores:
        return np.zeros(0), np.zeros((len(thresholds), 0), int), npos
    return np.concatenate(scores), np.concatenate(outcomes, axis=1), npos


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
