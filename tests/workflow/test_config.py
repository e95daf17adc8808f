import ast
import re

import jsonschema
import pytest
import yaml

from conftest import REPO, snakemake


@pytest.mark.parametrize(
    "change, message",
    [
        ({"colour": "red"}, "Additional properties are not allowed ('colour' was unexpected)"),
        ({"data_shape": "big"}, "'big' is not of type 'integer'"),
        ({"network": "vgg"}, "'vgg' is not one of ['tiny', 'lite', 'efficientnet_lite0', 'resnet50']"),
        ({"epochs": [20, 10]}, "epochs: the segment ends must increase strictly, got [20, 10]"),
        (
            {"network": "lite", "pretrained": "imagenet"},
            "pretrained: imagenet is the ImageNet backbone of efficientnet",
        ),
        ({"dataset": "/nonexistent"}, "dataset: '/nonexistent' does not exist"),
    ],
)
def test_bad_config_is_rejected_naming_the_key(tiny_run, change, message):
    workdir, config = tiny_run()
    (workdir / "config.yaml").write_text(yaml.safe_dump({**config, **change}))
    result = snakemake(workdir, "-n", "--cores", "1", check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_dry_run_plans_every_stage(tiny_run):
    workdir, _ = tiny_run()
    output = snakemake(workdir, "-n", "--cores", "1").stdout
    for rule in (
        "check",
        "split",
        "pack_split",
        "train_segment",
        "deploy",
        "evaluate",
        "demo",
        "optimize",
        "artifacts",
        "report",
    ):
        assert rule in output
    assert "results/tiny/train/epoch_30/log.csv" in output and "results/tiny/train/epoch_15/log.csv" in output


def test_training_keys_reach_every_training_segment(tiny_run):
    workdir, config = tiny_run()
    (workdir / "config.yaml").write_text(
        yaml.safe_dump({**config, "early_stop_patience": 5, "early_stop_smoothing": 3, "train_budget_minutes": 2.5})
    )
    output = snakemake(workdir, "-n", "-p", "--cores", "1", "train").stdout
    commands = [line for line in output.splitlines() if "python -m workflow.train " in line]
    assert len(commands) == len(config["epochs"])
    assert all("--patience 5 --patience-smoothing 3 " in line and "--budget-minutes 2.5 " in line for line in commands)


def test_config_yaml_and_the_schema_state_each_key_once():
    """config.yaml holds every key's one default and its explanation; the schema types exactly those keys, with
    neither a default nor a description of its own."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert set(schema["properties"]) == set(config)
    for key, rules in schema["properties"].items():
        assert "default" not in rules and "description" not in rules, key
    jsonschema.validate(config, schema)


def test_config_yaml_explains_every_key_and_no_other_page_repeats_them():
    """Each key of config.yaml has a comment right above it (momentum, weight_decay and nms_topk share the one
    above the key they follow); docs/configuration.md links there instead of listing keys of its own."""
    shares_the_comment_above = {"momentum", "weight_decay", "nms_topk"}
    lines = (REPO / "config.yaml").read_text().splitlines()
    keys = [(index, line.split(":")[0]) for index, line in enumerate(lines) if re.match(r"^\w+:", line)]
    for index, key in keys:
        above = lines[index - 1]
        explained = above.startswith("# ") or (key in shares_the_comment_above and re.match(r"^\w+:", above))
        assert explained, f"config.yaml: {key} has no comment above it"
    page = (REPO / "docs" / "configuration.md").read_text()
    assert "config.yaml" in page and "| key |" not in page


def test_a_flag_the_rules_pass_has_no_second_default_in_its_stage():
    """A setting's one default is in config.yaml: the stage must not default a flag its rule always passes."""
    commands = {}
    for rule_file in (REPO / "rules").glob("*.smk"):
        for module, arguments in re.findall(r'stage\(\s*"(\w+)",((?:\s*"[^"]*")+)', rule_file.read_text()):
            commands.setdefault(module, set()).update(re.findall(r"--([a-z][a-z-]*)", arguments))
    assert len(commands) >= 10
    for module, flags in commands.items():
        tree = ast.parse((REPO / "workflow" / f"{module}.py").read_text())
        for call in ast.walk(tree):
            if isinstance(call, ast.Call) and getattr(call.func, "attr", "") == "add_argument" and call.args:
                flag = getattr(call.args[0], "value", "")
                keywords = {keyword.arg for keyword in call.keywords}
                if flag.lstrip("-") in flags:
                    assert "default" not in keywords, f"workflow/{module}.py: {flag} has a default the rule overrides"
