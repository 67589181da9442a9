"""What a logged Kedro model needs to load elsewhere: pinned requirements and the project's own code."""

from __future__ import annotations

import importlib.util
import json
import site
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from airflow_kedro_mlflow.exceptions import KedroProjectError

if sys.version_info >= (3, 11):
    import tomllib
else:  # kedro itself depends on tomli before Python 3.11
    import tomli as tomllib

#: Distributions every KedroPipelineModel needs at load time, pinned to the versions that logged it.
PINNED_DISTRIBUTIONS = ("kedro", "kedro-datasets", "mlflow")
#: This package is shipped with ``code_paths`` (see :func:`model_code_paths`): as a requirement it would pull in
#: Airflow wherever the model is served.
SHIPPED_AS_CODE = "airflow-kedro-mlflow"


def default_pip_requirements(project_package: str | None = None) -> list[str]:
    """Pin kedro, kedro-datasets and mlflow (as installed now) and, optionally, the Kedro project's distribution.

    The project's package is pinned only when it is installed from an index into site-packages
    (``name==version`` can then be installed elsewhere); an editable install, a locally built wheel or a source
    checkout on ``sys.path`` is shipped with ``code_paths`` instead (see :func:`project_code_paths`), since no
    index would have it.

    :param project_package: import name of the Kedro project's package (e.g. ``"kedro_classifier"``).
    """
    requirements = []
    for distribution in PINNED_DISTRIBUTIONS:
        pinned = _pin(distribution) or (_pin("mlflow-skinny") if distribution == "mlflow" else None)
        if pinned:
            requirements.append(pinned)
    if project_package and not _is_local_package(project_package):
        for distribution in sorted(set(metadata.packages_distributions().get(project_package, []))):
            if not _is_local_install(distribution) and (pinned := _pin(distribution)):
                requirements.append(pinned)
    elif project_package:
        # A source checkout is shipped as code, so its own dependencies (scikit-learn, pandas, ...) must be listed.
        requirements += [line for line in _declared_dependencies(project_package) if line not in requirements]
    return requirements


def model_code_paths(project_package: str) -> list[str]:
    """Return what to ship with ``code_paths``: the project's package and ``airflow_kedro_mlflow`` itself.

    The pickled :class:`KedroPipelineModel` is an ``airflow_kedro_mlflow`` class; shipping the package (pure
    Python, no Airflow import at load time) lets the model load where only kedro and mlflow are installed.
    """
    return project_code_paths(project_package) + project_code_paths("airflow_kedro_mlflow")


def project_code_paths(project_package: str) -> list[str]:
    """Return the directory of the Kedro project's package, to ship with ``log_model(code_paths=...)``.

    :raises KedroProjectError: when the package cannot be imported from here.
    """
    cause: ImportError | ValueError | None = None
    try:
        spec = importlib.util.find_spec(project_package)
    except (ImportError, ValueError) as exc:
        spec, cause = None, exc
    if spec is None:
        raise KedroProjectError(
            f"The Kedro project's package {project_package!r} cannot be imported, so it cannot be shipped with the "
            f"model. Install the project (pip install -e <project_path>) or bootstrap it (kedro's "
            f"bootstrap_project) before logging."
        ) from cause
    if spec.submodule_search_locations:
        return [str(next(iter(spec.submodule_search_locations)))]
    if spec.origin is None:
        raise KedroProjectError(f"The Kedro project's package {project_package!r} has no files to ship.")
    return [spec.origin]


def _declared_dependencies(project_package: str) -> list[str]:
    """Pin the dependencies a source-checkout project declares (``[project].dependencies`` or requirements.txt).

    Installed ones are pinned to the version installed here (the one the artifacts were made with); kedro, mlflow
    and this package are left out (pinned above, or shipped as code).
    """
    try:
        spec = importlib.util.find_spec(project_package)
    except (ImportError, ValueError):
        return []
    if spec is None or spec.origin is None:
        return []
    lines: list[str] = []
    for folder in list(Path(spec.origin).resolve().parents)[:4]:
        if (pyproject := folder / "pyproject.toml").is_file():
            project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
            lines = list(project.get("dependencies", []))
        if not lines and (requirements_txt := folder / "requirements.txt").is_file():
            lines = requirements_txt.read_text(encoding="utf-8").splitlines()
        if lines:
            break
    skipped = {canonicalize_name(name) for name in (*PINNED_DISTRIBUTIONS, "mlflow-skinny", SHIPPED_AS_CODE)}
    pinned: list[str] = []
    for line in lines:
        try:
            requirement = Requirement(line.split("#", 1)[0].strip())
        except InvalidRequirement:
            continue
        name = canonicalize_name(requirement.name)
        if name in skipped or (requirement.marker is not None and not requirement.marker.evaluate()):
            continue
        pinned.append(_pin(requirement.name) or str(requirement))
    return sorted(set(pinned))


def _pin(distribution: str) -> str | None:
    try:
        return f"{distribution}=={metadata.version(distribution)}"
    except metadata.PackageNotFoundError:
        return None


def _is_local_package(package: str) -> bool:
    """Tell whether ``package`` is imported from outside the interpreter's site-packages (a source checkout)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return True
    if spec is None or spec.origin is None:
        return True
    location = Path(spec.origin).resolve()
    site_dirs = {Path(path).resolve() for path in (*site.getsitepackages(), site.getusersitepackages())}
    site_dirs |= {Path(sysconfig.get_path(key)).resolve() for key in ("purelib", "platlib")}
    return not any(location.is_relative_to(directory) for directory in site_dirs)


def _is_local_install(distribution: str) -> bool:
    """Tell whether ``distribution`` was installed from a local path or in editable mode (PEP 610 direct_url)."""
    try:
        text = metadata.distribution(distribution).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return True
    if not text:
        return False
    direct_url = json.loads(text)
    return bool(direct_url.get("dir_info", {}).get("editable")) or str(direct_url.get("url", "")).startswith("file:")
