"""What every proof of an export compares with MXNet, and its tolerances (docs/numbers.md, "The proofs").

An export is right when it computes the network that MXNet computes and does with the network's outputs what the
deploy graph's MultiBoxDetection does. Each proof checks the two apart, so that its verdict rests neither on two
boxes that tie nor on a score at a threshold (which decide which detections come out, and flip with the last bit
of a float):

- The network: every anchor's class probabilities and box offsets times the variances (the box's shift in its
  anchor's size and the log of its size ratio: a difference there is a box's relative move, whatever the box's size;
  relative to its own size where that is over 1: an undertrained model's offsets reach 30, and float rounding grows
  with them), on every val image, within NETWORK_TOLERANCE of the reference's. Two computations of the same FP32
  weights differ by about 3e-6 on a trained model and 1e-5 on a 4-epoch one (measured: the IR, onnxruntime, LiteRT,
  MXNet 0.12, MXNet capped at AVX2); a real defect by far more (colours swapped 0.5, a mean off by 3 0.08, one
  convolution's weights scaled by 1.02 at least 5e-3). FP16 weights move the outputs by as much as that 2% error, so
  a model with FP16 weights is compared with its FP32 twin whose weights are rounded to FP16 as its own are (exactly
  what it computes), at the same tolerance, and the twin with MXNet.
- The post-processing: the export's decoding, top-k, NMS and thresholds, fed the same network outputs as MXNet's
  MultiBoxDetection, keep the same detections. The outputs are synthetic (`synthetic_outputs`): clusters of
  overlapping boxes of every class, scores spread over the whole range, no two scores within TIE_GAP of each other
  or of a threshold, no two boxes' IoU within TIE_GAP of the NMS threshold.

INT8 models change the network by design: their rule is the mAP budget, and their network difference is reported.
Numpy only: it runs in every environment, MXNet 0.12's included.
"""

import numpy as np

from workflow.lib.metrics import iou_matrix

NETWORK_TOLERANCE = 1e-4  # of a class probability, and of a box offset times its variance (relative_offsets)
ANCHOR_TOLERANCE = 1e-5  # the same anchors and variances computed by two implementations
POSTPROCESSING_TOLERANCE = 1e-5  # a kept detection's score and corners, the same inputs post-processed twice
TIE_GAP = 1e-3
SYNTHETIC_CASES = 4
OFFSETS = ("x centre", "y centre", "width", "height")
INT8_NETWORK_NOTE = (
    "reported, not held to the tolerance: quantization changes the network by design (its rule is the mAP budget)"
)
MAX_CANDIDATES = 600  # in a case of synthetic network outputs, whose scores are distinct steps of TIE_GAP below 1


def decode(offsets, anchors, variances):
    """Boxes [xmin, ymin, xmax, ymax] of (anchors, 4) offsets, as MultiBoxDetection decodes them (before clipping)."""
    variances = np.asarray(variances, np.float32)
    size = anchors[:, 2:] - anchors[:, :2]
    center = (anchors[:, :2] + anchors[:, 2:]) / 2 + offsets[:, :2] * variances[..., :2] * size
    half = np.exp(offsets[:, 2:] * variances[..., 2:]) * size / 2
    return np.concatenate([center - half, center + half], axis=1)


