"""The inference pipeline: what the logged MLflow model runs for every request."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from kedro_classifier.pipelines.inference.nodes import predict, scale


def create_pipeline(**kwargs: object) -> Pipeline:
    """Scale ``instances`` with the trained ``scaler`` and classify them with ``classifier`` at ``threshold``."""
    return Pipeline(
        [
            node(scale, inputs=["instances", "scaler"], outputs="scaled_instances", name="scale_instances"),
            node(
                predict,
                inputs=["scaled_instances", "classifier", "params:threshold"],
                outputs="predictions",
                name="predict",
            ),
        ]
    )
