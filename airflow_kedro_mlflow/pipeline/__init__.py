"""Bind a Kedro training pipeline to the inference pipeline it produces artifacts for."""

from __future__ import annotations

from airflow_kedro_mlflow.pipeline.pipeline_ml import PipelineML, as_pipeline_ml, is_pipeline_ml
from airflow_kedro_mlflow.pipeline.pipeline_ml_factory import pipeline_ml_factory

__all__ = ["PipelineML", "as_pipeline_ml", "is_pipeline_ml", "pipeline_ml_factory"]