class NetworkComparison:
    """The largest differences of a model's network outputs from a reference's, image by image: each output is
    (class probabilities (anchors, classes + 1), box offsets (anchors, 4)), the background first; the offsets are
    compared times the variances."""

    def __init__(self, model, variances, classes, reference="MXNet", tolerance=NETWORK_TOLERANCE):
        self.model, self.reference, self.tolerance = model, reference, tolerance
        self.variances, self.classes = np.asarray(variances, np.float32), ["background", *classes]
        self.images, self.shape_problem = 0, None
        self.worst = {"class_prob": (0.0, None), "box": (0.0, None)}

    def add(self, reference_outputs, outputs):
        (reference_prob, reference_offsets), (prob, offsets) = reference_outputs, outputs
        image = self.images
        self.images += 1
        if prob.shape != reference_prob.shape or offsets.shape != reference_offsets.shape:
            reference_shape = describe_shape(reference_prob, reference_offsets)
            self.shape_problem = self.shape_problem or (
                f"{self.model} gives {describe_shape(prob, offsets)}, {self.reference} {reference_shape}"
            )
            return
        for kind, difference in (
            ("class_prob", np.abs(prob - reference_prob)),
            ("box", relative_offsets(offsets, reference_offsets, self.variances)),
        ):
            anchor, column = np.unravel_index(np.argmax(difference), difference.shape)
            if difference[anchor, column] > self.worst[kind][0]:
                self.worst[kind] = (float(difference[anchor, column]), (image, int(anchor), int(column)))

    def result(self):
        """verify.json's part: the largest difference of a class probability and of a box offset (times its
        variance), where it is, the tolerance, and the problems (none when the model computes what the reference
        computes)."""
        result = {"model": self.model, "reference": self.reference, "images": self.images, "tolerance": self.tolerance}
        for kind, (difference, where) in self.worst.items():
            result[f"max_{kind}_difference"] = difference
            result[f"max_{kind}_at"] = self.place(kind, where)
        result["problems"] = self.problems()
        return result

    def place(self, kind, where):
        if where is None:
            return None
        image, anchor, column = where
        detail = f"class {self.classes[column]}" if kind == "class_prob" else OFFSETS[column]
        return f"val image {image}, anchor {anchor}, {detail}"

    def problems(self):
        if self.shape_problem:
            return [self.shape_problem]
        found = []
        for kind, what in (("class_prob", "class probabilities"), ("box", "box offsets (times the variances)")):
            difference, where = self.worst[kind]
            if difference > self.tolerance:
                found.append(
                    f"{self.model}'s {what} differ from {self.reference}'s by up to {difference:.2g} "
                    f"({self.place(kind, where)}; tolerance {self.tolerance:g})"
                )
        return found


def relative_offsets(offsets, reference_offsets, variances):
    """|offsets - reference| times the variances, divided by the reference's own size where that is over 1."""
    scaled = reference_offsets * variances
    return np.abs(offsets * variances - scaled) / np.maximum(1.0, np.abs(scaled))


def network_summary(result):
    """One line of a NetworkComparison's result."""
    return (
        f"{result['model']} against {result['reference']} on {result['images']} images: class probabilities within "
        f"{result['max_class_prob_difference']:.1e}, box offsets within {result['max_box_difference']:.1e} "
        f"(tolerance {result['tolerance']:g})"
        + ("" if not result["problems"] else f": {'; '.join(result['problems'])}")
    )


def postprocessing_summary(result):
    """One line of compare_postprocessing's result."""
    return f"{result['model']}'s post-processing on {result['cases']} synthetic network outputs: " + (
        "; ".join(result["problems"])
        if result["problems"]
        else f"the {result['mxnet_detections']} detections "
        f"MXNet's MultiBoxDetection keeps, within {result['max_difference']:.1e}"
    )


def describe_shape(prob, offsets):
    return f"{prob.shape[0]} anchors x {prob.shape[1] - 1} classes and {offsets.shape[0]} box offsets"


def anchor_problems(model, anchors, variances, reference_anchors, reference_variances):
    """Why a model's anchors (anchors, 4) and variances (anchors, 4) or (4,) are not MXNet's, or []."""
    if anchors.shape != reference_anchors.shape:
        return [f"{model} has {len(anchors)} anchors, MXNet {len(reference_anchors)} (anchors of another input size?)"]
    found = []
    moved = float(np.abs(anchors - reference_anchors).max(initial=0))
    if moved > ANCHOR_TOLERANCE:
        found.append(f"{model}'s anchors differ from MXNet's by up to {moved:.2g} of the image side")
    wrong = np.abs(np.broadcast_to(variances, anchors.shape) - np.asarray(reference_variances, np.float32)).max()
    if wrong > ANCHOR_TOLERANCE:
        shown = np.unique(np.round(np.asarray(variances, np.float64).reshape(-1, 4), 6), axis=0)[:2].tolist()
        found.append(f"{model} decodes with variances {shown}, MXNet with {list(reference_variances)}")
    return found


