"""Promote a registered model version to ``champion`` when its metric beats the current one's.

Promotion is an explicit step after modelify: registering a version (e.g. as ``challenger``) never moves the alias
that serving reads. The comparison reads the metric from each version's source run (the training run); the decision
is returned and recorded as tags on the compared version, so the registry itself says why a version was or was not
promoted. Python callers use :func:`promote`, shell users ``airflow-kedro-mlflow promote``, DAGs the thin
``MlflowPromoteModelOperator``.

Two promotions racing (two DAG runs finishing together) must not leave the alias on the worse version, and MLflow's
registry has no compare-and-set on aliases. So every promotion first records its offer on its version (tags
:data:`OFFER_ALIAS_TAG` and :data:`OFFER_TIME_TAG`), then decides and moves the alias, then *reconciles*: it reads
the alias again with every offer made in the last :data:`RECONCILE_WINDOW_S` seconds and moves the alias to the best
of them. Whichever racer moves the alias last reconciles after its move, and every other racer's offer was recorded
before that racer's own move, so the last reconciliation sees all of them: the alias ends on the best version.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from airflow_kedro_mlflow.exceptions import PromotionError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from airflow_kedro_mlflow.tracking import TrackingConfig

logger = logging.getLogger(__name__)

#: Model version tags written on the compared version.
DECISION_TAG = "promotion.decision"
REASON_TAG = "promotion.reason"
#: Tags recording that a version was offered for an alias, and when (epoch milliseconds): read by reconciliation.
OFFER_ALIAS_TAG = "promotion.offered_for"
OFFER_TIME_TAG = "promotion.offered_at_ms"
#: How far back reconciliation looks for racing offers. A promotion takes seconds; older offers are history, and an
#: alias a person moved since then by hand is respected.
RECONCILE_WINDOW_S = 600

PROMOTED = "promoted"
KEPT_CHAMPION = "kept_champion"
ALREADY_CHAMPION = "already_champion"

_MAX_RECONCILE_ROUNDS = 5


@dataclass(frozen=True)
class PromotionDecision:
    """What a promotion decided and why: the operator's XCom ``return_value`` and the CLI's ``--json`` output."""

    decision: str
    reason: str
    registered_model_name: str
    version: str
    alias: str
    metric: str
    value: float
    champion_version: str | None
    champion_value: float | None

    @property
    def alias_moved(self) -> bool:
        """True when this promotion moved the alias (downstream consumers should pick up a new model)."""
        return self.decision == PROMOTED

    def to_xcom(self) -> dict[str, Any]:
        """Return the decision as a JSON-safe dict."""
        return asdict(self)


def promote(
    registered_model_name: str,
    version: str | int,
    *,
    metric: str,
    tracking: TrackingConfig,
    alias: str = "champion",
    greater_is_better: bool = True,
) -> PromotionDecision:
    """Compare ``version`` with the holder of ``alias`` on ``tracking``'s server; move the alias if it wins.

    :raises PromotionError: the version does not exist, or its run has no ``metric``.
    :raises ModelRegistrationError: ``alias`` is not a valid alias (checked before the version is tagged).
    :raises MlflowConnectionError: the server refused the credentials.
    :raises MlflowServerUnavailableError: the server cannot be reached.
    """
    from mlflow.exceptions import MlflowException

    from airflow_kedro_mlflow.tracking.registry import validate_aliases

    # MLflow refuses a bad alias only when it is moved, after the offer tags were written: check it first.
    validate_aliases([alias], registered_model_name)
    with tracking.activate():
        try:
            return decide_promotion(
                tracking.client(),
                registered_model_name,
                str(version),
                metric=metric,
                alias=alias,
                greater_is_better=greater_is_better,
            )
        except (MlflowException, OSError) as exc:
            raise tracking.connection_error(exc) from exc


def decide_promotion(
    client: MlflowClient,
    registered_model_name: str,
    version: str,
    *,
    metric: str,
    alias: str = "champion",
    greater_is_better: bool = True,
) -> PromotionDecision:
    """Compare ``version`` with the holder of ``alias``, move the alias if it wins (race-safe), and tag ``version``.

    Rules: no holder yet -> promote; strictly better -> promote; a tie or worse -> keep the holder; a holder whose run
    lacks the metric loses, with a warning and the reason in the :data:`REASON_TAG` tag. Only "the model has no
    such alias" means "no champion": any other registry error is raised, never read as an empty registry.

    :raises PromotionError: the version does not exist, or its run has no ``metric``.
    :raises mlflow.exceptions.MlflowException: the registry failed (auth, network): the caller wraps it.
    """
    candidate = _model_version(client, registered_model_name, version)
    value = _run_metric(client, candidate.run_id, metric)
    if value is None:
        raise PromotionError(
            f"metric {metric!r} is absent from run {candidate.run_id} of {registered_model_name!r} version "
            f"{version}, so it cannot be compared. Log it in the training pipeline (mlflow.log_metric) or choose "
            "a metric the run has."
        )
    client.set_model_version_tag(registered_model_name, version, OFFER_ALIAS_TAG, alias)
    client.set_model_version_tag(registered_model_name, version, OFFER_TIME_TAG, str(_now_ms()))

    holder = _alias_holder(client, registered_model_name, alias)
    champion = None if holder is None else _model_version(client, registered_model_name, holder)
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
        final_holder = _reconcile(client, registered_model_name, alias, metric, greater_is_better)
        if final_holder != str(version):
            decision = KEPT_CHAMPION
            reason = f"a racing promotion of version {final_holder} had a better {metric}; it keeps alias {alias!r}"
            logger.warning("%s version %s: %s", registered_model_name, version, reason)
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


def _reconcile(client: MlflowClient, name: str, alias: str, metric: str, greater_is_better: bool) -> str | None:
    """Move ``alias`` to the best of its holder and of the recent offers; return the version holding it at the end."""
    holder = _alias_holder(client, name, alias)
    for _ in range(_MAX_RECONCILE_ROUNDS):
        best = holder
        best_value = None if holder is None else _version_metric(client, name, holder, metric)
        for offered, offered_value in _recent_offers(client, name, alias, metric):
            if offered == best or offered_value is None:
                continue
            if best is None or best_value is None or _better(offered_value, best_value, greater_is_better):
                best, best_value = offered, offered_value
        if best is None or best == holder:
            return holder
        logger.info("Reconciling racing promotions of %s: alias %r moves to version %s", name, alias, best)
        client.set_registered_model_alias(name, alias, best)
        holder = _alias_holder(client, name, alias)
    return holder


def _recent_offers(client: MlflowClient, name: str, alias: str, metric: str) -> list[tuple[str, float | None]]:
    escaped_name, escaped_alias = name.replace("'", "\\'"), alias.replace("'", "\\'")
    versions = client.search_model_versions(f"name = '{escaped_name}' AND tags.`{OFFER_ALIAS_TAG}` = '{escaped_alias}'")
    cutoff = _now_ms() - RECONCILE_WINDOW_S * 1000
    offers = []
    for found in versions:
        offered_at = (found.tags or {}).get(OFFER_TIME_TAG, "")
        if offered_at.isdigit() and int(offered_at) >= cutoff:
            offers.append((str(found.version), _run_metric(client, found.run_id, metric)))
    return sorted(offers, key=lambda offer: int(offer[0]))


def _better(value: float, champion_value: float, greater_is_better: bool) -> bool:
    """Strictly better: a tie keeps the champion, so an equal retrain never churns the serving version."""
    if math.isnan(value):
        return False
    if math.isnan(champion_value):
        return True
    return value > champion_value if greater_is_better else value < champion_value


def _model_version(client: MlflowClient, name: str, version: str) -> ModelVersion:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, version)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        raise PromotionError(
            f"registered model {name!r} has no version {version!r}; check the name and version that the modelify "
            "task returned."
        ) from exc


def _version_metric(client: MlflowClient, name: str, version: str, metric: str) -> float | None:
    return _run_metric(client, _model_version(client, name, version).run_id, metric)


def _run_metric(client: MlflowClient, run_id: str | None, metric: str) -> float | None:
    if not run_id:
        return None
    value = client.get_run(run_id).data.metrics.get(metric)
    return None if value is None else float(value)


def _alias_holder(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version holding ``alias``, or None when none does. Read from the registered model's alias map, so only a
    missing alias means "no champion": a failed request raises instead of promoting by mistake."""
    holder = client.get_registered_model(name).aliases.get(alias)
    return None if holder is None else str(holder)


def _now_ms() -> int:
    return int(time.time() * 1000)


__all__ = [
    "ALREADY_CHAMPION",
    "KEPT_CHAMPION",
    "PROMOTED",
    "PromotionDecision",
    "decide_promotion",
    "promote",
]
