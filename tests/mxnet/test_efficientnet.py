"""The converted ImageNet weights classify two photos as PyTorch does (shared/reference/imagenet_check)."""

import json
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
import pytest

from workflow import pretrained
from workflow.lib import efficientnet, networks

CHECK = Path(__file__).resolve().parent / "data" / "imagenet_check"
GIANT_PANDA = 388
# p(giant panda) with PyTorch and symmetric padding, from CHECK / README.md
EXPECTED = {"panda1.jpg": 0.949, "panda2.jpg": 0.890}


def center_crop(path, size=224):
    """TensorFlow EfficientNet's evaluation crop: a centred square of size/(size+32) of the shorter side, bicubic."""
    bgr = cv2.imread(str(path))
    height, width = bgr.shape[:2]
    side = int(size / (size + 32) * min(height, width))
    top, left = (height - side + 1) // 2, (width - side + 1) // 2
    crop = cv2.resize(bgr[top : top + side, left : left + side], (size, size), interpolation=cv2.INTER_CUBIC)
    rgb = crop[:, :, ::-1].astype(np.float32) - np.array(networks.MEAN_RGB, np.float32)
    return mx.nd.array(rgb.transpose(2, 0, 1)[None])


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrained") / "pretrained.params"
    pretrained.main(["--spec", json.dumps("imagenet"), "--cache", str(out.parent / "cache"), "--out", str(out)])
    arrays = mx.nd.load(str(out))
    return {k[4:]: v for k, v in arrays.items() if k.startswith("arg:")}, {
        k[4:]: v for k, v in arrays.items() if k.startswith("aux:")
    }


def probabilities(converted, activation):
    executor = efficientnet.classifier(activation).simple_bind(mx.cpu(), data=(1, 3, 224, 224), grad_req="null")
    executor.copy_params_from(*converted)
    return {name: executor.forward(data=center_crop(CHECK / name))[0].asnumpy()[0] for name in EXPECTED}


def test_converted_weights_classify_the_pandas(converted):
    for name, probs in probabilities(converted, "relu6").items():
        assert probs.argmax() == GIANT_PANDA, name
        assert probs[GIANT_PANDA] == pytest.approx(EXPECTED[name], abs=0.03), name


def test_a_wrong_kernel_layout_fails_the_check(converted):
    args, auxs = converted
    flipped = dict(args, effnet_stem_conv_weight=args["effnet_stem_conv_weight"][:, :, ::-1, ::-1])
    probs = probabilities((flipped, auxs), "relu6")
    assert min(p[GIANT_PANDA] for p in probs.values()) < EXPECTED["panda1.jpg"] - 0.03
