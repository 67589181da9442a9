"""promote(): the champion/challenger rules against a real MLflow registry (sqlite), and what is not "no champion".

Racing promotions in two real processes against a real ``mlflow server``, and rejected credentials, are in
tests/integration/test_promotion_races.py.
"""

from __future__ import annotations

import logging
import re
import time

import pytest
from mlflow import MlflowClient

from airflow_kedro_mlflow.exceptions import MlflowServerUnavailableError, PromotionError
from airflow_kedro_mlflow.promotion import (
    ALREADY_CHAMPION,
    DECISION_TAG,
    KEPT_CHAMPION,
    OFFER_ALIAS_TAG,
    OFFER_TIME_TAG,
    PROMOTED,
    REASON_TAG,
    RECONCILE_WINDOW_S,
    promote,
)
from airflow_kedro_mlflow.tracking import TrackingConfig
from tests.servers import free_port

MODEL = "classifier"


@pytest.fixture
def tracking(tracking_uri: str) -> TrackingConfig:
    return TrackingConfig(tracking_uri)


@pytest.fixture
def client(tracking: TrackingConfig) -> MlflowClient:
    client = tracking.client()
    client.create_registered_model(MODEL)
    return client


def register(client: MlflowClient, metrics: dict[str, float]) -> str:
    """Register a version of MODEL whose source run logged ``metrics`` (what training + modelify leave behind)."""
    experiment = client.get_experiment_by_name("promotion")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("promotion")
    run = client.create_run(experiment_id)
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id)
    return str(client.create_model_version(MODEL, f"{run.info.artifact_uri}/model", run_id=run.info.run_id).version)


def champion(client: MlflowClient) -> str | None:
    holder = client.get_registered_model(MODEL).aliases.get("champion")
    return None if holder is None else str(holder)


def test_no_champion_yet_promotes(client, tracking):
    version = register(client, {"accuracy": 0.8})

    decision = promote(MODEL, version, metric="accuracy", tracking=tracking)

    assert (decision.decision, decision.champion_version, decision.alias_moved) == (PROMOTED, None, True)
    assert champion(client) == version
    tags = client.get_model_version(MODEL, version).tags
    assert tags[DECISION_TAG] == PROMOTED
    assert tags[REASON_TAG] == "no version held alias 'champion'"


@pytest.mark.parametrize(
    ("candidate", "expected", "holder_after"),
    [(0.95, PROMOTED, "candidate"), (0.85, KEPT_CHAMPION, "champion"), (0.9, KEPT_CHAMPION, "champion")],
    ids=["better", "worse", "tie-keeps-the-champion"],
)
def test_candidate_against_the_champion(client, tracking, candidate, expected, holder_after):
    old = register(client, {"accuracy": 0.9})
    client.set_registered_model_alias(MODEL, "champion", old)
    new = register(client, {"accuracy": candidate})

    decision = promote(MODEL, new, metric="accuracy", tracking=tracking)

    assert (decision.decision, decision.champion_version, decision.champion_value) == (expected, old, 0.9)
    assert champion(client) == {"candidate": new, "champion": old}[holder_after]
    assert client.get_model_version(MODEL, new).tags[DECISION_TAG] == expected


def test_lower_is_better_when_asked(client, tracking):
    old = register(client, {"rmse": 2.0})
    client.set_registered_model_alias(MODEL, "champion", old)
    new = register(client, {"rmse": 1.5})

    assert promote(MODEL, new, metric="rmse", tracking=tracking, greater_is_better=False).decision == PROMOTED
    assert champion(client) == new


def test_champion_without_the_metric_loses_with_a_warning_and_a_tag(client, tracking, caplog):
    old = register(client, {"f1": 0.8})
    client.set_registered_model_alias(MODEL, "champion", old)
    new = register(client, {"accuracy": 0.5})

    with caplog.at_level(logging.WARNING, logger="airflow_kedro_mlflow.promotion"):
        decision = promote(MODEL, new, metric="accuracy", tracking=tracking)

    assert (decision.decision, decision.champion_version, decision.champion_value) == (PROMOTED, old, None)
    assert champion(client) == new
    reason = f"champion version {old} has no metric 'accuracy'"
    assert reason in client.get_model_version(MODEL, new).tags[REASON_TAG]
    assert any(reason in record.getMessage() for record in caplog.records)


