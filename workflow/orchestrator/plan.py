"""What the Snakefile needs to plan a run: config checks beyond the schema, input file lists, training segments.

Standard library only (and workflow.lib.forms, standard library too): it runs inside Snakemake's own interpreter.
"""

import ast
import functools
from pathlib import Path

from workflow.lib import forms
from workflow.lib.labelled import IMAGE_SUFFIXES

REPO = Path(__file__).resolve().parents[2]


DEMO_ONLY_KEYS = ("demo_threshold", "demo_images")


class ConfigError(Exception):
    pass


def check_config(config):
    """Rules the JSON schema cannot say; raises ConfigError naming the key."""
    epochs = config["epochs"]
    if any(b <= a for a, b in zip(epochs, epochs[1:])):
        raise ConfigError(f"epochs: the segment ends must increase strictly, got {epochs}")
    deploy_epoch = config["deploy_epoch"]
    if isinstance(deploy_epoch, int) and deploy_epoch > epochs[-1]:
        raise ConfigError(f"deploy_epoch: {deploy_epoch} is after the end of the last training segment {epochs[-1]}")
    if config["pretrained"] == "imagenet" and config["network"] != "efficientnet_lite0":
        raise ConfigError(
            f"pretrained: imagenet is the ImageNet backbone of efficientnet_lite0; network {config['network']} "
            "has none (null trains it from scratch)"
        )
    for key in ("dataset", "val_dataset"):
        if config.get(key):
            check_dataset_path(key, config[key], config["dataset_format"] if key == "dataset" else forms.AUTO)


def check_dataset_path(key, path, form):
    """The dataset is an export of a form this workflow reads (or the one dataset_format names)."""
    if not Path(path).exists():
        raise ConfigError(f"{key}: '{path}' does not exist")
    if form == "lst" or (form == forms.AUTO and str(path).lower().endswith(".lst")):
        if not Path(path).is_file():
            raise ConfigError(f"{key}: '{path}' is not a file (a dataset ending in .lst is an im2rec detection list)")
        return
    try:
        found = forms.recognise(path, form)
    except ValueError as error:
        raise ConfigError(f"{key}: {error}") from None
    if found == "voc" and not (Path(path) / "Annotations").is_dir():
        raise ConfigError(f"{key}: '{path}' is not a VOC folder (no Annotations/ inside)")


def model_config(config):
    """The config without the keys that only change the demo: what the artifacts' manifest records."""
    return {key: value for key, value in config.items() if key not in DEMO_ONLY_KEYS}


def image_files(folder):
    """The images directly in a folder (none if it does not exist), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [str(p) for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]


def previous_segment_end(epochs, end):
    """The end epoch of the training segment before the one ending at `end`, or 0 for the first."""
    index = epochs.index(int(end))
    return epochs[index - 1] if index else 0


def env_command(name, use_conda, gpus=()):
    """Shell prefix that runs a command inside the named stage environment, through $DEEPLENS_SSD_PYTHON and
    $DEEPLENS_SSD_REPO (set by the Snakefile) so that no path enters the rule's command. With gpus it first checks
    that the machine can train on them (orchestrator/gpus.py), before the environment is built; with conda it also puts
    the mxnet-cuda environment's CUDA libraries on the library path."""
    check = f" --gpus {','.join(map(str, gpus))}" if gpus else ""
    pythonpath = 'PYTHONPATH="$DEEPLENS_SSD_REPO"'
    if use_conda:
        return (
            f"{pythonpath} python -m workflow.orchestrator.envs exec --active{check} {name} --" if gpus else pythonpath
        )
    return f'{pythonpath} "$DEEPLENS_SSD_PYTHON" -m workflow.orchestrator.envs exec{check} {name} --'


def module_files(module, root=REPO):
    """The files of a `workflow...` module and of every workflow module it imports, directly or through others,
    at any depth in the code (a function-level import counts): what the stage that runs it depends on."""
    seen, pending = {}, [module]
    while pending:
        name = pending.pop()
        path = _module_path(name, root)
        if path is None or name in seen:
            continue
        seen[name] = path
        parts = name.split(".")
        pending += [".".join(parts[:end]) for end in range(1, len(parts))]  # its packages' __init__.py run first
        pending += _workflow_imports(path, root)
    return sorted(seen.values())


def _module_path(name, root):
    parts = name.split(".")
    if parts[0] != "workflow":
        return None
    for path in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")):
        if path.is_file():
            return path
    return None


@functools.cache  # every rule's code param walks the shared modules again: each file is parsed once
def _workflow_imports(path, root):
    """Names of the workflow modules a file imports: `import workflow.x`, `from workflow import x`, `from workflow.x
    import y` (x itself, and workflow.x.y where that is a module), and relative imports (`from .x import y`)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom):  # relative: from .x import y, from . import x
            package = path.relative_to(root).with_suffix("").parts[: -node.level]
            base = ".".join(package + ((node.module,) if node.module else ()))
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return tuple(name for name in names if name.split(".")[0] == "workflow" and _module_path(name, root))
