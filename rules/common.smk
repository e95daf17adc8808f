# Config validation, output paths and the stage environments shared by every rule file.
import json
import os
import sys

from snakemake.utils import validate
from snakemake_interface_executor_plugins.settings import DeploymentMethod

sys.path.insert(0, workflow.basedir)
from workflow.plan import ConfigError, check_config, dataset_files, env_command, model_config, previous_stop


validate(config, "../workflow/schemas/config.schema.yaml")
try:
    check_config(config)
except ConfigError as error:
    raise WorkflowError(f"config: {error}")

USE_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
MXNET = env_command("mxnet", USE_CONDA)
OPTIMIZER = env_command("optimizer", USE_CONDA)
DEEPLENS_MXNET = env_command("deeplens-mxnet", USE_CONDA)

LOCK = {name: f"{workflow.basedir}/envs/{name}.txt" for name in ("mxnet", "mxnet-cuda", "optimizer", "deeplens-mxnet")}
TRAIN_ENV = "mxnet-cuda" if config["gpus"] else "mxnet"
MXNET_TRAIN = env_command(TRAIN_ENV, USE_CONDA)
R = f"results/{config['run']}"
LOGS = f"{R}/logs"
EPOCHS = config["epochs"]
CLASSES_JSON = json.dumps(config["classes"])

ANNOTATIONS = f"{R}/check/annotations.json"
CHECK_TABLE = f"{R}/check/check.csv"
DATASET_STATS = f"{R}/dataset/stats.csv"
SPLIT_LISTS = [f"{R}/split/train.txt", f"{R}/split/val.txt"]
PACKED = expand(f"{R}/pack/{{split}}.{{ext}}", split=["train", "val"], ext=["rec", "idx", "lst"])
DEPLOY_INFO = f"{R}/deploy/deploy.json"
LEGACY = f"{R}/deploy/mxnet012"
LEGACY_CHECK = f"{LEGACY}/verify.json"
METRICS = f"{R}/evaluate/metrics.json"
DEMO_INDEX = f"{R}/demo/demo.json"
IR_XML = f"{R}/ir/model.xml"
IR_CHECK = f"{R}/ir/verify.json"
MANIFEST = f"{R}/deeplens_artifacts/manifest.json"
REPORT = f"{R}/report.html"
PRETRAINED = f"{R}/pretrained/pretrained.params"
PRETRAINED_CACHE = os.environ.get("DEEPLENS_SSD_CACHE", os.path.expanduser("~/.cache/deeplens-ssd"))


def stop_dir(end):
    return f"{R}/train/epoch_{end}"


def stop_log(end):
    return f"{stop_dir(end)}/log.csv"


def stage_code(*modules):
    """A stage's modules, as inputs so that editing one reruns the stage and what follows."""
    return [f"{workflow.basedir}/workflow/{module}.py" for module in modules]


def yes_no(flag):
    return "yes" if flag else "no"
