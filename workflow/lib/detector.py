"""Running a deploy model (symbol + params written by the deploy stage) on images, and reading records.

One preprocessing path for evaluate, demo and the IR check: RGB, forced resize to data_shape (aspect
ratio not kept), mean RGB subtracted, no scaling, NCHW float32.
"""

import json
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np

from workflow.lib import checkpoints, deploy_graph
from workflow.lib.networks import MEAN_RGB


def preprocess(rgb, data_shape):
    resized = cv2.resize(rgb, (data_shape, data_shape), interpolation=cv2.INTER_LINEAR)
    return (resized.astype(np.float32) - np.array(MEAN_RGB, dtype=np.float32)).transpose(2, 0, 1)


def read_records(rec_path):
    """Yield (RGB image, ground truth rows [cls, xmin, ymin, xmax, ymax, difficult]) from a packed .rec."""
    reader = mx.recordio.MXRecordIO(str(rec_path), "r")
    while True:
        item = reader.read()
        if item is None:
            break
        header, jpeg = mx.recordio.unpack(item)
        label = np.asarray(header.label, dtype=np.float32)
        width = int(label[1])
        gt = label[int(label[0]) :].reshape(-1, width)[:, :6]
        yield cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), gt
    reader.close()


class Detector:
    """A deploy model bound for inference: detect(list of RGB images) -> list of [cls, score, x1, y1, x2, y2] arrays."""

    def __init__(self, deploy_info_path, batch_size=1, context=None):
        info_path = Path(deploy_info_path)
        info = json.loads(info_path.read_text())
        folder = info_path.parent
        symbol = mx.sym.load(str(folder / info["symbol"]))
        args, aux = mx.model.load_params(str(folder / info["params"].rsplit("-", 1)[0]), info["epoch"])
        self._bind(info, symbol, args, aux, batch_size, context)

    @classmethod
    def from_graph(cls, info, symbol, args, aux, batch_size=1, context=None):
        """A detector of a deploy graph held in memory; info as in deploy.json (data_shape, classes, epoch ...)."""
        detector = cls.__new__(cls)
        detector._bind(info, symbol, args, aux, batch_size, context)
        return detector

    @classmethod
    def from_checkpoint(cls, info, folder, epoch, weights="params", batch_size=1):
        """A detector of a training checkpoint (checkpoints.deploy_graph: weights "params" or "sgd.params"), with
        the network, classes and post-processing of info as in deploy.json."""
        detection = {key: info[key] for key in ("force_nms", "nms_threshold", "nms_topk", "threshold")}
        graph = checkpoints.deploy_graph(
            folder, epoch, info["network"], len(info["classes"]), info["data_shape"], weights=weights, **detection
        )
        return cls.from_graph({**info, "epoch": epoch}, *graph, batch_size=batch_size)

    def _bind(self, info, symbol, args, aux, batch_size, context):
        self.info, self.data_shape, self.batch_size = info, info["data_shape"], batch_size
        self.module = mx.mod.Module(symbol, data_names=["data"], label_names=None, context=context or mx.cpu())
        self.module.bind(data_shapes=[("data", (batch_size, 3, self.data_shape, self.data_shape))], for_training=False)
        self.module.set_params(args, aux, allow_missing=False, allow_extra=False)
        self.graph = json.loads(symbol.tojson())
        self._network = None

    def raw(self, images):
        """The deploy graph's output for up to batch_size images: (n, anchors, 6)."""
        batch = np.zeros((self.batch_size, 3, self.data_shape, self.data_shape), dtype=np.float32)
        for i, rgb in enumerate(images):
            batch[i] = preprocess(rgb, self.data_shape)
        self.module.forward(mx.io.DataBatch([mx.nd.array(batch)]), is_train=False)
        return self.module.get_outputs()[0].asnumpy()[: len(images)]

    def network(self):
        """The deploy graph up to its MultiBoxDetection, bound for one image (a Network)."""
        if self._network is None:
            internals = self.module.symbol.get_internals()
            names = deploy_graph.output_names(self.graph, "the deploy graph")
            group = mx.sym.Group([internals[name] for name in names])
            self._network = Network(group, *self.module.get_params(), self.data_shape)
        return self._network

    @property
    def anchors(self):
        return self.network().anchors

    @property
    def settings(self):
        """The post-processing of the graph's MultiBoxDetection (deploy_graph.settings)."""
        return deploy_graph.settings(self.graph, self.info.get("symbol", "the deploy graph"))

    def contract_settings(self):
        """What every export's contract must carry as the deploy model has it: the post-processing settings of its
        MultiBoxDetection (but the variances, which the exports carry as their own) and the class names."""
        settings = {key: value for key, value in self.settings.items() if key != "variances"}
        return {**settings, "labels": self.info["classes"]}

    def network_outputs(self, rgb):
        """(class probabilities (anchors, classes + 1), box offsets (anchors, 4)) of one RGB image: what the deploy
        graph's MultiBoxDetection takes."""
        return self.network().outputs(preprocess(rgb, self.data_shape))

    def postprocess(self, class_prob, offsets, force_nms=None):
        """The deploy graph's own MultiBoxDetection (its attributes as deployed, but for NMS across classes when
        force_nms is True or False) on network outputs: the kept rows [cls, score, xmin, ymin, xmax, ymax], best
        first."""
        graph = deploy_graph.detection_graph(self.graph, "the deploy graph")
        if force_nms is not None:
            node = graph["nodes"][-1]
            node["attrs"] = {**node.get("attrs", {}), "force_suppress": str(force_nms)}
        detection = mx.sym.load_json(json.dumps(graph))
        rows = detection.eval(
            ctx=mx.cpu(),
            class_prob=mx.nd.array(class_prob.T[np.newaxis]),
            box_offsets=mx.nd.array(offsets.reshape(1, -1)),
            anchors=mx.nd.array(self.anchors[np.newaxis]),
        )[0].asnumpy()[0]
        return rows[rows[:, 0] >= 0]

    def detect(self, images):
        detections = []
        for start in range(0, len(images), self.batch_size):
            for rows in self.raw(images[start : start + self.batch_size]):
                detections.append(rows[rows[:, 0] >= 0])
        return detections


class Network:
    """A graph whose outputs are MultiBoxDetection's inputs (class probabilities (1, classes + 1, anchors), box offsets
    (1, anchors * 4), anchors (1, anchors, 4)), bound with its weights for one input (3, side, side)."""

    def __init__(self, symbol, args, aux, side):
        self.executor = symbol.simple_bind(mx.cpu(), data=(1, 3, side, side), grad_req="null")
        for name, value in {**args, **aux}.items():
            target = self.executor.arg_dict.get(name, self.executor.aux_dict.get(name))
            if target is not None:
                target[:] = value
        self.anchors = self.executor.forward(is_train=False)[2].asnumpy()[0]

    def outputs(self, tensor):
        """(class probabilities (anchors, classes + 1), box offsets (anchors, 4)) of one input (3, side, side)."""
        self.executor.arg_dict["data"][:] = tensor[np.newaxis]
        class_prob, offsets = (output.asnumpy()[0] for output in self.executor.forward(is_train=False)[:2])
        return class_prob.T, offsets.reshape(-1, 4)
