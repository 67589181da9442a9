"""Register the project's pipelines.

``training`` binds the training pipeline to the inference pipeline with ``pipeline_ml_factory``: running it fits the
scaler and the classifier that the inference pipeline needs, and airflow-kedro-mlflow can then ship the inference
pipeline with those artifacts as one MLflow model whose input is ``instances``.
"""

from __future__ import annotations

from kedro.pipeline import Pipeline

from airflow_kedro_mlflow.pipeline import pipeline_ml_factory
from kedro_classifier.pipelines import inference, training


def register_pipelines() -> dict[str, Pipeline]:
    """Return ``training`` (a PipelineML), ``inference`` and ``__default__`` (= ``training``)."""
    inference_pipeline = inference.create_pipeline()
    training_pipeline = pipeline_ml_factory(
        training=training.create_pipeline(),
        inference=inference_pipeline,
        input_name="instances",
    )
    return {
        "training": training_pipeline,
        "inference": inference_pipeline,
        "__default__": training_pipeline,
    }
