import io
import os
import pickle
import pickletools

import numpy as np
import pytest

from workflow import pretrained
from workflow.lib import efficientnet
from workflow.lib.cli import UserError
from workflow.lib.torch_weights import load_state_dict


@pytest.fixture(scope="module")
def package_weights():
    return pretrained.imagenet_weights()


def test_reads_the_packages_weights_without_torch(package_weights):
    state = load_state_dict(package_weights)
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3) and state["_conv_stem.weight"].dtype == np.float32
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    # a misread storage (wrong offset or byte order) gives garbage: negative variances, infinities, NaN
    assert all(np.isfinite(array).all() for array in state.values())
    assert all((state[name] >= 0).all() for name in state if name.endswith("running_var"))


class RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_runs_code_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "ran"
    RunsCode.marker = marker
    crafted = tmp_path / "weights.pth"
    crafted.write_bytes(pickle.dumps(RunsCode(), protocol=2))
    with pytest.raises(UserError, match=r"weights.pth: refused: the file asks for (posix|os)\.system"):
        load_state_dict(crafted)
    assert not marker.exists()


def test_truncated_and_foreign_files_are_refused(tmp_path, package_weights):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(package_weights.read_bytes()[:1_000_000])
    with pytest.raises(UserError, match="truncated.pth: storage .* truncated"):
        load_state_dict(truncated)
    stream = io.BytesIO(package_weights.read_bytes())
    for _ in range(5):  # magic number, protocol, system info, state dict, storage keys; then each storage's count
        list(pickletools.genops(stream))  # parses a pickle without running it
    cut_in_count = tmp_path / "cut_in_count.pth"
    cut_in_count.write_bytes(stream.getvalue()[: stream.tell() + 3])
    with pytest.raises(UserError, match="cut_in_count.pth: storage .* truncated"):
        load_state_dict(cut_in_count)
    other = tmp_path / "list.pth"
    other.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(UserError, match="list.pth: not a PyTorch weights file"):
        load_state_dict(other)


def test_a_state_dict_of_another_network_is_refused(tmp_path):
    with pytest.raises(UserError, match="x.pth: unexpected array features.0.weight"):
        efficientnet.convert({"features.0.weight": np.zeros((32, 3, 3, 3), np.float32)}, (0, 0, 0), "x.pth")
    with pytest.raises(UserError, match="x.pth: not the EfficientNet-Lite0 weights: missing"):
        efficientnet.convert({"_conv_stem.weight": np.zeros((32, 3, 3, 3), np.float32)}, (0, 0, 0), "x.pth")
