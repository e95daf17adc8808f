"""Look at a run report as a person would: a headless Chromium screenshot, and a check that every section is filled.

    python -m workflow.screenshot results/sample/report/report.html /tmp/report.png

Needs Debian's chromium (`apt-get install chromium`); standard library otherwise. Exits 1 naming what is missing.
"""

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SECTIONS = (
    "Data",
    "Training",
    "Per-class metrics",
    "The proofs: every export against MXNet",
    "OpenVINO IR against MXNet",
    "Artifacts for the devices",
    "How it was made",
)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def missing_parts(page):
    """Sections without their heading, and a page without tables or embedded images."""
    headings = set(re.findall(r"<h2>([^<]+)</h2>", page))
    missing = [f"section '{name}'" for name in SECTIONS if not any(h.startswith(name) for h in headings)]
    if page.count("<table") < 4:
        missing.append(f"tables (found {page.count('<table')})")
    images = page.count('src="data:image/')
    if images < 4:
        missing.append(f"embedded images (found {images})")
    return missing


def screenshot(report, png, width=1200, height=4000):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        sys.exit("ERROR: chromium not found; install it with: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                browser,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                f"--screenshot={png}",
                Path(report).resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.screenshot", description=__doc__.split("\n\n")[0])
    parser.add_argument("report")
    parser.add_argument("png")
    args = parser.parse_args(argv)
    screenshot(args.report, args.png)
    missing = missing_parts(Path(args.report).read_text())
    if missing:
        sys.exit(f"ERROR: {args.report} lacks " + ", ".join(missing))
    print(f"{args.png}: screenshot of {args.report}; every section present")


if __name__ == "__main__":
    main()
