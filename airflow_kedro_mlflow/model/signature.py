"""The model signature of a Kedro inference pipeline: input schema from the training data, params from ``params:``.

MLflow checks a request against the signature before ``predict`` runs (missing columns, wrong types, wrongly typed
params) and drops params the signature does not declare; a complete, typed signature is what makes those checks
happen, and what lets ``params`` override the pipeline's ``params:`` inputs when the model is served.

Like kedro-mlflow's ``signature="auto"``, the signature also declares a ``runner`` param (see
:data:`~airflow_kedro_mlflow.model.kedro_pipeline_model.RUNNER_PARAM`), so ``predict(df, params={"runner":
"ThreadRunner"})`` reaches the model instead of being dropped by MLflow with a warning.
"""

from __future__ import annotations

import datetime
import logging
from typing import TYPE_CHECKING, Any

from airflow_kedro_mlflow.exceptions import KedroPipelineModelError
from airflow_kedro_mlflow.model.artifacts import catalog_dataset
from airflow_kedro_mlflow.model.kedro_pipeline_model import DEFAULT_RUNNER, RUNNER_PARAM
from airflow_kedro_mlflow.pipeline.pipeline_ml import PARAMS_PREFIX

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from mlflow.models import ModelSignature

logger = logging.getLogger(__name__)

_SCALARS = (bool, int, float, str, bytes, datetime.date, datetime.datetime)


def infer_model_signature(
    input_data: Any, inference: Pipeline, catalog: CatalogProtocol, *, runner: str = DEFAULT_RUNNER
) -> ModelSignature:
    """Infer the signature of the model serving ``inference``.

    :param input_data: data as the model receives it, typically the training run's ``input_name`` dataset
        (pandas DataFrame, numpy array or Spark DataFrame).
    :param inference: the inference pipeline; its scalar (or list-of-scalars) ``params:`` inputs become signature
        params named without the prefix (``params:model.threshold`` -> ``model.threshold``), with their catalog
        value (the one training used) as default. Dict-valued or empty params stay artifacts only.
    :param catalog: the catalog of the training run, holding the parameter values.
    :param runner: default of the ``runner`` param: the model's own runner (``KedroPipelineModel.runner_name``). A
        pipeline with a ``params:runner`` of its own keeps it, and predict-time runner choice is then unavailable.
    :raises KedroPipelineModelError: when MLflow cannot infer a schema from ``input_data``.
    """
    from mlflow.models import infer_signature

    params: dict[str, Any] = {}
    for name in sorted(inference.inputs()):
        if not name.startswith(PARAMS_PREFIX):
            continue
        catalog_dataset(name, catalog)
        value = _plain(catalog.load(name))
        if _is_signature_param(value):
            params[name.removeprefix(PARAMS_PREFIX)] = value
        else:
            logger.debug("Parameter %r (%s) is shipped as an artifact only.", name, type(value).__name__)
    if RUNNER_PARAM in params or f"{PARAMS_PREFIX}{RUNNER_PARAM}" in inference.inputs():
        logger.warning(
            "The inference pipeline reads params:%s, so predict's %r param sets it: the runner cannot be chosen at "
            "predict time.",
            RUNNER_PARAM,
            RUNNER_PARAM,
        )
    else:
        params[RUNNER_PARAM] = runner
    cannot = (
        f"MLflow cannot infer a signature from the input data ({type(input_data).__name__})"
        "{reason}. Pass a pandas DataFrame or numpy array like the data the model will receive, or pass "
        "signature=... yourself."
    )
    try:
        signature = infer_signature(model_input=input_data, params=params or None)
    except Exception as exc:
        raise KedroPipelineModelError(cannot.format(reason=f": {exc}")) from exc
    if signature.inputs is None:
        raise KedroPipelineModelError(cannot.format(reason=""))
    return signature


def with_runner_default(signature: ModelSignature | None, runner: str) -> ModelSignature | None:
    """``signature`` with its ``runner`` param defaulting to ``runner`` (a recorded signature has the default one).

    MLflow fills a predict call's missing params with the signature's defaults: the default must be the model's own
    runner, or every call without ``runner`` would leave it. A signature without a ``runner`` param is returned as is.
    """
    if signature is None or signature.params is None:
        return signature
    from mlflow.models import ModelSignature
    from mlflow.types import ParamSchema, ParamSpec

    specs = [
        ParamSpec(spec.name, spec.dtype, runner, spec.shape) if spec.name == RUNNER_PARAM else spec
        for spec in signature.params.params
    ]
    return ModelSignature(inputs=signature.inputs, outputs=signature.outputs, params=ParamSchema(specs))


def _plain(value: Any) -> Any:
    """Turn numpy scalars (and lists of them) into Python ones, which MLflow's param schema understands."""
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return value.item()
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _is_signature_param(value: Any) -> bool:
    if isinstance(value, _SCALARS):
        return True
    if isinstance(value, list) and value:
        kinds = {type(item) for item in value}
        return len(kinds) == 1 and all(isinstance(item, _SCALARS) for item in value)
    return False
