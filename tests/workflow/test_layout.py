"""The package layout says which code is which, and the README's map says the same as the tree."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, TARGETS

from workflow.orchestrator.stages import ENVIRONMENTS, environment, rule_name

WORKFLOW = REPO / "workflow"
SNAKEMAKE_BRINGS = {"yaml"}  # a dependency of Snakemake itself, so its interpreter has it


def imports(path, module_level_only=False):
    """The modules a file imports (dotted names), at the top of the file only or anywhere in it."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else ast.walk(tree)
    names = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def module_file(name):
    """The file of a workflow module or package named in an import (from workflow.lib import cli -> lib/cli.py)."""
    for candidate in (name, name.rpartition(".")[0]):
        path = REPO.joinpath(*candidate.split("."))
        for file in (path.with_suffix(".py"), path / "__init__.py"):
            if candidate.startswith("workflow") and file.is_file():
                return file
    raise AssertionError(f"no file for {name}")


def outside_the_standard_library(path, module_level_only, seen=None):
    """Third-party modules a file needs, following our own modules it imports."""
    seen = set() if seen is None else seen
    found = set()
    for name in imports(path, module_level_only):
        top = name.split(".")[0]
        if top == "workflow":
            file = module_file(name)
            if file not in seen:
                seen.add(file)
                found |= outside_the_standard_library(file, True, seen)
        elif top not in sys.stdlib_module_names and top not in SNAKEMAKE_BRINGS:
            found.add(top)
    return found


def test_the_device_code_stands_alone():
    for path in (WORKFLOW / "device").rglob("*.py"):
        ours = [name for name in imports(path) if name.split(".")[0] == "workflow"]
        assert ours == [], f"{path.name} is copied alone to the device but imports {ours}"


def test_the_orchestrator_code_runs_in_snakemakes_own_interpreter():
    for path in (WORKFLOW / "orchestrator").glob("*.py"):
        assert outside_the_standard_library(path, module_level_only=False) == set(), path.name


def test_what_the_snakefile_imports_needs_nothing_but_the_standard_library():
    imported = []
    for rule_file in [REPO / "Snakefile", *(REPO / "rules").glob("*.smk")]:
        found = re.findall(r"^from (workflow[\w.]*) import (?:\(([^)]*)\)|([\w, ]+))", rule_file.read_text(), re.M)
        for module, listed, inline in found:
            names = [name.strip() for name in (listed or inline).split(",") if name.strip()]
            imported += [module_file(f"{module}.{name}") for name in names]
    assert WORKFLOW / "lib" / "forms.py" in imported  # `from workflow.lib import forms` names the module forms.py
    for file in imported:
        assert outside_the_standard_library(file, module_level_only=True) == set(), file


# What stages share lives in lib/; the device code and the DeepLens stand-ins are shipped or run as they are.
STAGES_MAY_IMPORT = ("workflow.lib", "workflow.device", "workflow.deeplens_standins")


def test_stage_modules_import_only_what_stages_share_never_another_stage():
    for path in WORKFLOW.glob("*.py"):
        ours = {name for name in imports(path) if name.split(".")[0] == "workflow"}
        others = {name for name in ours if not name.startswith(STAGES_MAY_IMPORT)}
        assert others == set(), f"workflow/{path.name} imports {sorted(others)}"


def test_lib_never_imports_the_orchestrator_which_imports_lib():
    for path in (WORKFLOW / "lib").glob("*.py"):
        assert not [name for name in imports(path) if name.startswith("workflow.orchestrator")], path.name


def test_the_image_suffixes_of_the_workflow_and_the_device_agree():
    def suffixes(path):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "IMAGE_SUFFIXES":
                return ast.literal_eval(node.value)
        raise AssertionError(f"no IMAGE_SUFFIXES in {path}")

    assert suffixes(WORKFLOW / "lib" / "labelled.py") == suffixes(WORKFLOW / "device" / "infer.py")


def test_every_stage_a_rule_runs_is_a_module_of_workflow():
    stages = set()
    for rule_file in (REPO / "rules").glob("*.smk"):
        stages |= set(re.findall(r'stage\(\s*"(\w+)"', rule_file.read_text()))
    assert stages and all((WORKFLOW / f"{stage}.py").is_file() for stage in stages), stages


def test_the_readme_map_names_every_module_and_nothing_else():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Where things are", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(workflow/[\w/]+\.py)`", section))
    in_tree = {str(path.relative_to(REPO)) for path in WORKFLOW.rglob("*.py") if path.name != "__init__.py"}
    assert named == in_tree


# Each rule of the Snakefile as Snakemake reads it, with the repository's config.
RULES = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings
with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    workflow = api.workflow(snakefile=Path(sys.argv[1]), workdir=Path(sys.argv[2]), config_settings=ConfigSettings(),
                            resource_settings=ResourceSettings(), storage_settings=StorageSettings())._workflow
    print(json.dumps({rule.name: {"shell": rule.shellcmd, "log": [str(f) for f in rule.log],
                                  "benchmark": str(rule.benchmark or ""), "output": [str(f) for f in rule.output],
                                  "conda": str(rule.conda_env or "")} for rule in workflow.rules}))
"""


def snakefile_rules():
    command = [sys.executable, "-c", RULES, str(REPO / "Snakefile"), str(REPO)]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])


def test_one_name_per_stage_module_rule_log_benchmark_folder_and_environment():
    rules = snakefile_rules()
    stages = {}
    for name, rule in rules.items():
        modules = re.findall(r" -m workflow\.(\w+) ", rule["shell"] or "")
        if not modules:
            assert name in TARGETS and not rule["shell"], f"rule {name} runs no stage and is no target"
            continue
        (stage,) = modules
        stages[stage] = name
        assert name == rule_name(stage), f"rule {name} runs workflow/{stage}.py"
        assert rule["conda"] == f"../envs/{ENVIRONMENTS[stage]}.yaml", name
        results = "results/sample/"
        assert Path(rule["log"][0]).parent.as_posix() == results + "logs", name
        assert Path(rule["log"][0]).name.startswith(stage) and Path(rule["benchmark"]).name.startswith(stage), name
        assert rule["benchmark"] == f"{results}benchmarks/{Path(rule['log'][0]).stem}.tsv", name
        assert all(path.startswith(f"{results}{stage}/") for path in rule["output"]), (name, rule["output"])
    assert set(stages) == set(ENVIRONMENTS), "every stage of the table has its rule, and no rule runs another module"


def test_the_stages_page_lists_every_stage_in_run_order():
    table = re.findall(r"^\| `(\w+)` \|", (REPO / "docs" / "stages.md").read_text(), re.M)
    assert table == list(ENVIRONMENTS)


def test_a_rule_of_a_stage_missing_from_the_table_says_where_to_add_it():
    with pytest.raises(KeyError, match=r"stage 'record_counts' is not in the stage table: add it to ENVIRONMENTS in "):
        environment("record_counts")
