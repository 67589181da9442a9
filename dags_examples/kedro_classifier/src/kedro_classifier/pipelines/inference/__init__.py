"""Inference: ``instances`` -> scaled features -> probabilities -> ``predictions`` (threshold applied)."""

from kedro_classifier.pipelines.inference.pipeline import create_pipeline

__all__ = ["create_pipeline"]
