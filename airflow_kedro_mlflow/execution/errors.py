"""Errors of the isolated execution modes: the project's environment, and the process that runs in it.

They subclass the package's base error like every other error, and ``ProjectEnvironmentError`` is bad input
(``ValueError``: the CLI exits 2 on it). Their home should be :mod:`airflow_kedro_mlflow.exceptions`, with the others;
they live here until that module takes them.
"""

from __future__ import annotations

from airflow_kedro_mlflow.exceptions import AirflowKedroMlflowError


class ProjectEnvironmentError(AirflowKedroMlflowError, ValueError):
    """The project's Python environment cannot run the training: interpreter missing or not executable, Kedro or
    MLflow missing or of an unsupported version, a requirements file that does not resolve, ``uv`` not found."""


class ProjectProcessError(AirflowKedroMlflowError):
    """The process running the CLI in the project's environment failed in a way the CLI could not report itself:
    killed by a signal, or ended without its result file."""
