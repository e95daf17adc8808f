# Config validation, output paths and the stage environments shared by every rule file.
import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate
from snakemake_interface_executor_plugins.settings import DeploymentMethod

sys.path.insert(0, workflow.basedir)
from workflow.lib import forms
from workflow.lib.hashing import files_sha256
from workflow.orchestrator.envs import lock_files
from workflow.orchestrator.plan import (
    ConfigError,
    check_config,
    env_command,
    image_files,
    model_config,
    module_files,
    previous_segment_end,
)
from workflow.orchestrator.stages import ENVIRONMENTS, environment, job_names, run_stages

validate(config, "../workflow/schemas/config.schema.yaml")
try:
    check_config(config)
except ConfigError as error:
    raise WorkflowError(f"config: {error}")

# Nothing machine-specific goes into what Snakemake tracks (commands, params, input paths): the interpreter and the
# repository reach the stage commands through the environment, and code and environment locks are tracked by
# content. So a finished run has nothing to do after it moves (another clone, another mount point on a cluster,
# a renamed checkout), and editing a module reruns exactly the stages that import it.
os.environ["DEEPLENS_SSD_PYTHON"] = sys.executable
os.environ["DEEPLENS_SSD_REPO"] = workflow.basedir


envvars:
    "DEEPLENS_SSD_PYTHON",
    "DEEPLENS_SSD_REPO",


USE_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
TRAIN_ENV = environment("train", config["gpus"])
ENV = {name: env_command(name, USE_CONDA) for name in {*ENVIRONMENTS.values(), "mxnet-cuda"}}
ENV[TRAIN_ENV] = env_command(TRAIN_ENV, USE_CONDA, config["gpus"])
R = f"results/{config['run']}"
LOGS = f"{R}/logs"
EPOCHS = config["epochs"]
CLASSES_JSON = json.dumps(config["classes"])

ANNOTATIONS = f"{R}/check/annotations.json"
CHECK_TABLE = f"{R}/check/check.csv"
CHECK_SPLITS = f"{R}/check/splits.json"
PRELABEL_FORMAT = forms.prelabel_format(config["prelabel_format"], config["dataset"], config["dataset_format"])
PRELABELS = f"{R}/prelabel/{forms.PRELABEL_OUTPUTS[PRELABEL_FORMAT]}"
DATASET_STATS = f"{R}/dataset_stats/stats.csv"
SPLIT_LISTS = [f"{R}/split/train.txt", f"{R}/split/val.txt"]
PACKED = expand(f"{R}/pack/{{split}}.{{ext}}", split=["train", "val"], ext=["rec", "idx", "lst"])
TRAIN_REC, VAL_REC, VAL_LST = f"{R}/pack/train.rec", f"{R}/pack/val.rec", f"{R}/pack/val.lst"
DEPLOY_INFO = f"{R}/deploy/deploy.json"
ONNX_MODEL, ONNX_CHECK = f"{R}/export_onnx/model.onnx", f"{R}/export_onnx/verify.json"
ONNX_NETWORK = f"{R}/export_onnx/network.onnx"
LITERT_DIR = f"{R}/export_litert"
LITERT_CHECK = f"{LITERT_DIR}/verify.json"
# export_litert's --int8: litert_int8 false, true or when-within-budget
LITERT_INT8_MODE = {False: "none", True: "required"}.get(config["litert_int8"], config["litert_int8"])
LITERT_KINDS = ["float32", "int8"] if LITERT_INT8_MODE != "none" else ["float32"]
LITERT_MODELS = [f"{LITERT_DIR}/model_{kind}.tflite" for kind in LITERT_KINDS] if config["litert"] else []
WEB_DIR = f"{R}/export_web"
WEB_PAGE = f"{WEB_DIR}/index.html"
# onnxruntime-web pinned for the page (URL, integrity and the files the wasm backend loads): one place, read here
WEB_RUNTIME = json.loads(Path(workflow.basedir, "envs", "onnxruntime-web.json").read_text())
MXNET012 = f"{R}/export_mxnet012"
MXNET012_CHECK = f"{R}/verify_mxnet012/verify.json"
METRICS = f"{R}/evaluate/metrics.json"
DEMO_INDEX = f"{R}/demo/demo.json"
IR_DIR = f"{R}/optimize"
IR_XML = f"{IR_DIR}/model.xml"
IR_CHECK = f"{R}/verify_ir/verify.json"
MANIFEST = f"{R}/artifacts/manifest.json"
REPORT = f"{R}/report/report.html"
PRELABEL_MANIFEST = f"{R}/prelabel/manifest.json"
PRETRAINED = f"{R}/pretrained/pretrained.params"


# The benchmark files of the stages the run runs before its report (each named as its log), shown by the report
WILDCARD_VALUES = {"pack": ["train", "val"], "train": EPOCHS}
STAGE_BENCHMARKS = [
    f"{R}/benchmarks/{name}.tsv"
    for stage in run_stages(config)
    if stage != "report"
    for name in job_names(stage, WILDCARD_VALUES.get(stage))
]


