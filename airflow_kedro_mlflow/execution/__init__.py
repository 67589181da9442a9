"""Execution modes: where a Kedro task runs — in the task process, in the project's own Python environment, or in
the project's image on Kubernetes.

- :mod:`.modes` — :class:`InProcessExecution` (default) and :class:`VirtualenvExecution`, the operators' one
  ``execution=`` argument;
- :mod:`.kubernetes` — :class:`KubernetesExecution`: the same CLI in a pod (cncf-kubernetes provider, an extra);
- :mod:`.commands` — the ``airflow-kedro-mlflow train``/``modelify`` command lines every isolated mode runs;
- :mod:`.subprocess_runner` — run one in a child process: log streamed, result read, kill handled;
- :mod:`.environment` — the project's interpreter and the variables it gets (credentials only in MLflow's own);
- :mod:`.venv` — a virtualenv built with ``uv`` from the project's requirements, cached and shared;
- :mod:`.core_package` — this package's core, shipped into that environment without Airflow;
- :mod:`.versions` — the Kedro and MLflow versions the core supports, checked there.

Importing this package imports neither Kedro, MLflow nor Airflow (DAG files build execution modes); only
:mod:`.kubernetes` imports Airflow's Kubernetes provider, and only when it builds a pod.
"""

from __future__ import annotations

from airflow_kedro_mlflow.exceptions import ProjectEnvironmentError, ProjectProcessError
from airflow_kedro_mlflow.execution.kubernetes import KubernetesExecution
from airflow_kedro_mlflow.execution.modes import Execution, InProcessExecution, VirtualenvExecution, resolve_execution

__all__ = [
    "Execution",
    "InProcessExecution",
    "KubernetesExecution",
    "ProjectEnvironmentError",
    "ProjectProcessError",
    "VirtualenvExecution",
    "resolve_execution",
]
