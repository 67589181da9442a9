"""A project's virtualenv built with ``uv`` from its requirements file, cached and shared by every task that needs it.

Like Airflow's ``PythonVirtualenvOperator`` venv cache, but built for a Kedro project: the project's requirements,
plus Kedro, kedro-datasets and MLflow pinned to the worker's versions when the requirements do not name them, plus
this package's core installed with ``--no-deps`` (no Airflow: :mod:`.core_package`).

The cache key is the sha256 of everything that decides the result: the requirements (and the files they include
with ``-r``/``-c``), the pins, the extra ``uv`` arguments, the base interpreter and the core's fingerprint. A venv is
built into a temporary directory and renamed into place once complete (``uv venv --relocatable`` makes that safe),
so a venv that exists is always whole; a lock file (``fcntl.flock``) makes a second task that wants the same venv
wait for the first build and reuse it instead of building its own.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import airflow_kedro_mlflow
from airflow_kedro_mlflow.exceptions import ProjectEnvironmentError
from airflow_kedro_mlflow.execution import core_package

logger = logging.getLogger(__name__)

#: What the project's environment needs besides its own requirements; pinned to the worker's versions when the
#: requirements file does not name them (so the worker and the project run the versions tested together).
CORE_DEPENDENCIES = ("kedro", "kedro-datasets", "mlflow")
#: Written into a finished venv: what it was built from (and a venv without it is not one of ours).
MARKER = "airflow-kedro-mlflow-venv.json"


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/airflow-kedro-mlflow`` (``~/.cache/airflow-kedro-mlflow``): venvs and core copies."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "airflow-kedro-mlflow"


def venv_python(venv: Path) -> Path:
    """The interpreter of a virtualenv."""
    return venv / "bin" / "python"


def ensure_venv(
    requirements: Path,
    *,
    cache_root: Path,
    base_python: str | None = None,
    uv: str = "uv",
    uv_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Path:
    """Return the interpreter of the cached venv for ``requirements``, building it first when missing.

    :param requirements: the project's requirements file (pip format).
    :param cache_root: cache directory (venvs under ``venvs/``); several workers may share it.
    :param base_python: interpreter or version for ``uv venv --python``; the worker's own interpreter when None.
    :param uv: the ``uv`` executable.
    :param uv_args: extra ``uv pip install`` arguments (``--offline``, ``--index-url ...``); part of the key.
    :param env: environment of the ``uv`` processes (``UV_*`` variables apply); this process's when None.
    :raises ProjectEnvironmentError: no requirements file, no ``uv``, or requirements that do not resolve.
    """
    requirements = Path(requirements)
    if not requirements.is_file():
        raise ProjectEnvironmentError(
            f"requirements file {requirements} does not exist. Give VirtualenvExecution(requirements=...) a pip "
            "requirements file, absolute or relative to the Kedro project root."
        )
    uv_path = shutil.which(uv)
    if uv_path is None:
        raise ProjectEnvironmentError(
            f"`{uv}` is not on this worker's PATH, so the virtualenv for {requirements} cannot be built. Install uv on "
            "the worker (`pip install uv`), pass VirtualenvExecution(uv='/path/to/uv'), or give an existing "
            "interpreter with VirtualenvExecution(python=...)."
        )
    base = base_python or sys.executable
    pins = pinned_dependencies(requirements)
    key = cache_key(requirements, base=base, pins=pins, uv_args=uv_args)
    venvs = cache_root / "venvs"
    target = venvs / key[:32]
    if (target / MARKER).is_file():
        return venv_python(target)
    venvs.mkdir(parents=True, exist_ok=True)
    with _locked(venvs / f"{key[:32]}.lock", requirements):
        if (target / MARKER).is_file():  # built by the task that held the lock before us
            logger.info("Reusing the virtualenv %s another task just built for %s", target, requirements)
            return venv_python(target)
        # Left by a build that was killed (or a venv without its marker): nobody else builds this key now.
        for stale in [*venvs.glob(f".tmp-{key[:32]}-*"), *([target] if target.exists() else [])]:
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".tmp-{key[:32]}-", dir=venvs))
        try:
            _build(staging, requirements, uv=uv_path, base=base, pins=pins, uv_args=uv_args, env=env, key=key)
            os.rename(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return venv_python(target)


def pinned_dependencies(requirements: Path) -> list[str]:
    """``name==<worker's version>`` for each of :data:`CORE_DEPENDENCIES` the requirements file does not name."""
    named = set(_requirement_names(requirements))
    pins = []
    for name in CORE_DEPENDENCIES:
        if _canonical(name) in named:
            continue
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def cache_key(requirements: Path, *, base: str, pins: Sequence[str], uv_args: Sequence[str]) -> str:
    """sha256 of what decides the venv's content (see the module docstring)."""
    digest = hashlib.sha256()
    for part in (
        _requirements_text(requirements),
        "\n".join(pins),
        "\n".join(uv_args),
        _interpreter_identity(base),
        airflow_kedro_mlflow.__version__,
        core_package.fingerprint(),
    ):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


