"""Where a Kedro task runs: :class:`InProcessExecution` (the default) or :class:`VirtualenvExecution` (and, in
:mod:`.kubernetes`, :class:`~.kubernetes.KubernetesExecution`).

A DAG author switches a ``KedroTrainingOperator`` or ``KedroModelifyOperator`` from one to the other with one
argument, ``execution=``; nothing else in the DAG changes, and the XCom payload is the same in every mode. Both
classes have the same two methods, ``train`` (:func:`~airflow_kedro_mlflow.training.run_training`'s arguments) and
``modelify`` (:func:`~airflow_kedro_mlflow.modelify.modelify`'s): in-process they call those functions; in a
virtualenv they run the ``airflow-kedro-mlflow train``/``modelify`` CLI with the project's interpreter
(:mod:`.subprocess_runner`). Creating one does no I/O and imports neither Kedro nor MLflow: DAG files build them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from airflow_kedro_mlflow.exceptions import ProjectEnvironmentError

if TYPE_CHECKING:
    from airflow_kedro_mlflow.execution.environment import ProjectEnvironment
    from airflow_kedro_mlflow.kedro_project import KedroRunSpec
    from airflow_kedro_mlflow.modelify import ModelifyResult
    from airflow_kedro_mlflow.tracking import TrackingConfig
    from airflow_kedro_mlflow.training_result import TrainingResult


class Execution(Protocol):
    """What the operators call: training and modelify, wherever they run."""

    def train(self, spec: KedroRunSpec, *, tracking: TrackingConfig, **kwargs: Any) -> TrainingResult:
        """Run :func:`~airflow_kedro_mlflow.training.run_training` with these arguments; return its result."""
        ...

    def modelify(
        self, project_path: str | None, pipeline_name: str | None, *, tracking: TrackingConfig, **kwargs: Any
    ) -> ModelifyResult:
        """Run :func:`~airflow_kedro_mlflow.modelify.modelify` with these arguments; return its result."""
        ...


@dataclass(frozen=True)
class InProcessExecution:
    """Run Kedro in the task's own process: the project and its dependencies are installed next to Airflow.

    The cheapest mode (no second interpreter, no second import of Kedro and MLflow), and the one to start with.
    """

    def train(self, spec: KedroRunSpec, *, tracking: TrackingConfig, **kwargs: Any) -> TrainingResult:
        """Call :func:`~airflow_kedro_mlflow.training.run_training` in this process."""
        from airflow_kedro_mlflow.training import run_training

        return run_training(spec, tracking=tracking, **kwargs)

    def modelify(
        self, project_path: str | None, pipeline_name: str | None, *, tracking: TrackingConfig, **kwargs: Any
    ) -> ModelifyResult:
        """Call :func:`~airflow_kedro_mlflow.modelify.modelify` in this process."""
        from airflow_kedro_mlflow.modelify import modelify

        return modelify(project_path, pipeline_name, tracking=tracking, **kwargs)


@dataclass(frozen=True)
class VirtualenvExecution:
    """Run Kedro with the project's own Python environment, in a child process: Kedro, MLflow and the project's
    dependencies, without Airflow. Give exactly one of ``python`` and ``requirements``.

    :param python: interpreter of an existing environment on the worker (as ``ExternalPythonOperator``'s
        ``python``), e.g. ``/opt/venvs/churn/bin/python``. It must have Kedro and MLflow (checked at start); this
        package's core is put on its ``PYTHONPATH`` by the worker, nothing is installed into it.
    :param requirements: the project's pip requirements file, relative to the Kedro project root (or absolute): the
        worker builds a virtualenv from it with ``uv``, once, cached by the hash of the requirements, and reuses it.
        Kedro, kedro-datasets and MLflow are pinned to the worker's versions unless the file names them.
    :param python_version: with ``requirements``: ``uv venv --python`` (a version or a path); the worker's Python
        when None.
    :param cache_dir: where built virtualenvs are kept; ``~/.cache/airflow-kedro-mlflow`` when None.
    :param uv: the ``uv`` executable.
    :param uv_args: extra ``uv pip install`` arguments, e.g. ``("--offline",)`` or ``("--index-url", url)``.
    :raises ProjectEnvironmentError: neither or both of ``python`` and ``requirements``, or a value of a wrong type.
    """

    python: str | None = None
    requirements: str | None = None
    python_version: str | None = None
    cache_dir: str | None = None
    uv: str = "uv"
    uv_args: Sequence[str] = ()

    def __post_init__(self) -> None:
        for name in ("python", "requirements", "python_version", "cache_dir", "uv"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str | os.PathLike):
                raise ProjectEnvironmentError(f"VirtualenvExecution({name}=...) must be a path string, got {value!r}.")
        if (self.python is None) == (self.requirements is None):
            raise ProjectEnvironmentError(
                "VirtualenvExecution needs exactly one of python= (the interpreter of an existing environment, "
                "e.g. '/opt/venvs/project/bin/python') and requirements= (a requirements file, relative to the Kedro "
                f"project, to build a cached virtualenv from); got python={self.python!r}, "
                f"requirements={self.requirements!r}."
            )
        if self.python_version is not None and self.requirements is None:
            raise ProjectEnvironmentError(
                "VirtualenvExecution(python_version=...) chooses the interpreter of a virtualenv built from "
                "requirements=...; with python=..., that interpreter is already chosen: drop python_version."
            )
        if isinstance(self.uv_args, str) or not all(isinstance(arg, str) for arg in self.uv_args):
            raise ProjectEnvironmentError(f"uv_args must be a list of strings, got {self.uv_args!r}.")
        object.__setattr__(self, "uv_args", tuple(self.uv_args))

    def environment(self, project_path: str) -> ProjectEnvironment:
        """The project's interpreter and variables: the given interpreter, or the cached venv (built when missing).

        :raises ProjectEnvironmentError: no such requirements file, no ``uv``, requirements that do not resolve.
        """
        from airflow_kedro_mlflow.execution import core_package
        from airflow_kedro_mlflow.execution.environment import ProjectEnvironment, filtered_environ
        from airflow_kedro_mlflow.execution.venv import default_cache_root, ensure_venv

        cache_root = Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_root()
        if self.python is not None:
            python = os.fspath(self.python)
            return ProjectEnvironment(
                python=python,
                description=f"the Python environment of {python}",
                extra_env={"PYTHONPATH": str(core_package.overlay(cache_root))},
            )
        # __post_init__ requires exactly one of python and requirements: without python, requirements is set.
        requirements = Path(os.fspath(cast(str, self.requirements))).expanduser()
        if not requirements.is_absolute():
            requirements = Path(project_path) / requirements
        interpreter = ensure_venv(
            requirements.resolve(),
            cache_root=cache_root,
            base_python=self.python_version,
            uv=self.uv,
            uv_args=self.uv_args,
            env=filtered_environ(),
        )
        return ProjectEnvironment(
            python=str(interpreter),
            description=f"the virtualenv built from {requirements} ({interpreter.parent.parent})",
            extra_env={"VIRTUAL_ENV": str(interpreter.parent.parent)},
        )

    def train(
        self,
        spec: KedroRunSpec,
        *,
        tracking: TrackingConfig,
        on_run_start: Callable[[str, str | None], None] | None = None,
        **kwargs: Any,
    ) -> TrainingResult:
        """Run ``airflow-kedro-mlflow train`` in the project's environment; return the same result as in-process."""
        from airflow_kedro_mlflow.execution.commands import train_command
        from airflow_kedro_mlflow.execution.subprocess_runner import result_file, run_cli
        from airflow_kedro_mlflow.training_result import TrainingResult

        spec = spec.with_overrides(project_path=os.path.abspath(spec.project_path))
        environment = self.environment(spec.project_path)
        environment.check()
        with result_file() as output:
            argv = train_command(spec, tracking=tracking, output=str(output), **kwargs)
            payload = run_cli(environment, argv, output=output, tracking=tracking, on_run_start=on_run_start)
        return TrainingResult.from_xcom(payload)

    def modelify(
        self,
        project_path: str | None,
        pipeline_name: str | None,
        *,
        tracking: TrackingConfig,
        training: TrainingResult | None = None,
        **kwargs: Any,
    ) -> ModelifyResult:
        """Run ``airflow-kedro-mlflow modelify`` in the project's environment; return the same result as in-process.

        The training result (if any) goes to the child as a JSON file (``--training-result``), checked there as an
        XCom is.
        """
        from airflow_kedro_mlflow.execution.commands import modelify_command
        from airflow_kedro_mlflow.execution.subprocess_runner import result_file, run_cli
        from airflow_kedro_mlflow.modelify import ModelifyResult

        project = project_path or (training.project_path if training is not None else None)
        if project is None:
            raise ProjectEnvironmentError(
                "modelify needs a project_path (or a training result) to find the project's environment."
            )
        project = os.path.abspath(project)
        environment = self.environment(project)
        environment.check()
        with result_file() as output:
            training_file = None
            if training is not None:
                training_file = output.with_name("training.json")
                training_file.write_text(json.dumps(training.to_xcom()), encoding="utf-8")
            argv = modelify_command(
                tracking=tracking,
                output=str(output),
                training_result=None if training_file is None else str(training_file),
                project_path=project if project_path else None,
                pipeline_name=pipeline_name,
                **kwargs,
            )
            payload = run_cli(environment, argv, output=output, tracking=tracking)
        return ModelifyResult(**payload)


def resolve_execution(execution: Any) -> Execution:
    """Check an operator's ``execution`` argument; None means :class:`InProcessExecution`.

    :raises ProjectEnvironmentError: anything that is not an execution mode.
    """
    if execution is None:
        return InProcessExecution()
    if callable(getattr(execution, "train", None)) and callable(getattr(execution, "modelify", None)):
        return execution
    raise ProjectEnvironmentError(
        f"execution must be an execution mode, got {execution!r}: pass InProcessExecution() (the default), "
        "VirtualenvExecution(python='/path/to/project/venv/bin/python'), "
        "VirtualenvExecution(requirements='requirements.txt') or KubernetesExecution(image='registry/project:tag', "
        "...), from airflow_kedro_mlflow.execution."
    )
