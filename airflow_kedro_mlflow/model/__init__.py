"""Ship a Kedro inference pipeline, with everything its training produced, as an MLflow pyfunc model."""

from __future__ import annotations

from airflow_kedro_mlflow.model.artifacts import sha256_path
from airflow_kedro_mlflow.model.kedro_pipeline_model import KedroPipelineModel, KedroPipelineModelInputError
from airflow_kedro_mlflow.model.requirements import (
    default_pip_requirements,
    model_code_paths,
    project_code_paths,
)
from airflow_kedro_mlflow.model.signature import infer_model_signature

__all__ = [
    "KedroPipelineModel",
    "KedroPipelineModelInputError",
    "default_pip_requirements",
    "infer_model_signature",
    "model_code_paths",
    "project_code_paths",
    "sha256_path",
]
