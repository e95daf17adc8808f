"""What the Snakefile needs to plan a run: config checks beyond the schema, input file lists, training stops.

Standard library only: it runs inside Snakemake's own interpreter.
"""
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


DEMO_ONLY_KEYS = ("demo_threshold", "demo_images")


class ConfigError(Exception):
    pass


def check_config(config):
    """Rules the JSON schema cannot say; raises ConfigError naming the key."""
    epochs = config["epochs"]
    if any(b <= a for a, b in zip(epochs, epochs[1:])):
        raise ConfigError(f"epochs: the stops must increase strictly, got {epochs}")
    deploy_epoch = config["deploy_epoch"]
    if isinstance(deploy_epoch, int) and deploy_epoch > epochs[-1]:
        raise ConfigError(f"deploy_epoch: {deploy_epoch} is after the last training stop {epochs[-1]}")
    for key in ("dataset", "val_dataset"):
        path = config.get(key)
        if path and str(path).lower().endswith(".lst"):
            if not Path(path).is_file():
                raise ConfigError(f"{key}: '{path}' is not a file (a dataset ending in .lst is an im2rec detection list)")
        elif path and not (Path(path) / "Annotations").is_dir():
            raise ConfigError(f"{key}: '{path}' is not a VOC folder (no Annotations/ inside) nor a .lst list")


def model_config(config):
    """The config without the keys that only change the demo: what the artifacts' manifest records."""
    return {key: value for key, value in config.items() if key not in DEMO_ONLY_KEYS}


def dataset_files(folder):
    """Every file the check reads from a VOC folder, so adding or editing one reruns the check."""
    if not folder:
        return []
    folder = Path(folder)
    files = sorted((folder / "Annotations").glob("*.xml"))
    images = folder / "JPEGImages"
    if images.is_dir():
        files += sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    files += sorted((folder / "ImageSets" / "Main").glob("*.txt"))
    return [str(p) for p in files]


def previous_stop(epochs, end):
    """The end epoch of the stop before `end`, or 0 for the first stop."""
    index = epochs.index(int(end))
    return epochs[index - 1] if index else 0


def env_command(name, use_conda, gpus=()):
    """Shell prefix that runs a command inside the named stage environment. With gpus it first checks that the
    machine can train on them (workflow.gpus), before the environment is built; with conda it also puts the
    mxnet-cuda environment's CUDA libraries on the library path."""
    pythonpath = f"PYTHONPATH={shlex.quote(str(REPO))}"
    check = f" --gpus {','.join(map(str, gpus))}" if gpus else ""
    if use_conda:
        return f"{pythonpath} python -m workflow.envs exec --active{check} {name} --" if gpus else pythonpath
    return f"{pythonpath} {shlex.quote(sys.executable)} -m workflow.envs exec{check} {name} --"
