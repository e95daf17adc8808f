"""Running a deploy model (symbol + params written by the deploy stage) on images, and reading records.

One preprocessing path for evaluate, demo and the IR check: RGB, forced resize to data_shape (aspect
ratio not kept), mean RGB subtracted, no scaling, NCHW float32.
"""

import json
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np

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

    def _bind(self, info, symbol, args, aux, batch_size, context):
        self.info, self.data_shape, self.batch_size = info, info["data_shape"], batch_size
        self.module = mx.mod.Module(symbol, data_names=["data"], label_names=None, context=context or mx.cpu())
        self.module.bind(data_shapes=[("data", (batch_size, 3, self.data_shape, self.data_shape))], for_training=False)
        self.module.set_params(args, aux, allow_missing=False, allow_extra=False)

    def raw(self, images):
        """The deploy graph's output for up to batch_size images: (n, anchors, 6)."""
        batch = np.zeros((self.batch_size, 3, self.data_shape, self.data_shape), dtype=np.float32)
        for i, rgb in enumerate(images):
            batch[i] = preprocess(rgb, self.data_shape)
        self.module.forward(mx.io.DataBatch([mx.nd.array(batch)]), is_train=False)
        return self.module.get_outputs()[0].asnumpy()[: len(images)]

    def detect(self, images):
        detections = []
        for start in range(0, len(images), self.batch_size):
            for rows in self.raw(images[start : start + self.batch_size]):
                detections.append(rows[rows[:, 0] >= 0])
        return detections
