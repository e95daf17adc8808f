"""The report and the artifacts' README say why an INT8 LiteRT model was left out, and name it when it was shipped."""

from workflow.artifacts import litert_row
from workflow.report import litert_section

PAIRED = {"matched": 34, "agreement": 1.0, "only_mxnet": 0, "only_litert_float32": 0}
CHECK = {
    "images": 23,
    "min_score": 0.5,
    "map_tolerance": 0.005,
    "max_map_drop": 0.01,
    "mxnet_map_voc07": 0.9333,
    "float32_map_voc07": 0.9333,
    "float32_paired": PAIRED,
    "float32_network": {"max_class_prob_difference": 2.9e-6, "max_box_difference": 1.6e-6, "reference": "MXNet"},
    "int8_map_voc07": 0.9012,
    "int8_paired": {"agreement": 0.6},
}
MISSED = "the INT8 model's mAP 0.9012 is 0.0321 below MXNet's 0.9333 (int8_max_map_drop 0.01)"


def litert(models, **check):
    return {"models": models, "check": {**CHECK, **check}}


def test_an_int8_model_left_out_is_named_with_the_reason():
    left_out = litert({"float32": "model_float32.tflite"}, int8_not_shipped=MISSED)
    assert f"INT8 not shipped: {MISSED.replace(chr(39), '&#x27;')}" in litert_section(left_out)
    row = litert_row({"litert": left_out})
    assert f"no INT8 model: {MISSED}" in row and "model_int8.tflite" not in row


def test_a_shipped_int8_model_is_listed_with_its_map():
    shipped = litert({"float32": "model_float32.tflite", "int8": "model_int8.tflite"})
    assert "INT8 (model_int8.tflite, TFLite's full-integer quantization): mAP 0.9012" in litert_section(shipped)
    assert "model_float32.tflite, model_int8.tflite" in litert_row({"litert": shipped})
    assert "its class probabilities within 3e-06 and its box offsets within 2e-06 of MXNet's" in litert_row(
        {"litert": shipped}
    )
    assert "not shipped" not in litert_section(shipped)
