"""Operator that promotes a registered model version to ``champion`` when its metric beats the current one.

Thin: it reads the version from the modelify task's XCom and calls :func:`airflow_kedro_mlflow.promotion.promote`,
which Python and ``airflow-kedro-mlflow promote`` users call too (rules, race safety and tags are documented there).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_kedro_mlflow.assets import add_model_alias_outlet, emit_model_alias_events
from airflow_kedro_mlflow.exceptions import PromotionError, XComPayloadError
from airflow_kedro_mlflow.hooks.mlflow import MlflowHook
from airflow_kedro_mlflow.links.mlflow import MLFLOW_MODEL_VERSION_URL_KEY, MlflowModelVersionLink
from airflow_kedro_mlflow.openlineage import OpenLineageMixin, promotion_lineage

# Public names of the promotion core, importable from here as before the core had its own module.
from airflow_kedro_mlflow.promotion import (  # noqa: F401
    ALREADY_CHAMPION,
    DECISION_TAG,
    KEPT_CHAMPION,
    PROMOTED,
    REASON_TAG,
    PromotionDecision,
    decide_promotion,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

logger = logging.getLogger(__name__)

#: XCom key of the decision (``promoted``, ``kept_champion`` or ``already_champion``), next to ``return_value``.
DECISION_KEY = "decision"


class MlflowPromoteModelOperator(OpenLineageMixin, BaseOperator):
    """Move the ``champion`` alias to a model version when its metric is better than the current champion's.

    The new version's metric is read from its source run (the training run the model was logged in). Rules: no
    champion yet -> promote; strictly better -> promote; a tie or worse -> keep the champion; a champion whose run
    lacks the metric loses, with a warning and the reason in the ``promotion.reason`` tag. Re-running the task after
    it promoted finds the version already champion and changes nothing.

    When the alias moves, the task emits an event of the Airflow asset of ``<name>@<alias>``
    (:func:`~airflow_kedro_mlflow.assets.mlflow_model_asset`), so DAGs scheduled on it run with the new version; a
    kept champion emits nothing.

    :param metric: name of the MLflow metric to compare, e.g. ``accuracy``. (templated)
    :param registered_model_name: registered model; taken from ``modelify_task_id``'s XCom when None. (templated)
    :param version: version to consider; taken from ``modelify_task_id``'s XCom when None. (templated)
    :param modelify_task_id: task id of the ``KedroModelifyOperator`` whose registered version to consider.
    :param greater_is_better: True when a higher metric is better (accuracy), False when lower is (rmse).
    :param alias: alias that marks the serving version. (templated)
    :param mlflow_conn_id: Airflow connection of type ``mlflow``.
    """

    template_fields: Sequence[str] = ("metric", "registered_model_name", "version", "alias")
    operator_extra_links = (MlflowModelVersionLink(),)
    ui_color = "#43c9ed"

    def __init__(
        self,
        *,
        metric: str,
        registered_model_name: str | None = None,
        version: str | int | None = None,
        modelify_task_id: str | None = None,
        greater_is_better: bool = True,
        alias: str = "champion",
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if modelify_task_id is None and (registered_model_name is None or version is None):
            raise PromotionError(
                f"MlflowPromoteModelOperator {self.task_id!r} needs a model version: pass modelify_task_id (the "
                "KedroModelifyOperator task upstream that registered it), or registered_model_name and version."
            )
        self.metric = metric
        self.registered_model_name = registered_model_name
        self.version = version
        self.modelify_task_id = modelify_task_id
        self.greater_is_better = greater_is_better
        self.alias = alias
        self.mlflow_conn_id = mlflow_conn_id
        add_model_alias_outlet(self)  # the alias outlet its model events go through (see the assets module)

    def execute(self, context: Context) -> dict[str, Any]:
        """Compare, move the alias when the new version wins, tag the version, and return the decision."""
        name, version = self._model_version(context)
        from airflow_kedro_mlflow.promotion import promote

        tracking = MlflowHook(self.mlflow_conn_id).get_tracking_config()
        decision = promote(
            name,
            version,
            metric=self.metric,
            tracking=tracking,
            alias=self.alias,
            greater_is_better=self.greater_is_better,
        )
        logger.info("Model %s version %s: %s (%s)", name, version, decision.decision, decision.reason)
        ti = context["ti"]
        ti.xcom_push(key=DECISION_KEY, value=decision.decision)
        ti.xcom_push(key=MLFLOW_MODEL_VERSION_URL_KEY, value=tracking.model_version_url(name, version))
        # A retry finding its version already champion announces the move of an earlier try that failed after it.
        if decision.alias_moved or (decision.decision == ALREADY_CHAMPION and ti.try_number > 1):
            emit_model_alias_events(context, tracking, name, version, [self.alias], moved_now=decision.alias_moved)
        self._record_lineage(promotion_lineage, decision, tracking.public_uri)  # version -> alias, when it moved
        return decision.to_xcom()

    def _model_version(self, context: Context) -> tuple[str, str]:
        name, version = self.registered_model_name, self.version
        if self.modelify_task_id is not None and (name is None or version is None):
            payload = context["ti"].xcom_pull(task_ids=self.modelify_task_id, key="return_value")
            if not isinstance(payload, dict):
                raise XComPayloadError(
                    f"modelify task {self.modelify_task_id!r} published no XCom; run this task downstream of it "
                    f"({self.modelify_task_id} >> {self.task_id}), or pass registered_model_name and version."
                )
            name = name or payload.get("registered_model_name")
            version = version if version is not None else payload.get("version")
            if not name or version is None:
                raise PromotionError(
                    f"modelify task {self.modelify_task_id!r} logged its model without registering it, so there "
                    "is no version to promote. Give it registered_model_name."
                )
        return str(name), str(version)