def _build(
    staging: Path,
    requirements: Path,
    *,
    uv: str,
    base: str,
    pins: Sequence[str],
    uv_args: Sequence[str],
    env: Mapping[str, str] | None,
    key: str,
) -> None:
    started = time.perf_counter()
    logger.info(
        "Building the virtualenv for %s with uv (cache: %s); later tasks reuse it", requirements, staging.parent
    )
    python = str(venv_python(staging))
    where = f"the virtualenv for {requirements}"
    _uv([uv, "venv", "--quiet", "--relocatable", "--python", base, str(staging)], where, env)
    # --compile-bytecode: compiled once here, not by every task (MLflow alone takes seconds to compile, and a
    # worker may run with PYTHONDONTWRITEBYTECODE or a read-only cache, where nothing would ever be written).
    install = [uv, "pip", "install", "--python", python, "--compile-bytecode"]
    _uv([*install, "-r", str(requirements), *pins, *uv_args], where, env,
        hint="Fix the requirements file (pins that exist for this Python and agree with each other), or check that "
        "the package index is reachable from this worker (uv_args=['--offline'] uses uv's cache only).")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="akm-core-wheel-") as wheel_dir:
        wheel = core_package.build_wheel(Path(wheel_dir))
        _uv([*install, "--no-deps", str(wheel)], where, env)
    seconds = time.perf_counter() - started
    (staging / MARKER).write_text(
        json.dumps(
            {
                "key": key,
                "requirements": str(requirements),
                "pins": list(pins),
                "uv_args": list(uv_args),
                "base_python": base,
                "airflow_kedro_mlflow": airflow_kedro_mlflow.__version__,
                "build_seconds": round(seconds, 1),
            },
            indent=2,
        )
    )
    logger.info("Built the virtualenv for %s in %.1f s", requirements, seconds)


def _uv(command: list[str], where: str, env: Mapping[str, str] | None, hint: str = "") -> None:
    completed = subprocess.run(
        command, env=dict(os.environ if env is None else env), capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        output = (completed.stderr or completed.stdout).strip()
        tail = "\n".join(output.splitlines()[-15:])
        raise ProjectEnvironmentError(
            f"Could not build {where}: `{' '.join(command[:3])} ...` exited {completed.returncode}:\n{tail}\n"
            f"{hint or 'See uv output above.'}"
        )


@contextmanager
def _locked(lock_file: Path, requirements: Path) -> Iterator[None]:
    with open(lock_file, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("Another task is building the virtualenv for %s: waiting for it", requirements)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _requirements_text(requirements: Path, seen: frozenset[Path] = frozenset()) -> str:
    """The file's text followed by the text of the files it includes (``-r``/``-c``), recursively."""
    path = requirements.resolve()
    if path in seen:
        return ""
    text = path.read_text(encoding="utf-8")
    parts = [text]
    for included in _included_files(path, text):
        if included.is_file():
            parts.append(_requirements_text(included, seen | {path}))
    return "\n".join(parts)


def _included_files(path: Path, text: str) -> list[Path]:
    files = []
    for line in text.splitlines():
        match = re.match(r"\s*(?:-r|-c|--requirement|--constraint)[\s=]+(\S+)", line)
        if match:
            files.append((path.parent / match.group(1)).resolve())
    return files


def _requirement_names(requirements: Path, seen: frozenset[Path] = frozenset()) -> list[str]:
    """Canonical names of the requirements in the file and in the ``-r`` files it includes (a ``-c`` constraint
    installs nothing, so it does not count)."""
    path = requirements.resolve()
    if path in seen or not path.is_file():
        return []
    names = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        included = re.match(r"(?:-r|--requirement)[\s=]+(\S+)", line)
        if included:
            names.extend(_requirement_names(path.parent / included.group(1), seen | {path}))
            continue
        match = None if line.startswith(("#", "-")) else re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if match:
            names.append(_canonical(match.group(1)))
    return names


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _interpreter_identity(base: str) -> str:
    """The base interpreter and, for a path, its full version: a Python upgrade in place gives a new venv."""
    if os.sep not in base:
        return base
    if base == sys.executable:
        return f"{base}\n{sys.version}"
    try:
        completed = subprocess.run(
            [base, "-c", "import sys; print(sys.version)"], capture_output=True, text=True, timeout=60, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ProjectEnvironmentError(
            f"base interpreter {base} for the project's virtualenv cannot run ({exc}). Pass "
            "VirtualenvExecution(python_version=...) an interpreter path or version uv can find."
        ) from exc
    return f"{base}\n{completed.stdout.strip()}"