def settings_problems(model, settings, reference):
    """Why the post-processing settings or class names an export carries (a contract) are not the deploy model's."""
    found = []
    for key, value in reference.items():
        if key not in settings:
            found.append(f"{model} carries no {key}")
        elif not same_setting(settings[key], value):
            found.append(f"{model}'s {key} is {settings[key]!r}, the deploy model's {value!r}")
    return found


def same_setting(value, reference):
    if isinstance(reference, float):
        return isinstance(value, (int, float)) and abs(value - reference) <= 1e-6
    return value == reference


def synthetic_outputs(anchors, variances, num_classes, settings, max_candidates=None, cases=SYNTHETIC_CASES, seed=0):
    """Network outputs [(class probabilities (anchors, classes + 1), box offsets (anchors, 4))] that exercise a
    post-processing with `settings` (model_score_threshold, nms_threshold, nms_topk): each anchor's best class drawn
    apart and the others' scores below it; the best scores distinct steps of TIE_GAP from half the threshold to 1;
    every other anchor's scores below half the threshold; no two candidates' IoU within TIE_GAP of the NMS threshold.
    The first cases hold clusters of overlapping boxes (NMS decides), fewer than nms_topk; the one before the last
    fewer, scattered (the threshold decides: the scores under three times it are all there, and most boxes outlive
    NMS); the last more candidates than nms_topk, scattered (the top-k decides). No case holds more than
    max_candidates (default MAX_CANDIDATES)."""
    rng = np.random.default_rng(seed)
    limit = settings["nms_topk"] if settings["nms_topk"] > 0 else len(anchors)
    most = min(len(anchors), max_candidates or MAX_CANDIDATES)
    outputs = []
    for case in range(cases):
        scattered = case >= cases - 2
        count = min(most, limit + 50 if case == cases - 1 else max(2, limit * 3 // 4))
        candidates = (
            rng.choice(len(anchors), count, replace=False) if scattered else clustered_anchors(anchors, count, rng)
        )
        offsets = np.zeros((len(anchors), 4), np.float32)
        offsets[candidates] = separated_offsets(anchors[candidates], variances, settings["nms_threshold"], rng)
        prob = background_prob(len(anchors), num_classes, settings["model_score_threshold"], rng)
        prob[candidates] = candidate_prob(len(candidates), num_classes, settings["model_score_threshold"], rng)
        outputs.append((prob, offsets))
    return outputs


def clustered_anchors(anchors, count, rng):
    """`count` distinct anchor indices in clusters: the anchors nearest a few random centres."""
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    chosen = []
    for _ in range(4 * count):  # clusters until enough; anchors repeat across clusters
        if len(set(chosen)) >= count:
            break
        distance = np.abs(centres - rng.uniform(0, 1, 2)).max(axis=1)
        chosen += list(np.argsort(distance, kind="stable")[: max(2, count // 6)])
    return np.array(list(dict.fromkeys(chosen))[:count])


def separated_offsets(anchors, variances, nms_threshold, rng, tries=100):
    """Offsets for these anchors whose decoded boxes (with the 4 variances) overlap each other at no IoU within TIE_GAP
    of nms_threshold."""
    offsets = rng.normal(0, 1, (len(anchors), 4)).astype(np.float32)
    for _ in range(tries):
        boxes = np.clip(decode(offsets, anchors, variances), 0, 1)
        near = np.abs(iou_matrix(boxes, boxes) - nms_threshold) < TIE_GAP
        np.fill_diagonal(near, False)
        rows = np.flatnonzero(near.any(axis=1))
        if len(rows) == 0:
            return offsets
        offsets[rows[::2]] = rng.normal(0, 1, (len(rows[::2]), 4))
    raise RuntimeError("no offsets without an IoU at the NMS threshold")  # never seen: a pair is redrawn each time


def background_prob(anchors, num_classes, threshold, rng):
    """Every anchor background: each class's score under half the threshold."""
    prob = np.zeros((anchors, num_classes + 1), np.float32)
    prob[:, 1:] = rng.uniform(0, threshold / 2, (anchors, num_classes))
    prob[:, 0] = 1 - prob[:, 1:].sum(axis=1)
    return prob


def candidate_prob(count, num_classes, threshold, rng):
    """Class probabilities of `count` candidates: distinct best scores on a grid of TIE_GAP steps (none within
    TIE_GAP / 2 of the threshold), every step under three times the threshold among them, the best class drawn,
    each other class under 0.9 of the best."""
    grid = np.arange(threshold / 2, 1, TIE_GAP) + TIE_GAP / 2
    grid = grid[(np.abs(grid - threshold) >= TIE_GAP / 2) & (grid < 1)]
    low, high = grid[grid < 3 * threshold], grid[grid >= 3 * threshold]
    best = np.concatenate([low, rng.choice(high, max(0, count - len(low)), replace=False)])
    best = rng.permutation(best[:count]).astype(np.float32)
    others = rng.uniform(0, 0.9, (count, num_classes)) * np.minimum(best, 1 - best)[:, None] / num_classes
    labels = rng.integers(0, num_classes, count)
    others[np.arange(count), labels] = best
    return np.column_stack([1 - others.sum(axis=1), others]).astype(np.float32)


def compare_postprocessing(model, expected, found, tolerance=POSTPROCESSING_TOLERANCE):
    """verify.json's part: MXNet's detections (rows [class, score, xmin, ymin, xmax, ymax], best first) against
    the model's, case by case, on the same synthetic network outputs: counts, the largest difference and the
    problems (none when every case keeps the same rows, scores and corners within tolerance)."""
    differences, worst, detections = [], 0.0, 0
    for case, (want, got) in enumerate(zip(expected, found)):
        want, got = np.asarray(want, np.float32).reshape(-1, 6), np.asarray(got, np.float32).reshape(-1, 6)
        detections += len(want)
        shared = min(len(want), len(got))
        labels_differ = np.flatnonzero(want[:shared, 0] != got[:shared, 0])
        difference = np.abs(want[:shared, 1:] - got[:shared, 1:]).max(axis=1, initial=0)
        wrong = np.flatnonzero(difference > tolerance)
        worst = max(worst, float(difference.max(initial=0)))
        mismatched = sorted({*labels_differ, *wrong})
        if mismatched or len(want) != len(got):
            differences.append(describe_difference(model, case, want, got, mismatched[0] if mismatched else shared))
    problems = [f"{differences[0]} ({len(differences)} of {len(expected)} cases differ)"] if differences else []
    return {
        "model": model,
        "cases": len(expected),
        "mxnet_detections": detections,
        "max_difference": worst,
        "tolerance": tolerance,
        "differences": differences,
        "problems": problems,
    }


def describe_difference(model, case, want, got, first):
    def row(rows):
        return (
            f"[{int(rows[first][0])}, " + ", ".join(f"{v:.4f}" for v in rows[first][1:]) + "]"
            if first < len(rows)
            else "none"
        )

    return (
        f"on synthetic network outputs {case}, MXNet's MultiBoxDetection keeps {len(want)} detections and {model}'s "
        f"post-processing {len(got)}; detection {first} (best first): MXNet {row(want)}, {model} {row(got)}"
    )
