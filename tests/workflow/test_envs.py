import threading

import yaml

from conftest import REPO
from workflow.orchestrator import envs


def lock_pins(name):
    return [
        line for line in (REPO / "envs" / f"{name}.txt").read_text().splitlines() if line and not line.startswith("#")
    ]


def test_conda_twins_pin_exactly_the_lock():
    for name in envs.ENV_NAMES:
        conda = yaml.safe_load((REPO / "envs" / f"{name}.yaml").read_text())
        pip = next(item["pip"] for item in conda["dependencies"] if isinstance(item, dict))
        assert pip == lock_pins(name), name


def test_locks_pin_every_package_exactly():
    for name in envs.ENV_NAMES:
        assert all("==" in pin for pin in lock_pins(name)), name
    assert "mxnet==1.9.1" in lock_pins("mxnet") and "mxnet==0.12.0" in lock_pins("deeplens-mxnet")


def test_cuda_lock_is_the_mxnet_lock_with_the_cuda_build_and_nvidia_cuda_11_libraries():
    cuda = lock_pins("mxnet-cuda")
    nvidia = [pin for pin in cuda if pin.startswith("nvidia-")]
    assert [pin for pin in cuda if pin not in nvidia] == [
        pin.replace("mxnet==1.9.1", "mxnet-cu112==1.9.1") for pin in lock_pins("mxnet")
    ]
    assert all(pin.split("==")[0].endswith("-cu11") for pin in nvidia)
    assert any(pin.startswith("nvidia-cudnn-cu11==8.") for pin in nvidia)  # libmxnet.so links libcudnn.so.8


def test_env_folder_follows_the_lock_and_parallel_requests_build_once(tmp_path, monkeypatch):
    locks = tmp_path / "locks"
    locks.mkdir()
    (locks / "mxnet.txt").write_text("# empty lock: a bare venv\n")
    monkeypatch.setattr(envs, "LOCKS", locks)
    monkeypatch.setenv("DEEPLENS_SSD_ENVS", str(tmp_path / "venvs"))
    builds = []
    real_build = envs._build
    monkeypatch.setattr(envs, "_build", lambda name, target: (builds.append(target), real_build(name, target)))
    threads = [threading.Thread(target=envs.ensure, args=("mxnet",)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first = envs.env_dir("mxnet")
    assert builds == [first] and (first / "bin" / "python").exists()
    (locks / "mxnet.txt").write_text("# changed lock\n")
    assert envs.env_dir("mxnet") != first
