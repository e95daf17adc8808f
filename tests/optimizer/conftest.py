"""What the optimizer suite shares: a seeded, untrained tiny SSD at 64 px (its class scores spread from about 0.2 to
0.7 over 3 classes, so overlapping boxes of different classes abound), saved as the deploy stage saves one, and
images and records to run it on."""

import json

import cv2
import mxnet as mx
import numpy as np

from workflow.lib import networks

SIDE = 64
NUM_CLASSES = 3
CLASSES = ["a", "b", "c"]
NMS_THRESHOLD = 0.45


def seeded_weights(symbol, seed=0):
    """Untrained weights whose class scores are spread out (not all saturated nor all equal)."""
    rng = np.random.default_rng(seed)
    arg_shapes, _, aux_shapes = symbol.infer_shape(data=(1, 3, SIDE, SIDE))
    args = {}
    for name, shape in zip(symbol.list_arguments(), arg_shapes):
        if name.endswith("gamma"):
            args[name] = rng.uniform(0.5, 1.5, shape)
        elif name.endswith(("beta", "bias")):
            args[name] = rng.normal(0, 0.1, shape)
        elif name != "data":
            args[name] = rng.normal(0, 1 / np.sqrt(np.prod(shape[1:])), shape)
    auxs = {}
    for name, shape in zip(symbol.list_auxiliary_states(), aux_shapes):
        if name.endswith("moving_var"):
            auxs[name] = np.full(shape, 3000.0) if name.startswith("bn_data") else rng.uniform(0.5, 1.5, shape)
        else:
            auxs[name] = rng.normal(0, 0.1, shape)

    def as_nd(arrays):
        return {name: mx.nd.array(value) for name, value in arrays.items()}

    return as_nd(args), as_nd(auxs)


def synthetic_images(count=3, seed=1):
    """Non-square BGR images: noise with a few filled rectangles and circles."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        image = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
        for _ in range(4):
            color = [int(c) for c in rng.integers(0, 256, 3)]
            x, y = int(rng.integers(0, 100)), int(rng.integers(0, 70))
            cv2.rectangle(image, (x, y), (x + int(rng.integers(10, 60)), y + int(rng.integers(10, 50))), color, -1)
            cv2.circle(
                image, (int(rng.integers(0, 120)), int(rng.integers(0, 90))), int(rng.integers(5, 30)), color, -1
            )
        images.append(image)
    return images


def write_rec(path, items):
    """A packed .rec as the pack stage writes it: label [2, 6, rows...], the image as a JPEG (RGB in, BGR stored)."""
    writer = mx.recordio.MXRecordIO(str(path), "w")
    for index, (image_bgr, truth) in enumerate(items):
        label = np.concatenate([[2, 6], truth.reshape(-1)]).astype(np.float32)
        jpeg = cv2.imencode(".png", image_bgr)[1].tobytes()  # lossless: the records decode to these pixels
        writer.write(mx.recordio.pack(mx.recordio.IRHeader(0, label, index, 0), jpeg))
    writer.close()
    return path


def save_deploy(folder, args, aux, threshold=0.01, classes=CLASSES):
    """The tiny deploy model with these weights in folder as the deploy stage writes it (force_nms, NMS at
    NMS_THRESHOLD, top 400): its deploy.json."""
    folder.mkdir(parents=True, exist_ok=True)
    symbol = networks.build_deploy_symbol("tiny", len(classes), SIDE, nms_threshold=NMS_THRESHOLD, threshold=threshold)
    mx.model.save_checkpoint(str(folder / "deploy"), 3, symbol, args, aux)
    info = {
        "symbol": "deploy-symbol.json",
        "params": "deploy-0003.params",
        "epoch": 3,
        "data_shape": SIDE,
        "classes": classes,
        "force_nms": True,
        "nms_threshold": NMS_THRESHOLD,
        "nms_topk": 400,
        "threshold": threshold,
        "input": {"mean_rgb": list(networks.MEAN_RGB), "scale": 1.0},
    }
    (folder / "deploy.json").write_text(json.dumps(info))
    return folder / "deploy.json"


def tie_anchors(args, num_classes=NUM_CLASSES, step=2e-5):
    """The weights with two overlapping anchors of every cell of the first feature map (0: 0.2 square, 2: 0.2 at
    ratio 2; IoU 0.55) scoring within FP16 resolution of each other: the same class weights, biases that FP16 holds
    exactly, anchor 2's foreground logits `step` higher (under half an FP16 step), no box offsets. MXNet keeps anchor
    2's box; an FP16 model sees the two tie exactly and keeps anchor 0's."""
    width = num_classes + 1
    cls_weight, cls_bias = (
        sorted(name for name in args if name.endswith(f"cls_pred_conv_{kind}"))[0] for kind in ("weight", "bias")
    )
    loc_weight, loc_bias = (
        sorted(name for name in args if name.endswith(f"loc_pred_conv_{kind}"))[0] for kind in ("weight", "bias")
    )
    tied = {name: value.copy() for name, value in args.items()}
    weight, bias = tied[cls_weight].asnumpy(), tied[cls_bias].asnumpy().astype(np.float16).astype(np.float32)
    weight[2 * width : 3 * width] = weight[:width]
    bias[2 * width : 3 * width] = bias[:width] + np.r_[0, np.full(num_classes, step)]
    offsets_weight, offsets_bias = tied[loc_weight].asnumpy(), tied[loc_bias].asnumpy()
    for anchor in (0, 2):
        offsets_weight[4 * anchor : 4 * anchor + 4] = 0
        offsets_bias[4 * anchor : 4 * anchor + 4] = 0
    for name, value in ((cls_weight, weight), (cls_bias, bias), (loc_weight, offsets_weight), (loc_bias, offsets_bias)):
        tied[name] = mx.nd.array(value)
    return tied
