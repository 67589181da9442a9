"""Kedro parameters as MLflow params: one flattening and one logging, for the training operator and the Kedro hook.

Both log the whole ``parameters`` of the run (what ``parameters.yml`` and runtime params resolve to), so the same
project logs the same params whichever way it was trained.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

_MAX_PARAM_KEY_LENGTH = 250  # MLflow's limits (mlflow.utils.validation)
_MAX_PARAM_VALUE_LENGTH = 6000
_MAX_PARAMS_PER_BATCH = 100


def flatten_params(parameters: Mapping[str, Any]) -> dict[str, str]:
    """Flatten nested Kedro params into MLflow params (``model.C``), with values cut to MLflow's length limit.

    A name longer than MLflow allows is left out with a warning rather than failing the whole run.
    """
    flat: dict[str, str] = {}
    _flatten("", parameters, flat)
    return flat


def log_params(client: MlflowClient, run_id: str, parameters: Mapping[str, Any]) -> None:
    """Log Kedro params flattened, in batches of 100.

    A resumed run may already hold some: MLflow refuses to change a param, so those with another value are kept as
    they are, with a warning.
    """
    from mlflow.entities import Param

    flat = flatten_params(parameters)
    existing = client.get_run(run_id).data.params
    changed = sorted(key for key, value in flat.items() if key in existing and existing[key] != value)
    if changed:
        logger.warning(
            "MLflow run %s already has params %s with other values; keeping the logged ones.", run_id, changed
        )
    todo = [Param(key, value) for key, value in sorted(flat.items()) if key not in existing]
    for start in range(0, len(todo), _MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=todo[start : start + _MAX_PARAMS_PER_BATCH])


def _flatten(prefix: str, value: Any, into: dict[str, str]) -> None:
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, into)
        return
    if not prefix:
        return
    if len(prefix) > _MAX_PARAM_KEY_LENGTH:
        logger.warning("Kedro param %s... has a name longer than MLflow allows; not logged.", prefix[:60])
        return
    text = str(value)
    if len(text) > _MAX_PARAM_VALUE_LENGTH:
        text = text[: _MAX_PARAM_VALUE_LENGTH - 3] + "..."
    into[prefix] = text
