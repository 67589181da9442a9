"""``pipeline_ml_factory``: the one way to bind a training pipeline to its inference pipeline."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Pipeline

from airflow_kedro_mlflow.exceptions import PipelineMLError
from airflow_kedro_mlflow.pipeline.pipeline_ml import PipelineML, format_names, suggest

#: Keyword arguments of ``KedroPipelineModel`` that a ``PipelineML`` may carry (the others come from the pair).
KPM_KWARGS = frozenset({"runner", "copy_mode"})
#: ``mlflow.pyfunc.log_model`` arguments the model builder sets itself from the ``PipelineML``.
RESERVED_LOG_MODEL_KWARGS = frozenset({"python_model", "artifacts", "loader_module", "data_path"})


def pipeline_ml_factory(
    training: Pipeline,
    inference: Pipeline,
    input_name: str,
    kpm_kwargs: dict[str, Any] | None = None,
    log_model_kwargs: dict[str, Any] | None = None,
) -> PipelineML:
    """Bind ``training`` to ``inference`` so that running training can log inference as an MLflow model.

    Everything is checked here, when the project's pipelines are registered, rather than after an hour of
    training: the rules of DESIGN.md "PipelineML rules" and the names of the extra keyword arguments.

    :param training: the pipeline that fits the artifacts (models, encoders, ...); run by ``kedro run``.
    :param inference: the pipeline shipped as the model; exactly one output, the prediction.
    :param input_name: the inference input that receives the data to predict on (may be absent from the catalog).
    :param kpm_kwargs: arguments for ``KedroPipelineModel``: ``runner`` and/or ``copy_mode``.
    :param log_model_kwargs: arguments for ``mlflow.pyfunc.log_model`` (``name``/``artifact_path``,
        ``signature="auto"``, ``pip_requirements``, ``code_paths``, ``registered_model_name``, ...).
    :return: a ``PipelineML`` whose nodes are the training nodes.
    :raises PipelineMLError: naming the datasets or arguments at fault.
    """
    kpm_kwargs = _checked_kwargs("kpm_kwargs", kpm_kwargs)
    unknown = set(kpm_kwargs) - KPM_KWARGS
    if unknown:
        hints = "".join(suggest(name, KPM_KWARGS) for name in sorted(unknown))
        raise PipelineMLError(
            f"kpm_kwargs has unknown key(s) {format_names(unknown)}.{hints} KedroPipelineModel accepts "
            f"{format_names(KPM_KWARGS)} there; the pipeline, catalog and input_name come from the PipelineML."
        )
    log_model_kwargs = _checked_kwargs("log_model_kwargs", log_model_kwargs)
    reserved = set(log_model_kwargs) & RESERVED_LOG_MODEL_KWARGS
    if reserved:
        raise PipelineMLError(
            f"log_model_kwargs sets {format_names(reserved)}, which are built from the PipelineML (the "
            f"KedroPipelineModel and the artifacts training produced). Remove them."
        )
    if not isinstance(training, Pipeline):
        raise PipelineMLError(
            f"training must be a kedro.pipeline.Pipeline, got {type(training).__name__}. Build it with "
            f"kedro.pipeline.Pipeline([...]) or pipeline([...])."
        )
    return PipelineML(
        training.nodes,
        inference=inference,
        input_name=input_name,
        kpm_kwargs=kpm_kwargs,
        log_model_kwargs=log_model_kwargs,
    )


def _checked_kwargs(argument: str, value: dict[str, Any] | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise PipelineMLError(f"{argument} must be a dict of keyword arguments, got {value!r}.")
    return dict(value)
