"""Code shipped to the device: each file stands alone (openvino, numpy, OpenCV and the standard library)."""
