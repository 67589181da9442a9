"""Operator that promotes a registered model version to ``champion`` when its metric beats the current one.

Promotion is an explicit step after :class:`~airflow_kedro_mlflow.operators.kedro.KedroModelifyOperator`: registering
a version (e.g. as ``challenger``) never moves the alias that serving reads. The comparison reads the metric from
each version's source run; the decision is returned as XCom and recorded as tags on the new version, so the registry
itself says why a version was or was not promoted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_kedro_mlflow.exceptions import PromotionError, TrainingXComError
from airflow_kedro_mlflow.hooks.mlflow import MlflowHook
from airflow_kedro_mlflow.links.mlflow import MLFLOW_MODEL_VERSION_URL_KEY, MlflowModelVersionLink

if TYPE_CHECKING:
    from airflow.sdk import Context
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

#: XCom key of the decision (``promoted``, ``kept_champion`` or ``already_champion``), next to ``return_value``.
DECISION_KEY = "decision"
#: Model version tags written on the compared version.
DECISION_TAG = "promotion.decision"
REASON_TAG = "promotion.reason"

PROMOTED = "promoted"
KEPT_CHAMPION = "kept_champion"
ALREADY_CHAMPION = "already_champion"


@dataclass(frozen=True)
class PromotionDecision:
    """What the promotion step decided and why; the operator's XCom ``return_value``."""

    decision: str
    reason: str
    registered_model_name: str
    version: str
    alias: str
    metric: str
    value: float
    champion_version: str | None
    champion_value: float | None

    def to_xcom(self) -> dict[str, Any]:
        """Return the decision as a JSON-safe dict."""
        return asdict(self)


class MlflowPromoteModelOperator(BaseOperator):
    """Move the ``champion`` alias to a model version when its metric is better than the current champion's.

    The new version's metric is read from its source run (the training run the model was logged in). Rules: no
    champion yet -> promote; strictly better -> promote; a tie or worse -> keep the champion; a champion whose run
    lacks the metric loses, with a warning and the reason in the ``promotion.reason`` tag. Re-running the task after
    it promoted finds the version already champion and changes nothing.

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
            raise ValueError(
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

    def execute(self, context: Context) -> dict[str, Any]:
        """Compare, move the alias when the new version wins, tag the version, and return the decision."""
        name, version = self._model_version(context)
        tracking = MlflowHook(self.mlflow_conn_id).get_tracking_config()
        with tracking.activate():
            decision = decide_promotion(
                tracking.client(),
                name,
                version,
                metric=self.metric,
                alias=self.alias,
                greater_is_better=self.greater_is_better,
            )
        logger.info("Model %s version %s: %s (%s)", name, version, decision.decision, decision.reason)
        ti = context["ti"]
        ti.xcom_push(key=DECISION_KEY, value=decision.decision)
        ti.xcom_push(key=MLFLOW_MODEL_VERSION_URL_KEY, value=tracking.model_version_url(name, version))
        return decision.to_xcom()

    def _model_version(self, context: Context) -> tuple[str, str]:
        name, version = self.registered_model_name, self.version
        if self.modelify_task_id is not None and (name is None or version is None):
            payload = context["ti"].xcom_pull(task_ids=self.modelify_task_id, key="return_value")
            if not isinstance(payload, dict):
                raise TrainingXComError(
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


def decide_promotion(
    client: MlflowClient,
    registered_model_name: str,
    version: str,
    *,
    metric: str,
    alias: str = "champion",
    greater_is_better: bool = True,
) -> PromotionDecision:
    """Compare ``version`` with the holder of ``alias``, move the alias if it wins, and tag ``version``.

    :raises PromotionError: the version does not exist, or its run has no ``metric``.
    """
    from mlflow.exceptions import MlflowException

    try:
        candidate = client.get_model_version(registered_model_name, version)
    except MlflowException as exc:
        raise PromotionError(
            f"registered model {registered_model_name!r} has no version {version!r}; check the name and version "
            "that the modelify task returned."
        ) from exc
    value = _run_metric(client, candidate.run_id, metric)
    if value is None:
        raise PromotionError(
            f"metric {metric!r} is absent from run {candidate.run_id} of {registered_model_name!r} version "
            f"{version}, so it cannot be compared. Log it in the training pipeline (mlflow.log_metric) or choose "
            "a metric the run has."
        )
    champion = _alias_holder(client, registered_model_name, alias)
    champion_value = None if champion is None else _run_metric(client, champion.run_id, metric)

    if champion is None:
        decision, reason = PROMOTED, f"no version held alias {alias!r}"
    elif str(champion.version) == str(version):
        decision, reason = ALREADY_CHAMPION, f"version {version} already holds alias {alias!r}"
    elif champion_value is None:
        decision = PROMOTED
        reason = f"{alias} version {champion.version} has no metric {metric!r} in run {champion.run_id}"
        logger.warning("Promoting %s version %s: %s", registered_model_name, version, reason)
    elif _better(value, champion_value, greater_is_better):
        decision = PROMOTED
        reason = f"{metric}={value} beats {alias} version {champion.version}'s {metric}={champion_value}"
    else:
        decision = KEPT_CHAMPION
        reason = f"{metric}={value} does not beat {alias} version {champion.version}'s {metric}={champion_value}"

    if decision == PROMOTED:
        client.set_registered_model_alias(registered_model_name, alias, version)
    client.set_model_version_tag(registered_model_name, version, DECISION_TAG, decision)
    client.set_model_version_tag(registered_model_name, version, REASON_TAG, reason)
    return PromotionDecision(
        decision=decision,
        reason=reason,
        registered_model_name=registered_model_name,
        version=str(version),
        alias=alias,
        metric=metric,
        value=value,
        champion_version=None if champion is None else str(champion.version),
        champion_value=champion_value,
    )


def _better(value: float, champion_value: float, greater_is_better: bool) -> bool:
    """Strictly better: a tie keeps the champion, so an equal retrain never churns the serving version."""
    return value > champion_value if greater_is_better else value < champion_value


def _run_metric(client: MlflowClient, run_id: str | None, metric: str) -> float | None:
    if not run_id:
        return None
    return client.get_run(run_id).data.metrics.get(metric)


def _alias_holder(client: MlflowClient, registered_model_name: str, alias: str) -> Any:
    """Return the version holding ``alias``, or None when no version does (or the model has no versions yet)."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST, ErrorCode

    try:
        return client.get_model_version_by_alias(registered_model_name, alias)
    except MlflowException as exc:
        if exc.error_code in (ErrorCode.Name(RESOURCE_DOES_NOT_EXIST), ErrorCode.Name(INVALID_PARAMETER_VALUE)):
            return None
        raise
