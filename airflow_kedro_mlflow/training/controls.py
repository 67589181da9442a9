"""Kedro's run controls (node filters, load versions, runner), checked before an MLflow run exists."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from airflow_kedro_mlflow.exceptions import KedroProjectError

if TYPE_CHECKING:
    from kedro.pipeline import Pipeline
    from kedro.runner import AbstractRunner

_BUILTIN_RUNNERS = ("SequentialRunner", "ThreadRunner")  # ParallelRunner is refused: see _refuse_subprocess_runner


def names(argument: str, value: Iterable[str] | str | None) -> list[str] | None:
    """Normalise a run-control argument: a comma-separated string (as templated in a DAG) or a list of names."""
    if value is None:
        return None
    if isinstance(value, str):
        names = [part.strip() for part in value.split(",") if part.strip()]
    else:
        names = [str(part) for part in value]
    if not names:
        return None
    return names


def check_filters(pipeline: Pipeline, pipeline_name: str, filters: Mapping[str, list[str] | None]) -> None:
    """Apply the run controls once before anything starts, so unknown nodes fail without an MLflow run.

    A ``PipelineML`` raises its own ``PipelineMLError`` for a filter that would drop an artifact the inference needs.
    """
    if not any(filters.values()):
        return
    from airflow_kedro_mlflow.exceptions import PipelineMLError

    try:
        pipeline.filter(**filters)
    except PipelineMLError:
        raise
    except ValueError as exc:
        raise KedroProjectError(
            f"Run controls {_shown(filters)} do not apply to pipeline {pipeline_name!r}: {exc}"
        ) from exc


def _shown(filters: Mapping[str, list[str] | None]) -> dict[str, list[str]]:
    return {key: value for key, value in filters.items() if value}


def resolve_runner(runner: AbstractRunner | str | type | None, package_name: str) -> AbstractRunner:
    """Return a runner instance from an instance, a class, a built-in name or an allowed dotted path.

    :raises KedroProjectError: unknown or disallowed runner, or a runner that runs nodes in other processes.
    """
    runner_obj = _runner_instance(runner, package_name)
    _refuse_subprocess_runner(runner_obj)
    return runner_obj


def _refuse_subprocess_runner(runner: AbstractRunner) -> None:
    """Refuse ``ParallelRunner`` (and its subclasses): the training run cannot follow its nodes.

    It runs nodes in worker processes, where Kedro calls only the project's own hooks (not those registered on the
    session, as the training run's are) and MLflow has no active run: node metrics would be lost, the artifacts
    could not be pinned to this run's version, and no signature would be inferred from the training input.
    """
    from kedro.runner import ParallelRunner

    if isinstance(runner, ParallelRunner):
        raise KedroProjectError(
            f"runner {type(runner).__name__!r} runs Kedro nodes in separate processes, which a training run cannot "
            "follow: their MLflow metrics would be lost and their artifacts could not be pinned to the run. Use "
            "runner='ThreadRunner' (nodes in parallel threads of this process) or 'SequentialRunner'."
        )


def _runner_instance(runner: AbstractRunner | str | type | None, package_name: str) -> AbstractRunner:
    from kedro.framework.project import settings
    from kedro.runner import AbstractRunner, SequentialRunner
    from kedro.utils import load_obj

    if runner is None:
        return SequentialRunner()
    if isinstance(runner, AbstractRunner):
        return runner
    if isinstance(runner, type) and issubclass(runner, AbstractRunner):
        return runner()
    if not isinstance(runner, str) or not runner.strip():
        raise KedroProjectError(f"runner must be a Kedro runner or its name, got {runner!r}.")
    name = runner.strip()
    allowed = ("kedro.runner", package_name, *tuple(settings.RUNNER_MODULE_ALLOWLIST))
    module = name.rpartition(".")[0]
    if module and not any(module == prefix or module.startswith(prefix + ".") for prefix in allowed):
        raise KedroProjectError(
            f"runner {name!r} is not in an allowed module {sorted(allowed)}. Use one of {list(_BUILTIN_RUNNERS)}, "
            "or add its module to RUNNER_MODULE_ALLOWLIST in the project's settings.py."
        )
    try:
        runner_class = load_obj(name, "kedro.runner")
    except (AttributeError, ImportError, ValueError) as exc:
        raise KedroProjectError(
            f"Unknown Kedro runner {name!r}: {exc}. Use one of {list(_BUILTIN_RUNNERS)} or a dotted path to a "
            "runner class."
        ) from exc
    if not (isinstance(runner_class, type) and issubclass(runner_class, AbstractRunner)):
        raise KedroProjectError(f"{name!r} is not a Kedro runner class (a kedro.runner.AbstractRunner subclass).")
    return runner_class()
