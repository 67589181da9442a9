"""Training: load the breast-cancer data, split it, fit ``scaler`` and ``classifier``, evaluate on held-out rows."""

from kedro_classifier.pipelines.training.pipeline import create_pipeline

__all__ = ["create_pipeline"]
