"""Every stage of the workflow, in the order a run reaches them, with the environment it runs in.

A stage's name is its module (workflow/<stage>.py), its rule, its log and benchmark (logs/<stage>.log,
benchmarks/<stage>.tsv) and its folder (results/<run>/<stage>/). The rules take their `conda:` file, their code
hash and their command's interpreter from this table; the report's time table and the tests' list of jobs are
derived from it too.
"""

ENVIRONMENTS = {
    "check": "mxnet",
    "split": "mxnet",
    "dataset_stats": "mxnet",
    "pack": "mxnet",
    "pretrained": "mxnet",
    "train": "mxnet",  # mxnet-cuda when the config names gpus
    "deploy": "mxnet",
    "export_mxnet012": "mxnet",
    "verify_mxnet012": "mxnet012",
    "evaluate": "mxnet",
    "demo": "mxnet",
    "optimize": "optimizer",
    "quantize": "optimizer",
    "export_onnx": "mxnet",
    "export_litert": "litert",
    "verify_ir": "optimizer",
    "export_web": "mxnet",
    "deeplens_model": "mxnet",
    "deeplens_package": "mxnet012",
    "deeplens_rehearsal": "optimizer",
    "artifacts": "mxnet",
    "report": "mxnet",
    "prelabel": "optimizer",
}

# Stages with a job per value of a wildcard: the rule is named <stage>_<wildcard>, its logs and benchmarks
# <stage>_<value>, and a target rule named after the stage runs all of them.
PER_WILDCARD = {"pack": "split", "train": "segment"}


def environment(stage, gpus=()):
    """The environment a stage runs in; training takes MXNet's CUDA build when the config names GPUs."""
    if stage not in ENVIRONMENTS:
        raise KeyError(f"stage {stage!r} is not in the stage table: add it to ENVIRONMENTS in {__file__}")
    return "mxnet-cuda" if stage == "train" and gpus else ENVIRONMENTS[stage]


def run_stages(config):
    """The stages `deeplens_artifacts` runs with this config, in the table's order (prelabel runs on request)."""
    wanted = {
        "pretrained": bool(config["pretrained"]),
        "quantize": config["int8_ir"],
        "export_litert": config["litert"],
        "prelabel": False,
    }
    return [stage for stage in ENVIRONMENTS if wanted.get(stage, True)]


def rule_name(stage):
    """The rule that runs a stage's jobs."""
    return f"{stage}_{PER_WILDCARD[stage]}" if stage in PER_WILDCARD else stage


def job_names(stage, values):
    """A stage's log and benchmark names: the stage, or one per wildcard value (pack_train, train_epoch_24)."""
    if stage not in PER_WILDCARD:
        return [stage]
    prefix = "train_epoch" if stage == "train" else stage
    return [f"{prefix}_{value}" for value in values]
