"""Which Kedro and MLflow versions the core supports, checked in the project's environment before training starts.

The same ranges as the package's ``install_requires`` (a unit test keeps them equal). In-process they hold by
construction (pip installed them); in a project environment that got the core without its dependencies they must be
checked: a Kedro 0.19 or an MLflow 2 there would fail later, deep inside a run, with an error that names neither.

No ``packaging`` here: the check also runs in an environment that may lack it (no MLflow yet), so the ranges are
compared as release tuples, which is all they need (a pre-release of an excluded upper bound is excluded too).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from importlib import metadata

from airflow_kedro_mlflow.exceptions import ProjectEnvironmentError

#: distribution -> (lowest supported release, first unsupported release), as in setup.cfg's install_requires.
SUPPORTED: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "kedro": ((1, 0), (2,)),
    "mlflow": ((3, 1), (3, 18)),
}

#: Run by the worker with the project's interpreter (``python -c``) before the CLI starts there, so a missing or
#: unsupported Kedro/MLflow is reported naming that environment. It needs nothing but the standard library; it prints
#: one JSON object. MLflow may be installed as ``mlflow`` or ``mlflow-skinny`` (same import name).
PROBE_SCRIPT = """
import json, sys
from importlib import metadata

def version(*names):
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return None

try:
    import airflow_kedro_mlflow
    core = airflow_kedro_mlflow.__version__
except Exception as exc:
    core = None
print(json.dumps({
    "executable": sys.executable,
    "python": ".".join(map(str, sys.version_info[:3])),
    "kedro": version("kedro"),
    "mlflow": version("mlflow", "mlflow-skinny"),
    "airflow_kedro_mlflow": core,
}))
"""


def requirement(name: str) -> str:
    """The supported range of ``name`` as a pip requirement, e.g. ``kedro>=1.0,<2``."""
    low, high = SUPPORTED[name]
    return f"{name}>={_dotted(low)},<{_dotted(high)}"


def installed_versions() -> dict[str, str | None]:
    """Kedro's and MLflow's versions in this interpreter's environment (None when missing), without importing them."""
    return {
        "kedro": _distribution_version("kedro"),
        "mlflow": _distribution_version("mlflow") or _distribution_version("mlflow-skinny"),
    }


def check_supported_versions(found: Mapping[str, str | None] | None = None, *, where: str | None = None) -> None:
    """Raise if Kedro or MLflow is missing or outside the supported range.

    :param found: ``{"kedro": version or None, "mlflow": ...}``; this interpreter's (:func:`installed_versions`) when
        None.
    :param where: the environment the versions belong to, named in the error; this interpreter when None.
    :raises ProjectEnvironmentError: naming the environment, every version found, the supported ranges and the fix.
    """
    found = installed_versions() if found is None else found
    where = where or f"the Python environment of {sys.executable}"
    problems = []
    for name in sorted(SUPPORTED):
        version = found.get(name)
        if version is None:
            problems.append(f"{name} is not installed")
        elif not _supported(name, version):
            problems.append(f"{name} {version} is installed")
    if not problems:
        return
    shown = ", ".join(f"{name} {found.get(name) or 'missing'}" for name in sorted(SUPPORTED))
    wanted = " ".join(f"'{requirement(name)}'" for name in sorted(SUPPORTED))
    raise ProjectEnvironmentError(
        f"{where} cannot run airflow-kedro-mlflow: {'; '.join(problems)} (found: {shown}; supported: {wanted}). "
        f"Install supported versions there (e.g. `uv pip install --python <that python> {wanted}`, or list them in "
        "the project's requirements file), or point the execution at another environment."
    )


def _supported(name: str, version: str) -> bool:
    low, high = (_trimmed(bound) for bound in SUPPORTED[name])
    release = _release(version)
    return release is not None and low <= release < high


def _release(version: str) -> tuple[int, ...] | None:
    """``3.17.2`` -> (3, 17, 2); ``1.0.0rc1`` -> (1, 0, 0); None when it starts with no number."""
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", version)
    if match is None:
        return None
    return _trimmed(tuple(int(part) for part in match.group(1).split(".")))


def _trimmed(release: tuple[int, ...]) -> tuple[int, ...]:
    """Drop trailing zeros, so that 1, 1.0 and 1.0.0 compare equal as tuples."""
    while len(release) > 1 and release[-1] == 0:
        release = release[:-1]
    return release


def _dotted(release: tuple[int, ...]) -> str:
    return ".".join(map(str, release))


def _distribution_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
