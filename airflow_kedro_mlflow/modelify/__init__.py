"""Build a ``KedroPipelineModel`` from a Kedro project and log (and optionally register) it in MLflow.

- :mod:`.api` — :func:`modelify`, from a project on disk (and maybe a training task's result): the CLI's and the
  operator's entry point;
- :mod:`.build` — :func:`log_pipeline_model`, the one build-and-log, also used by the Kedro hook and the dataset;
- :mod:`.artifacts` — a training task's artifacts, checked by sha256, on any worker;
- :mod:`.options` — ``log_model_kwargs`` as kedro-mlflow users write them;
- :mod:`.idempotency` — one model per task and training run, whatever retries do;
- :mod:`.result` — :class:`ModelifyResult`, the XCom.
"""

from __future__ import annotations

from airflow_kedro_mlflow.modelify.api import modelify
from airflow_kedro_mlflow.modelify.artifacts import resolve_training_artifacts
from airflow_kedro_mlflow.modelify.build import log_pipeline_model, register_logged_model
from airflow_kedro_mlflow.modelify.options import DEFAULT_MODEL_NAME, normalize_log_model_kwargs
from airflow_kedro_mlflow.modelify.result import ModelifyResult
from airflow_kedro_mlflow.tracking.registry import validate_aliases, validate_registered_model_name
from airflow_kedro_mlflow.tracking.tags import IDEMPOTENCY_TAG, TRAINING_RUN_TAG

__all__ = [
    "DEFAULT_MODEL_NAME",
    "IDEMPOTENCY_TAG",
    "TRAINING_RUN_TAG",
    "ModelifyResult",
    "log_pipeline_model",
    "modelify",
    "normalize_log_model_kwargs",
    "register_logged_model",
    "resolve_training_artifacts",
    "validate_aliases",
    "validate_registered_model_name",
]
