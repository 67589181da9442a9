"""The project's Python environment as the worker prepares it: which interpreter, with which environment variables.

What the project's process gets, and what it does not:

- MLflow's tracking settings as MLflow's own variables (:func:`tracking_environment`): the credentials in
  ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` (or ``TOKEN``), never on the command line, where ``ps`` and the task
  log would show them. The CLI reads them into its ``TrackingConfig`` and removes them from its environment at once,
  so the processes *it* starts (``git``, a node's subprocess) inherit none.
- not the worker's Airflow settings: every ``AIRFLOW*`` variable is dropped (``AIRFLOW_CONN_*`` and
  ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` hold secrets the project has no use for), except Airflow's task context
  ``AIRFLOW_CTX_*``; nor MLflow variables that would point the run elsewhere (``MLFLOW_RUN_ID``, the experiment);
  nor the worker's ``PYTHONPATH``/``PYTHONHOME``/``VIRTUAL_ENV``, which would mix Airflow's packages into the project's.
- everything else of the worker's environment (cloud credentials for datasets, proxies, ``UV_*``...), with the
  interpreter's ``bin`` first on ``PATH`` as an activated virtualenv has it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import airflow_kedro_mlflow
from airflow_kedro_mlflow.exceptions import ProjectEnvironmentError
from airflow_kedro_mlflow.execution.versions import PROBE_SCRIPT, check_supported_versions

if TYPE_CHECKING:
    from airflow_kedro_mlflow.tracking import TrackingConfig

#: The worker's variables the project's process never sees (prefixes and names; see the module docstring).
_DROPPED_PREFIXES = ("AIRFLOW", "MLFLOW_TRACKING_", "MLFLOW_EXPERIMENT_")
_KEPT_PREFIXES = ("AIRFLOW_CTX_",)
_DROPPED = frozenset(
    {"MLFLOW_RUN_ID", "MLFLOW_REGISTRY_URI", "MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
     "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "__PYVENV_LAUNCHER__"}
)  # fmt: skip


@dataclass(frozen=True)
class ProjectEnvironment:
    """An interpreter of the project's environment and the variables its processes run with.

    :param python: the interpreter.
    :param description: how errors name this environment (e.g. "the virtualenv built from /proj/requirements.txt").
    :param extra_env: variables set on top of the worker's filtered environment (e.g. ``PYTHONPATH`` of the core).
    """

    python: str
    description: str
    extra_env: Mapping[str, str] = field(default_factory=dict)

    def environ(self, tracking: TrackingConfig | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a process of this project: the worker's, filtered, plus ``extra_env`` and tracking."""
        environ = filtered_environ(base)
        bin_dir = str(Path(self.python).parent)
        environ["PATH"] = os.pathsep.join([bin_dir, *[p for p in environ.get("PATH", "").split(os.pathsep) if p]])
        # Unbuffered: the worker streams every line into the task log as it is written. Safe path: the current
        # directory is not put first on sys.path (Python >= 3.11), so no stray checkout there shadows the core.
        environ.update({"PYTHONUNBUFFERED": "1", "PYTHONSAFEPATH": "1", **self.extra_env})
        if tracking is not None:
            environ.update(tracking_environment(tracking))
        return environ

    def check(self) -> dict[str, str | None]:
        """Run :data:`~airflow_kedro_mlflow.execution.versions.PROBE_SCRIPT` with this interpreter; check what it finds.

        :return: the probe's report (executable, python, kedro, mlflow, airflow_kedro_mlflow versions).
        :raises ProjectEnvironmentError: the interpreter is missing, not executable or not Python; Kedro or MLflow
            missing or unsupported; the core not importable there.
        """
        check_interpreter(self.python, self.description)
        try:
            completed = subprocess.run(
                [self.python, "-c", PROBE_SCRIPT],
                env=self.environ(),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise ProjectEnvironmentError(f"{self.description} cannot run: {exc}. {_FIX_INTERPRETER}") from exc
        report = _last_json_line(completed.stdout)
        if completed.returncode != 0 or report is None:
            tail = " ".join((completed.stderr or completed.stdout).strip().splitlines()[-3:])
            raise ProjectEnvironmentError(
                f"{self.description} is not a working Python interpreter (probe exited {completed.returncode}: "
                f"{tail or 'no output'}). {_FIX_INTERPRETER}"
            )
        where = f"{self.description} (Python {report.get('python')})"
        check_supported_versions(report, where=where)
        if report.get("airflow_kedro_mlflow") != airflow_kedro_mlflow.__version__:
            raise ProjectEnvironmentError(
                f"{where} imports airflow_kedro_mlflow {report.get('airflow_kedro_mlflow') or '(none)'}, but the "
                f"worker runs {airflow_kedro_mlflow.__version__}: the core shipped into it is not importable. Delete "
                "the environment's cache directory and retry, so it is built again."
            )
        return report


_FIX_INTERPRETER = (
    "Point VirtualenvExecution(python=...) at the bin/python of the project's virtualenv (it must exist on this "
    "worker), or let the worker build one with VirtualenvExecution(requirements='requirements.txt')."
)


def check_interpreter(python: str, description: str) -> None:
    """Fail early, and clearly, on an interpreter path that does not exist or cannot be executed."""
    path = Path(python)
    if not path.exists():
        raise ProjectEnvironmentError(f"{description}: {python} does not exist on this worker. {_FIX_INTERPRETER}")
    if path.is_dir() or not os.access(path, os.X_OK):
        raise ProjectEnvironmentError(
            f"{description}: {python} is not an executable file (a directory, or no execute permission). "
            f"{_FIX_INTERPRETER}"
        )


def filtered_environ(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The worker's environment without what the project's processes must not get (see the module docstring)."""
    return {name: value for name, value in (os.environ if base is None else base).items() if _kept(name)}


def tracking_environment(tracking: TrackingConfig) -> dict[str, str]:
    """MLflow's own variables for ``tracking``'s credentials and HTTP settings (the URIs go as flags).

    What ``TrackingConfig.from_env`` reads back in the project's process: a login and password as
    ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``, a password without login as the bearer ``MLFLOW_TRACKING_TOKEN``.
    """
    environ: dict[str, str] = {}
    if tracking.password:
        if tracking.username:
            environ["MLFLOW_TRACKING_USERNAME"] = tracking.username
            environ["MLFLOW_TRACKING_PASSWORD"] = tracking.password
        else:
            environ["MLFLOW_TRACKING_TOKEN"] = tracking.password
    if tracking.insecure_tls:
        environ["MLFLOW_TRACKING_INSECURE_TLS"] = "true"
    if tracking.timeout is not None:
        environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(math.ceil(float(tracking.timeout)))
    if tracking.max_retries is not None:
        environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(int(tracking.max_retries))
    return environ


def _kept(name: str) -> bool:
    if name in _DROPPED:
        return False
    if name.startswith(_KEPT_PREFIXES):
        return True
    return not name.startswith(_DROPPED_PREFIXES)


def _last_json_line(stdout: str) -> dict[str, str | None] | None:
    for line in reversed(stdout.strip().splitlines()):
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            return parsed
    return None
