"""Ship this very ``airflow_kedro_mlflow`` package, without Airflow, into a project's environment.

The project's environment must not need Airflow (whose constraints rarely fit a project's pins), and the CLI that
runs there must speak the same contract as the worker that calls it. The core imports no Airflow, so the package's
own files are all it takes, installed without dependencies (Kedro and MLflow come from the project's environment and
are checked by :mod:`.versions`):

- :func:`build_wheel` makes a wheel of the running package (the files the worker imports, its entry points:
  the CLI script and MLflow's auth plugin), for ``uv pip install --no-deps`` into a virtualenv built here;
- :func:`overlay` copies the package into the cache, for ``PYTHONPATH`` of an interpreter the user gives (that
  environment is theirs: nothing is installed into it).

Both are keyed by :func:`fingerprint`, a hash of the package's files, so an upgraded (or edited) package never
runs with a stale copy.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import airflow_kedro_mlflow

#: The entry points the project's environment needs (the provider's ``apache_airflow_provider`` one is for Airflow
#: only). A unit test keeps them equal to setup.cfg's.
ENTRY_POINTS = {
    "console_scripts": {"airflow-kedro-mlflow": "airflow_kedro_mlflow.cli:main"},
    "mlflow.request_auth_provider": {
        "airflow-kedro-mlflow": "airflow_kedro_mlflow.tracking.auth:OriginScopedAuthProvider"
    },
}
DISTRIBUTION = "airflow_kedro_mlflow"


def package_dir() -> Path:
    """The directory of the ``airflow_kedro_mlflow`` package this process imported."""
    return Path(airflow_kedro_mlflow.__file__).resolve().parent


def package_files() -> list[Path]:
    """The package's files (sources and data), relative to its parent directory, sorted; no bytecode."""
    root = package_dir()
    files = []
    for path in root.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in {".pyc", ".pyo"}:
            files.append(path.relative_to(root.parent))
    return sorted(files)


@functools.cache
def fingerprint() -> str:
    """sha256 of the package's version and files (relative path + content): what a cached copy is keyed by."""
    root = package_dir().parent
    digest = hashlib.sha256(airflow_kedro_mlflow.__version__.encode())
    for relative in package_files():
        digest.update(relative.as_posix().encode() + b"\0")
        digest.update(hashlib.sha256((root / relative).read_bytes()).digest())
    return digest.hexdigest()


def overlay(cache_root: Path) -> Path:
    """Return a directory holding a copy of the package only, to put on ``PYTHONPATH``; made once per fingerprint.

    The copy is written into a temporary sibling and renamed into place, so a reader never sees half a package and
    two tasks making it at once both end up with one complete copy.
    """
    target = cache_root / "core" / f"{airflow_kedro_mlflow.__version__}-{fingerprint()[:16]}"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    root = package_dir().parent
    for relative in package_files():
        destination = staging / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / relative, destination)
    try:
        os.rename(staging, target)
    except OSError:  # another task renamed its copy first: same content
        shutil.rmtree(staging, ignore_errors=True)
    return target


def build_wheel(directory: Path) -> Path:
    """Write a wheel of the running package (no dependencies declared) into ``directory``; return its path."""
    version = airflow_kedro_mlflow.__version__
    dist_info = f"{DISTRIBUTION}-{version}.dist-info"
    wheel = directory / f"{DISTRIBUTION}-{version}-py3-none-any.whl"
    root = package_dir().parent
    metadata_files = {
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: airflow-kedro-mlflow\nVersion: {version}\n"
            "Summary: airflow-kedro-mlflow's core (no Airflow), shipped by a worker into a project environment\n"
        ),
        f"{dist_info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: airflow-kedro-mlflow\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"{dist_info}/entry_points.txt": "".join(
            f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in entries.items()) + "\n"
            for group, entries in ENTRY_POINTS.items()
        ),
    }
    records = []
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for relative in package_files():
            data = (root / relative).read_bytes()
            archive.writestr(relative.as_posix(), data)
            records.append(_record(relative.as_posix(), data))
        for name, text in metadata_files.items():
            archive.writestr(name, text)
            records.append(_record(name, text.encode()))
        records.append(f"{dist_info}/RECORD,,")
        archive.writestr(f"{dist_info}/RECORD", "\n".join(records) + "\n")
    return wheel


def _record(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"
