"""The CLI contract every isolated execution mode runs: the ``airflow-kedro-mlflow train``/``modelify`` command
lines of one task, and the line by which a training process announces its MLflow run.

One function per command turns the arguments of :func:`~airflow_kedro_mlflow.training.run_training` (or
:func:`~airflow_kedro_mlflow.modelify.modelify`) into flags, so a virtualenv subprocess, a container or a pod gets
exactly what the in-process call would. No credential is ever a flag: the tracking URIs here carry none (a
``TrackingConfig`` strips them), and the secrets travel in MLflow's own environment variables
(:func:`~airflow_kedro_mlflow.execution.environment.tracking_environment`). Typed values (runtime params, load
versions, ``log_model_kwargs``) travel as JSON, so an int stays an int.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_kedro_mlflow.exceptions import KedroProjectError

if TYPE_CHECKING:
    from airflow_kedro_mlflow.kedro_project import KedroRunSpec
    from airflow_kedro_mlflow.tracking import TrackingConfig

#: The CLI module run with ``python -m`` (no console script needed, whatever the environment's ``bin`` layout).
CLI_MODULE = "airflow_kedro_mlflow.cli"
#: Start of the one stderr line ``train`` writes as soon as its MLflow run exists; a JSON object follows.
RUN_STARTED_PREFIX = "airflow-kedro-mlflow: MLflow run started: "


def run_started_line(run_id: str, run_url: str | None) -> str:
    """The announcement ``train`` writes when its run starts (the caller links to it, and fails it if need be)."""
    return RUN_STARTED_PREFIX + json.dumps({"run_id": run_id, "run_url": run_url}, sort_keys=True)


def parse_run_started(line: str) -> tuple[str, str | None] | None:
    """``(run_id, run_url)`` from an announcement line, None for any other line."""
    if not line.startswith(RUN_STARTED_PREFIX):
        return None
    try:
        announced = json.loads(line[len(RUN_STARTED_PREFIX) :])
        return str(announced["run_id"]), announced.get("run_url")
    except (ValueError, KeyError, TypeError):
        return None


def train_command(
    spec: KedroRunSpec,
    *,
    tracking: TrackingConfig,
    output: str,
    experiment_name: str | None = None,
    run_name: str | None = None,
    run_id: str | None = None,
    mlflow_tags: Mapping[str, Any] | None = None,
    runner: str | None = None,
    tags: Iterable[str] | str | None = None,
    node_names: Iterable[str] | str | None = None,
    from_nodes: Iterable[str] | str | None = None,
    to_nodes: Iterable[str] | str | None = None,
    load_versions: Mapping[str, str] | None = None,
    params_options: Mapping[str, str] | None = None,
    parent_run_tags: Mapping[str, str] | None = None,
) -> list[str]:
    """The ``train`` arguments (after ``airflow-kedro-mlflow``) for :func:`run_training`'s arguments.

    :param output: where the CLI writes the training XCom (``TrainingResult.to_xcom()`` as JSON).
    :raises KedroProjectError: a value that cannot cross a process boundary (a runner object, non-JSON params).
    """
    if runner is not None and not isinstance(runner, str):
        raise KedroProjectError(
            f"runner must be a runner name or import path in an isolated execution mode, got {runner!r}: the "
            "runner is built in the project's environment. Pass e.g. runner='ThreadRunner'."
        )
    argv = ["train", *_spec_flags(spec), *_tracking_flags(tracking), "--output", output]
    argv += _optional(("--experiment-name", experiment_name), ("--run-name", run_name), ("--run-id", run_id),
                      ("--runner", runner))  # fmt: skip
    argv += _key_values("--tag", mlflow_tags)
    argv += _key_values("--parent-run-tag", parent_run_tags)
    for flag, value in (("--tags", tags), ("--node-names", node_names), ("--from-nodes", from_nodes),
                        ("--to-nodes", to_nodes)):  # fmt: skip
        argv += _names(flag, value)
    if load_versions:
        argv += ["--load-versions-json", _json("load_versions", load_versions)]
    options = dict(params_options or {})
    argv += _optional(("--params-shape", options.pop("shape", None)),
                      ("--long-params-strategy", options.pop("long_params_strategy", None)))  # fmt: skip
    if options:
        raise KedroProjectError(
            f"params_options has unknown key(s) {sorted(options)}: use 'shape' and 'long_params_strategy'."
        )
    return argv


def modelify_command(
    *,
    tracking: TrackingConfig,
    output: str,
    training_result: str | None = None,
    project_path: str | None = None,
    pipeline_name: str | None = None,
    env: str | None = None,
    conf_source: str | None = None,
    runtime_params: Mapping[str, Any] | None = None,
    input_name: str | None = None,
    run_id: str | None = None,
    run_name: str | None = None,
    experiment_name: str | None = None,
    registered_model_name: str | None = None,
    aliases: Sequence[str] = (),
    copy_mode: str | Mapping[str, str] | None = None,
    log_model_kwargs: Mapping[str, Any] | None = None,
    mlflow_tags: Mapping[str, Any] | None = None,
    idempotency_key: Mapping[str, Any] | None = None,
) -> list[str]:
    """The ``modelify`` arguments for :func:`modelify`'s arguments; ``training_result`` is a file of the training
    XCom (the training task's payload, as JSON)."""
    argv = ["modelify", *_tracking_flags(tracking), "--output", output]
    argv += _optional(("--training-result", training_result), ("--project-path", project_path),
                      ("--pipeline", pipeline_name), ("--env", env), ("--conf-source", conf_source),
                      ("--input-name", input_name), ("--run-id", run_id), ("--run-name", run_name),
                      ("--experiment-name", experiment_name),
                      ("--registered-model-name", registered_model_name))  # fmt: skip
    if runtime_params:
        argv += ["--runtime-params-json", _json("runtime_params", runtime_params)]
    for alias in aliases:
        argv += ["--alias", alias]
    if copy_mode is not None:
        argv += ["--copy-mode", copy_mode if isinstance(copy_mode, str) else _json("copy_mode", copy_mode)]
    if log_model_kwargs:
        argv += ["--log-model-kwargs-json", _json("log_model_kwargs", log_model_kwargs)]
    argv += _key_values("--tag", mlflow_tags)
    argv += _key_values("--idempotency-key", idempotency_key)
    return argv


def _spec_flags(spec: KedroRunSpec) -> list[str]:
    argv = ["--project-path", spec.project_path, "--pipeline", spec.pipeline_name]
    argv += _optional(("--env", spec.env), ("--conf-source", spec.conf_source))
    if spec.runtime_params:
        argv += ["--runtime-params-json", _json("runtime_params", spec.runtime_params)]
    return argv


def _tracking_flags(tracking: TrackingConfig) -> list[str]:
    """The public URIs only: credentials, TLS and HTTP settings go through the environment."""
    return _optional(("--tracking-uri", tracking.public_uri), ("--registry-uri", tracking.registry_uri),
                     ("--ui-url", tracking.ui_url))  # fmt: skip


def _optional(*pairs: tuple[str, str | None]) -> list[str]:
    argv: list[str] = []
    for flag, value in pairs:
        if value is not None and value != "":
            argv += [flag, str(value)]
    return argv


def _key_values(flag: str, values: Mapping[str, Any] | None) -> list[str]:
    argv: list[str] = []
    for key, value in sorted((values or {}).items()):
        argv += [flag, f"{key}={value}"]
    return argv


def _names(flag: str, value: Iterable[str] | str | None) -> list[str]:
    if value is None or value == "":
        return []
    items = [value] if isinstance(value, str) else [str(item) for item in value]
    return [flag, ",".join(items)] if items else []


def _json(name: str, value: Any) -> str:
    try:
        return json.dumps(value, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise KedroProjectError(
            f"{name} cannot be sent to the project's environment as JSON ({exc}): in an isolated execution mode it "
            "must be made of strings, numbers, booleans, lists and dicts. Run in-process to pass Python objects."
        ) from exc
