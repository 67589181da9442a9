"""The training pipeline: produces every artifact the inference pipeline needs (``scaler``, ``classifier``)."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from kedro_classifier.pipelines.inference.nodes import predict, scale
from kedro_classifier.pipelines.training.nodes import evaluate, fit_classifier, fit_scaler, load_raw_data, split_data


def create_pipeline(**kwargs: object) -> Pipeline:
    """Load, split, fit the scaler and the classifier on ``instances``, and evaluate them on the test rows.

    The test rows go through the same ``scale`` and ``predict`` functions as the inference pipeline, so the logged
    metrics describe exactly what the served model does.
    """
    return Pipeline(
        [
            node(load_raw_data, inputs=None, outputs="raw_data", name="load_raw_data"),
            node(
                split_data,
                inputs=["raw_data", "params:test_size", "params:random_state"],
                outputs=["instances", "test_instances", "labels", "test_labels"],
                name="split_data",
            ),
            node(fit_scaler, inputs="instances", outputs="scaler", name="fit_scaler"),
            node(scale, inputs=["instances", "scaler"], outputs="scaled_training_instances", name="scale_training"),
            node(
                fit_classifier,
                inputs=["scaled_training_instances", "labels", "params:C", "params:max_iter", "params:random_state"],
                outputs="classifier",
                name="fit_classifier",
            ),
            node(scale, inputs=["test_instances", "scaler"], outputs="scaled_test_instances", name="scale_test"),
            node(
                predict,
                inputs=["scaled_test_instances", "classifier", "params:threshold"],
                outputs="test_predictions",
                name="predict_test",
            ),
            node(evaluate, inputs=["test_predictions", "test_labels"], outputs="metrics", name="evaluate"),
        ]
    )