def test_the_champion_itself_is_left_alone(client, tracking):
    version = register(client, {"accuracy": 0.9})
    client.set_registered_model_alias(MODEL, "champion", version)

    assert promote(MODEL, version, metric="accuracy", tracking=tracking).decision == ALREADY_CHAMPION
    assert champion(client) == version


@pytest.mark.parametrize(("name", "version"), [(MODEL, "42"), ("no_such_model", "1")])
def test_a_missing_version_is_a_promotion_error_and_moves_nothing(client, tracking, name, version):
    holder = register(client, {"accuracy": 0.9})
    client.set_registered_model_alias(MODEL, "champion", holder)

    with pytest.raises(PromotionError, match=re.escape(f"registered model '{name}' has no version '{version}'")):
        promote(name, version, metric="accuracy", tracking=tracking)
    assert champion(client) == holder


def test_a_candidate_without_the_metric_is_a_promotion_error_naming_its_run(client, tracking):
    version = register(client, {"f1": 0.8})
    run_id = client.get_model_version(MODEL, version).run_id

    with pytest.raises(PromotionError, match=re.escape(f"metric 'accuracy' is absent from run {run_id}")):
        promote(MODEL, version, metric="accuracy", tracking=tracking)
    assert champion(client) is None


def test_an_unreachable_server_is_an_error_never_no_champion():
    tracking = TrackingConfig(f"http://127.0.0.1:{free_port()}", max_retries=0, timeout=5)

    with pytest.raises(MlflowServerUnavailableError, match="Cannot reach the MLflow tracking server"):
        promote(MODEL, "1", metric="accuracy", tracking=tracking)


def test_a_better_racing_offer_keeps_the_alias_even_against_a_later_move(client, tracking):
    """A racer that offered a better version before this promotion moved the alias wins it back (reconcile)."""
    old = register(client, {"accuracy": 0.5})
    client.set_registered_model_alias(MODEL, "champion", old)
    better = register(client, {"accuracy": 0.9})
    # The better version's promotion recorded its offer; it has not moved the alias yet.
    client.set_model_version_tag(MODEL, better, OFFER_ALIAS_TAG, "champion")
    client.set_model_version_tag(MODEL, better, OFFER_TIME_TAG, str(int(time.time() * 1000)))
    worse = register(client, {"accuracy": 0.7})

    decision = promote(MODEL, worse, metric="accuracy", tracking=tracking)

    assert champion(client) == better
    assert decision.decision == KEPT_CHAMPION
    assert f"a racing promotion of version {better}" in decision.reason


def test_offers_older_than_the_window_are_history(client, tracking):
    """An alias moved back by hand since an old promotion is respected: only recent offers are reconciled."""
    old = register(client, {"accuracy": 0.5})
    client.set_registered_model_alias(MODEL, "champion", old)
    earlier = register(client, {"accuracy": 0.9})
    client.set_model_version_tag(MODEL, earlier, OFFER_ALIAS_TAG, "champion")
    stale_ms = int((time.time() - RECONCILE_WINDOW_S - 60) * 1000)
    client.set_model_version_tag(MODEL, earlier, OFFER_TIME_TAG, str(stale_ms))
    new = register(client, {"accuracy": 0.7})

    assert promote(MODEL, new, metric="accuracy", tracking=tracking).decision == PROMOTED
    assert champion(client) == new


def test_an_offer_for_another_alias_is_not_reconciled(client, tracking):
    better = register(client, {"accuracy": 0.9})
    client.set_model_version_tag(MODEL, better, OFFER_ALIAS_TAG, "staging")
    client.set_model_version_tag(MODEL, better, OFFER_TIME_TAG, str(int(time.time() * 1000)))
    new = register(client, {"accuracy": 0.7})

    assert promote(MODEL, new, metric="accuracy", tracking=tracking).decision == PROMOTED
    assert champion(client) == new
