"""Per-stage virtual environments built from the exact pip locks in envs/, without conda.

Each environment lives in <envs root>/<name>-<first 12 hex of the lock's sha256>: a changed lock gives a
new folder, an unchanged one is reused. Building takes a file lock, so parallel jobs (or parallel
Snakemake runs) that need the same environment wait for one build instead of racing.

    python -m workflow.orchestrator.envs exec mxnet -- python -m workflow.check ...   # build if needed, then run
    python -m workflow.orchestrator.envs exec --gpus 0 mxnet-cuda -- python ...  # check the GPU first (gpus.py)
    python -m workflow.orchestrator.envs exec --active mxnet-cuda -- python ...  # in the environment Python runs in
    python -m workflow.orchestrator.envs build mxnet optimizer                        # build only
    python -m workflow.orchestrator.envs path mxnet                                   # print the folder

Standard library only: it runs with whatever Python runs Snakemake.
"""

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCKS = REPO / "envs"
ENV_NAMES = ("mxnet", "mxnet-cuda", "optimizer", "deeplens-mxnet", "labelimg")
COMPLETE_MARK = ".complete"


def envs_root():
    return Path(os.environ.get("DEEPLENS_SSD_ENVS", REPO / ".venvs")).resolve()


def lock_file(name):
    if name not in ENV_NAMES:
        sys.exit(f"ERROR: unknown environment '{name}'; known: {', '.join(ENV_NAMES)}")
    return LOCKS / f"{name}.txt"


def env_dir(name):
    digest = hashlib.sha256(lock_file(name).read_bytes()).hexdigest()[:12]
    return envs_root() / f"{name}-{digest}"


def ensure(name):
    """Return the environment's folder, building it first if it is missing or half-built."""
    target = env_dir(name)
    if (target / COMPLETE_MARK).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / COMPLETE_MARK).exists():
            _build(name, target)
    return target


def _build(name, target):
    started = time.monotonic()
    print(f"Building environment '{name}' in {target} from {lock_file(name)} ...", file=sys.stderr, flush=True)
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
    pip = [str(target / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "--quiet"]
    result = subprocess.run(pip + ["-r", str(lock_file(name))])
    if result.returncode != 0:
        sys.exit(f"ERROR: pip could not install {lock_file(name)} into {target} (exit {result.returncode})")
    if name == "deeplens-mxnet":
        _add_libgfortran3(target)
    (target / COMPLETE_MARK).write_text(lock_file(name).read_text())
    print(f"Environment '{name}' ready in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)


def _add_libgfortran3(target):
    """mxnet 0.12's libmxnet.so needs libgfortran.so.3, which Debian 12 lacks; the mxnet 1.9.1 wheel ships it."""
    source = next((ensure("mxnet") / "lib").glob("python3*/site-packages/mxnet/libgfortran.so.3"))
    shutil.copy2(source, target / "lib" / "libgfortran.so.3")


def run_environment(name, active=False):
    """The variables a command needs to run inside the environment: the venv built from its lock, or with
    active, the environment this Python runs in (a conda environment Snakemake activated)."""
    env = dict(os.environ)
    if active:
        target = Path(sys.prefix)
    else:
        target = ensure(name)
        env["PATH"] = f"{target / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(target)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONNOUSERSITE"] = "1"
    libraries = library_dirs(name, target)
    if libraries:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, libraries + [env.get("LD_LIBRARY_PATH")]))
    return env


def library_dirs(name, target):
    """Folders of shared libraries the environment's packages link but do not find themselves."""
    if name == "deeplens-mxnet":
        return [str(target / "lib")]
    if name == "mxnet-cuda":  # the CUDA 11 libraries libmxnet.so links, from NVIDIA's nvidia-*-cu11 wheels
        return sorted(str(path) for path in target.glob("lib/python3*/site-packages/nvidia/*/lib"))
    return []


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.orchestrator.envs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("build").add_argument("names", nargs="+")
    sub.add_parser("path").add_argument("name")
    run = sub.add_parser("exec")
    run.add_argument("--gpus", help="GPU ids: check that they can train before building the environment")
    run.add_argument("--active", action="store_true", help="use the environment this Python runs in")
    run.add_argument("name")
    run.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.action == "build":
        for name in args.names:
            print(ensure(name))
    elif args.action == "path":
        print(env_dir(args.name))
    else:
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            parser.error("exec needs a command after --")
        if args.gpus:
            from workflow.orchestrator import gpus  # here: the file also runs as a script, without the repo on sys.path

            gpus.main(["--gpus", args.gpus])
        env = run_environment(args.name, args.active)
        os.execvpe(command[0], command, env)


if __name__ == "__main__":
    main()
