"""Idempotency: one model (and one version) per task identity and training run, whatever retries and races do.

A retry first deletes what earlier tries left unfinished (:func:`discard_unfinished`), then reuses a READY model
logged for the same key (:func:`reuse_logged_model`); racing tries are reconciled where they log and register
(:mod:`airflow_kedro_mlflow.tracking.registry`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from airflow_kedro_mlflow.exceptions import MlflowRunNotFoundError
from airflow_kedro_mlflow.modelify.build import register_logged_model
from airflow_kedro_mlflow.modelify.result import ModelifyResult
from airflow_kedro_mlflow.tracking.registry import delete_logged_model, is_ready, logged_models_for
from airflow_kedro_mlflow.tracking.runs import get_run
from airflow_kedro_mlflow.tracking.tags import IDEMPOTENCY_TAG, try_number

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from airflow_kedro_mlflow.tracking import TrackingConfig

logger = logging.getLogger(__name__)

#: Without try numbers, an unfinished model this old is taken as abandoned (an upload takes seconds to minutes).
_UNTRIED_GRACE_S = 3600


def reuse_logged_model(
    client: MlflowClient,
    *,
    experiment_id: str,
    token: str,
    registered_model_name: str | None,
    aliases: list[str],
    tags: Mapping[str, str],
    tracking: TrackingConfig,
) -> ModelifyResult | None:
    """Return what an earlier try with the same idempotency key logged (registering it if that try could not).

    The oldest READY model is reused, as racing tries agree on it. A model whose source run was deleted is not: a
    modelify that logged into a run of its own deletes that run when registering fails, and a retry must not report
    a deleted run; such a model is deleted (best effort) and the retry logs a new one.
    """
    for existing in [model for model in logged_models_for(client, experiment_id, token) if is_ready(model)]:
        run_id = existing.source_run_id
        if not run_id:
            raise MlflowRunNotFoundError(
                f"Logged model {existing.model_id} carries this task's idempotency key but names no source run, so "
                "it was not logged by modelify (which always logs next to a run) and cannot be reused. Delete it "
                f"(MlflowClient().delete_logged_model({existing.model_id!r})) and run the task again."
            )
        if _run_is_deleted(client, run_id):
            logger.warning(
                "Deleting model %s an earlier try logged: its MLflow run %s was deleted after that try failed.",
                existing.model_id,
                run_id,
            )
            delete_logged_model(client, existing.model_id)
            continue
        logger.info("Reusing model %s logged by an earlier try (idempotency key %s)", existing.model_id, token[:12])
        result = ModelifyResult(
            model_uri=f"models:/{existing.model_id}",
            run_id=run_id,
            experiment_id=existing.experiment_id,
            model_id=existing.model_id,
            run_url=tracking.run_url(existing.experiment_id, run_id),
            reused=True,
        )
        if registered_model_name is not None:
            register_logged_model(
                result, registered_model_name, aliases, tags={**tags, IDEMPOTENCY_TAG: token}, client=client,
                tracking=tracking,
            )  # fmt: skip
        return result
    return None


def discard_unfinished(client: MlflowClient, experiment_id: str, token: str, current_try: int | None) -> list[str]:
    """Delete the logged models earlier tries of this task left unfinished (PENDING or FAILED); return their ids.

    A try killed in the middle of an upload, or whose cleanup ran while the server was down, leaves a logged model
    that never became READY. The next try is the first code that runs for that task again. Only models of *earlier*
    tries are touched (their ``airflow.try_number`` tag is lower than ``current_try``), so a racing try of the same
    number that is still uploading keeps its model; without try numbers (outside Airflow), unfinished models older
    than an hour go. Deleting is best effort: what cannot be deleted now is tried again by the next try.
    """
    discarded = []
    cutoff_ms = (time.time() - _UNTRIED_GRACE_S) * 1000
    for model in logged_models_for(client, experiment_id, token):
        if is_ready(model):
            continue
        model_try = try_number(model.tags)
        earlier = (
            model_try < current_try
            if model_try is not None and current_try is not None
            else model.creation_timestamp < cutoff_ms
        )
        if earlier:
            logger.warning("Deleting model %s an earlier try left unfinished (%s).", model.model_id, model.status)
            delete_logged_model(client, model.model_id)
            discarded.append(model.model_id)
    return discarded


def _run_is_deleted(client: MlflowClient, run_id: str) -> bool:
    """Whether ``run_id`` is deleted (or gone); a run that cannot be read for another reason raises."""
    try:
        get_run(client, run_id)
    except MlflowRunNotFoundError:
        return True
    return False