def named_inputs(wildcards, input):
    """A params function: the rule's named inputs as JSON (name -> path or list of paths), for a stage that reads
    many of them."""
    return json.dumps({name: value if isinstance(value, str) else list(value) for name, value in input.items()})


def segment_dir(end):
    return f"{R}/train/epoch_{end}"


def segment_log(end):
    return f"{segment_dir(end)}/log.csv"


def conda_file(name):
    """A stage's `conda:` file (relative to rules/), from the stages table (workflow/orchestrator/stages.py)."""
    return f"../envs/{environment(name, config['gpus'])}.yaml"


def stage_code(name, files=()):
    """A params value that changes when the code of a stage changes: the sha256 of workflow.<name>, of every
    workflow module it imports, of its environment's locks and of any other repository `files` it uses."""
    repo = Path(workflow.basedir)
    paths = module_files(f"workflow.{name}", repo) + lock_files(environment(name, config["gpus"]))
    return files_sha256(paths + [repo / f for f in files], repo)


def stage(name, arguments, variables=""):
    """A rule's shell command: `python -m workflow.<name> ARGUMENTS` in the stage's environment, with the rule's
    threads and any other environment `variables`, everything it prints going to the rule's first log and to the
    terminal."""
    prefix = f"OMP_NUM_THREADS={{threads}} {variables} " if variables else "OMP_NUM_THREADS={threads} "
    python = ENV[environment(name, config["gpus"])]
    return f"{prefix}{python} python -m workflow.{name} {arguments} 2>&1 | tee {{log[0]}} >&2"


def folder_of_output(name):
    """A params function giving the folder of the rule's named output (derived, so it holds on any file system)."""

    def folder(wildcards, output):
        return os.path.dirname(output[name])

    return folder


def folder_of_input(name):
    def folder(wildcards, input):
        return os.path.dirname(input[name])

    return folder


def configured(key):
    """A params function giving a config value; for paths that are also inputs, which --lint flags when literal."""

    def value(wildcards):
        return config[key]

    return value


def switch(name, on):
    """A boolean command-line flag: --NAME or --no-NAME."""
    return f"--{name}" if on else f"--no-{name}"


# --- data (rules/data.smk) ---

# Each split's checked records, in list order: a pack job reads only its own split's, so a change that leaves
# them as they were (same checksum) does not repack that split.
SPLIT_RECORDS = [f"{R}/split/train.json", f"{R}/split/val.json"]


def check_inputs(dataset):
    """Every file the check reads from a dataset in any form, so that adding or editing one reruns the check."""
    if not dataset:
        return []
    form = forms.recognise(dataset, config["dataset_format"])
    return forms.input_files(dataset, form, config["dataset_images"], config.get("lst_root"))


def option(flag, value):
    return f"{flag} {shlex.quote(value)}" if value else ""


# --- training segments (rules/train.smk) ---
def segment_out(wildcards):
    return segment_dir(wildcards.end)


def segment_begin(wildcards):
    return previous_segment_end(EPOCHS, wildcards.end)


def previous_segment_log(wildcards):
    begin = previous_segment_end(EPOCHS, wildcards.end)
    return [segment_log(begin)] if begin else []


def resume_option(wildcards):
    begin = previous_segment_end(EPOCHS, wildcards.end)
    return f"--resume {segment_dir(begin)}" if begin else ""


def first_segment_pretrained(wildcards):
    return [PRETRAINED] if config["pretrained"] and not previous_segment_end(EPOCHS, wildcards.end) else []


def pretrained_option(wildcards):
    return " ".join(f"--pretrained {path}" for path in first_segment_pretrained(wildcards))


# --- INT8 IR for CPU targets (rules/quantize.smk), when int8_ir is true ---
INT8_DIR = f"{R}/quantize"
INT8_XML = f"{INT8_DIR}/model_int8.xml"
INT8_IR = [INT8_XML, f"{INT8_DIR}/model_int8.bin", f"{INT8_DIR}/model_int8.contract.json"]
INT8_INPUTS = INT8_IR if config["int8_ir"] else []


def int8_verify_option(wildcards, input):
    """verify_ir's INT8 flags, when there is an INT8 IR."""
    if not config["int8_ir"]:
        return ""
    return f"--int8-ir {input.int8[0]} --int8-max-map-drop {config['int8_max_map_drop']}"


LITERT_INPUTS = [LITERT_CHECK] if config["litert"] else []


def litert_artifacts_option(wildcards, input):
    """The artifacts' LiteRT flag, when the run converts to LiteRT."""
    return f"--litert {input.litert[0]}" if config["litert"] else ""


def int8_artifacts_option(wildcards, input):
    """The artifacts' INT8 flag, when there is an INT8 IR."""
    return f"--int8-ir {input.int8[0]}" if config["int8_ir"] else ""


# --- pre-labelling (rules/prelabel.smk) ---
def unlabelled_images(wildcards):
    """Every image of the `unlabelled` folder, so that a new one reruns the pre-labelling (of it alone: the
    detections of the others are cached by model and image sha256)."""
    if not config["unlabelled"]:
        raise WorkflowError("prelabel: set unlabelled to a folder of images to pre-label")
    return image_files(config["unlabelled"])
