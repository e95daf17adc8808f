"""Stand-in for the DeepLens device library `awscam` (which only exists on the device), for rehearsing the
DeepLens Lambda on this machine. Not shipped: the device has the real one.

Follows the AWS DeepLens Developer Guide (awsdocs/aws-deeplens-user-guide, doc_source/):
- `awscam.getLastFrame()`: "Retrieves the latest frame from the video stream"; returns `ret`, "A Boolean value
  (true or false) that indicates whether the call was successful", and `video_frame`, "A numpy.ndarray that
  represents a video frame" (BGR, as OpenCV's). Here the frames are the images given to `play`, a None among them
  standing for a frame the camera failed to deliver ((False, None)); once they run out, getLastFrame raises
  EndOfFrames, which the Lambda's `except Exception` does not catch: it ends the Lambda's endless loop.
- `awscam.Model(model_topology_file, loading_config, runtime=0)`: with runtime 0, model_topology_file is "the path
  to an optimized model (.xml) file output by the mo.optimize method"; loading_config `{"GPU": 1}` "Loads the
  model into the GPU", `{"GPU": 0}` into the CPU. Here both run on OpenVINO's CPU plugin at an explicit f32
  inference precision (the plugin would pick bf16 on CPUs with AVX512_BF16 or AMX).
- `model.doInference(video_frame)`: returns "a dict object with entries of key-value pairs. The key of an entry is
  the identifier of an output layer of the model ... the output layer name"; the value holds the layer's output.
- `model.parseResult(model_type, raw_infer_result)`: "Returns a dict with a single entry of key-value pair. The key
  is the model_type value. The value is a list of dict objects"; for `ssd` each is {"label", "xmin", "xmax",
  "ymin", "ymax", "prob"}, the box in pixels of the model input (the guide's example: "xmin": 124, "xmax": 245).

Stand-in only, for the rehearsal's proof of the Lambda's post-processing: after `play_network_outputs(outputs)`,
doInference checks the frame as ever but gives the model's DetectionOutput run on the next of those network outputs
(class probabilities, box offsets) with the model's own anchors, instead of on the frame's.
"""

import numpy as np

_frames = iter(())
_network_outputs = None


class EndOfFrames(BaseException):
    """Stand-in only: the frames given to play() ran out."""


def play(frames):
    """Stand-in only: the frames (BGR uint8 arrays, or None for a failed read) the next getLastFrame calls return."""
    global _frames
    _frames = iter(frames)


def play_network_outputs(outputs):
    """Stand-in only: the (class probabilities (anchors, classes + 1), box offsets (anchors, 4)) the next doInference
    calls post-process, in turn (None: the frames' own)."""
    global _network_outputs
    _network_outputs = None if outputs is None else iter(outputs)


def getLastFrame():  # noqa: N802 (the device library's name)
    frame = next(_frames, EndOfFrames)
    if frame is EndOfFrames:
        raise EndOfFrames()
    return (frame is not None), frame


class Model:
    def __init__(self, model_topology_file, loading_config, runtime=0):
        import openvino as ov

        if runtime != 0:
            raise ValueError("the stand-in runs only runtime=0 (Intel DLDT) models, not Neo-compiled ones")
        if set(loading_config) != {"GPU"}:
            raise ValueError(f"loading_config must be {{'GPU': 1}} or {{'GPU': 0}}, not {loading_config}")
        self.core, self.path, self.config = ov.Core(), model_topology_file, {"INFERENCE_PRECISION_HINT": "f32"}
        self.compiled = self.core.compile_model(self.core.read_model(model_topology_file), "CPU", self.config)
        self.postprocessing = None
        _, _, self.height, self.width = self.compiled.input(0).shape

    def doInference(self, video_frame):  # noqa: N802
        if video_frame.shape != (self.height, self.width, 3):
            raise ValueError(f"frame of shape {video_frame.shape}; the model takes {(self.height, self.width, 3)}")
        tensor = video_frame.astype(np.float32).transpose(2, 0, 1)[np.newaxis]
        if _network_outputs is None:
            compiled, inputs = self.compiled, [tensor]
        else:
            class_prob, offsets = next(_network_outputs)
            compiled, inputs = self.detection_output(), [tensor, offsets.reshape(1, -1), class_prob.reshape(1, -1)]
        outputs = compiled(inputs)
        return {port.get_any_name(): outputs[port].ravel() for port in compiled.outputs}

    def detection_output(self):
        """Stand-in only: the model with parameters for its DetectionOutput's box offsets and class probabilities
        (inputs: the frame, whose shape gives the anchors, then those two)."""
        if self.postprocessing is None:
            import openvino as ov
            from openvino.runtime import op

            model = self.core.read_model(self.path)
            (detection,) = [node for node in model.get_ordered_ops() if node.get_type_name() == "DetectionOutput"]
            parameters = []
            for index in (0, 1):  # box offsets, class probabilities; input 2 (the anchors) stays
                source = detection.input_value(index)
                parameters.append(op.Parameter(source.get_element_type(), source.get_partial_shape()))
                detection.input(index).replace_source_output(parameters[-1].output(0))
            model = ov.Model(model.get_results(), [*model.get_parameters(), *parameters])
            self.postprocessing = self.core.compile_model(model, "CPU", self.config)
        return self.postprocessing

    def parseResult(self, model_type, raw_infer_result):  # noqa: N802
        (values,) = raw_infer_result.values()
        if model_type == "classification":
            order = np.argsort(-values, kind="stable")
            return {model_type: [{"label": int(i), "prob": float(values[i])} for i in order]}
        if model_type != "ssd":
            raise ValueError(f"the stand-in parses 'ssd' and 'classification' results, not '{model_type}'")
        rows = values.reshape(-1, 7)  # DetectionOutput: image_id, label, score, xmin, ymin, xmax, ymax (0-1)
        end = np.flatnonzero(rows[:, 0] == -1)
        rows = rows[: end[0] if len(end) else len(rows)]
        return {
            model_type: [
                {
                    "label": int(label),
                    "prob": float(score),
                    "xmin": float(xmin) * self.width,
                    "ymin": float(ymin) * self.height,
                    "xmax": float(xmax) * self.width,
                    "ymax": float(ymax) * self.height,
                }
                for _, label, score, xmin, ymin, xmax, ymax in rows
            ]
        }
