"""What the DeepLens runs must be Python 2.7 and 3.7 code (its Lambda runtimes): checked by vermin, since neither
interpreter installs here."""

import subprocess
import sys
from pathlib import Path

from conftest import REPO

VERMIN = [str(Path(sys.executable).parent / "vermin"), "-t=2.7-", "-t=3.7-", "--violations", "--no-tips"]
DEVICE_FILES = sorted((REPO / "workflow" / "device" / "deeplens").glob("*.py"))


def vermin(*paths):
    return subprocess.run(VERMIN + [str(p) for p in paths], capture_output=True, text=True)


def test_the_deeplens_lambda_and_display_run_on_python_2_7_and_3_7():
    assert [p.name for p in DEVICE_FILES] == ["lambda_function.py", "local_display.py"]
    result = vermin(*DEVICE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_check_refuses_code_newer_than_the_device(tmp_path):
    newer = tmp_path / "newer.py"
    for code in ('print(f"{1}")', "class A:\n    def f(self):\n        return super().f()\n", "x = (y := 1)"):
        newer.write_text(code + "\n")
        assert vermin(newer).returncode != 0, code
