"""Registering once per idempotency key, reconciling racers, cleaning up what earlier tries left (sqlite store).

The races themselves run as real processes in tests/integration/test_races_and_kills.py; here each racer's view is
set up in a real store (versions and logged models as concurrent tries leave them), so every branch is checked in
milliseconds. Logged models are created and finalized with MLflow's own client calls: registering and reconciling
only read their metadata, never their files.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus

from airflow_kedro_mlflow.exceptions import MlflowRunNotFoundError
from airflow_kedro_mlflow.modelify.build import register_logged_model
from airflow_kedro_mlflow.modelify.idempotency import discard_unfinished, reuse_logged_model
from airflow_kedro_mlflow.modelify.result import ModelifyResult
from airflow_kedro_mlflow.tracking import TrackingConfig
from airflow_kedro_mlflow.tracking.registry import (
    find_version,
    reconcile_logged_models,
    reconcile_version,
    register_version,
    version_model_id,
)
from airflow_kedro_mlflow.tracking.runs import run_scope
from airflow_kedro_mlflow.tracking.tags import IDEMPOTENCY_TAG, TRY_NUMBER_TAG

TOKEN = "a" * 64
NAME = "clf"


@pytest.fixture
def client(tracking_uri: str) -> Iterator[MlflowClient]:
    mlflow.set_tracking_uri(tracking_uri)
    yield MlflowClient(tracking_uri)


@pytest.fixture
def run_id(client: MlflowClient) -> str:
    run = client.create_run(client.create_experiment("exp"))
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def logged_model(client: MlflowClient, run_id: str, *, status: str = "READY", try_number: int | None = None) -> str:
    """A logged model of the idempotency key, as a try leaves it: READY, or PENDING/FAILED when it died uploading."""
    experiment_id = client.get_run(run_id).info.experiment_id
    tags = {IDEMPOTENCY_TAG: TOKEN}
    if try_number is not None:
        tags[TRY_NUMBER_TAG] = str(try_number)
    model_id = client.create_logged_model(experiment_id, name="model", source_run_id=run_id, tags=tags).model_id
    if status != "PENDING":
        client.finalize_logged_model(model_id, LoggedModelStatus(status))
    time.sleep(0.002)  # creation timestamps are in ms: keep "created earlier" unambiguous
    return str(model_id)


def register(model_id: str, token: str = TOKEN):
    return mlflow.register_model(f"models:/{model_id}", NAME, tags={IDEMPOTENCY_TAG: token})


def live_model_ids(client: MlflowClient, run_id: str) -> list[str]:
    experiment_id = client.get_run(run_id).info.experiment_id
    return sorted(model.model_id for model in client.search_logged_models([experiment_id]))


def version_numbers(client: MlflowClient) -> list[str]:
    return sorted(str(v.version) for v in client.search_model_versions(f"name = '{NAME}'"))


# -- versions ----------------------------------------------------------------------------------------------------------


def test_register_version_reuses_the_version_of_the_key(client, run_id):
    first = register_version(client, logged_model(client, run_id), NAME, tags={IDEMPOTENCY_TAG: TOKEN})
    again = register_version(client, logged_model(client, run_id), NAME, tags={IDEMPOTENCY_TAG: TOKEN})

    assert str(again.version) == str(first.version) == "1"
    assert version_numbers(client) == ["1"]


def test_racer_whose_version_lost_deletes_it_and_reports_the_winner(client, run_id, caplog):
    # both racers found no version for the key, then both registered one
    first = register(logged_model(client, run_id))
    second = register(logged_model(client, run_id))

    with caplog.at_level(logging.WARNING):
        loser_sees = reconcile_version(client, NAME, TOKEN, second)
    winner_sees = reconcile_version(client, NAME, TOKEN, first)

    assert str(loser_sees.version) == str(winner_sees.version) == str(first.version) == "1"
    assert version_numbers(client) == ["1"]
    assert "deleting this try's version 2" in caplog.text


def test_versions_of_another_key_are_not_reconciled(client, run_id):
    register(logged_model(client, run_id), token="b" * 64)
    own = register(logged_model(client, run_id))

    assert str(reconcile_version(client, NAME, TOKEN, own).version) == "2"
    assert version_numbers(client) == ["1", "2"]
    assert find_version(client, "no_such_model", TOKEN) is None


def test_version_model_id_is_the_logged_model_it_was_registered_from(client, run_id):
    model_id = logged_model(client, run_id)

    version = register(model_id)

    assert version_model_id(version) == model_id
    assert version_model_id(client.get_model_version(NAME, str(version.version))) == model_id
    assert version.run_id == run_id  # promotion reads the metrics of the training run from here


def test_register_logged_model_reports_and_keeps_only_the_model_of_the_winning_version(client, run_id):
    # A racer whose model was created later but finished first registered version 1 with it; this try's own model
    # (READY, oldest, so it kept it when reconciling logged models) must give way to the version.
    own = logged_model(client, run_id)
    racer = logged_model(client, run_id)
    register(racer)
    result = ModelifyResult(model_uri=f"models:/{own}", run_id=run_id, experiment_id="0", model_id=own)

    register_logged_model(result, NAME, ["champion"], tags={IDEMPOTENCY_TAG: TOKEN}, client=client)

    assert (result.version, result.model_id) == ("1", racer)
    assert result.model_uri == f"models:/{NAME}/1"
    assert live_model_ids(client, run_id) == [racer]
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"


# -- logged models -----------------------------------------------------------------------------------------------------


def test_reconcile_logged_models_keeps_the_oldest_ready_model(client, run_id):
    oldest = logged_model(client, run_id)
    own = logged_model(client, run_id)

    assert reconcile_logged_models(client, client.get_run(run_id).info.experiment_id, TOKEN, own) == oldest
    assert live_model_ids(client, run_id) == [oldest]


def test_reconcile_logged_models_waits_for_an_older_racer_still_uploading(client, run_id):
    experiment_id = client.get_run(run_id).info.experiment_id
    older = logged_model(client, run_id, status="PENDING")
    own = logged_model(client, run_id)
    finisher = threading.Timer(0.5, client.finalize_logged_model, (older, LoggedModelStatus.READY))
    finisher.start()
    try:
        winner = reconcile_logged_models(client, experiment_id, TOKEN, own, wait_s=30, poll_s=0.05)
    finally:
        finisher.join()

    assert winner == older
    assert live_model_ids(client, run_id) == [older]


def test_reconcile_logged_models_gives_up_waiting_on_an_abandoned_model(client, run_id):
    experiment_id = client.get_run(run_id).info.experiment_id
    abandoned = logged_model(client, run_id, status="PENDING")
    own = logged_model(client, run_id)

    assert reconcile_logged_models(client, experiment_id, TOKEN, own, wait_s=0.2, poll_s=0.05) == own
    assert live_model_ids(client, run_id) == sorted([abandoned, own])


def test_discard_unfinished_deletes_only_what_earlier_tries_left_unfinished(client, run_id):
    experiment_id = client.get_run(run_id).info.experiment_id
    pending_try_1 = logged_model(client, run_id, status="PENDING", try_number=1)
    failed_try_1 = logged_model(client, run_id, status="FAILED", try_number=1)
    ready_try_1 = logged_model(client, run_id, try_number=1)
    racer_try_2 = logged_model(client, run_id, status="PENDING", try_number=2)  # a racing try of the same number

    discarded = discard_unfinished(client, experiment_id, TOKEN, 2)

    assert sorted(discarded) == sorted([pending_try_1, failed_try_1])
    assert live_model_ids(client, run_id) == sorted([ready_try_1, racer_try_2])


def test_discard_unfinished_without_try_numbers_keeps_recent_models(client, run_id):
    experiment_id = client.get_run(run_id).info.experiment_id
    recent = logged_model(client, run_id, status="PENDING")

    assert discard_unfinished(client, experiment_id, TOKEN, None) == []
    assert live_model_ids(client, run_id) == [recent]


def test_reuse_skips_and_deletes_a_model_whose_run_was_deleted(client, run_id, tracking_uri):
    # modelify into a new run deletes that run when registering fails; the model it kept must not be reused with it
    experiment_id = client.get_run(run_id).info.experiment_id
    orphan = logged_model(client, run_id)
    client.delete_run(run_id)
    tracking = TrackingConfig(tracking_uri=tracking_uri)

    reused = reuse_logged_model(
        client,
        experiment_id=experiment_id,
        token=TOKEN,
        registered_model_name=NAME,
        aliases=[],
        tags={},
        tracking=tracking,
    )

    assert reused is None
    assert orphan not in live_model_ids(client, run_id)
    assert client.search_registered_models() == []


def test_reuse_refuses_a_model_of_the_key_without_a_source_run(client, run_id, tracking_uri):
    # modelify always logs next to a run: a model of the key without one was made elsewhere, and a result without a
    # run id would reach XCom and the run link as None
    experiment_id = client.get_run(run_id).info.experiment_id
    stray = client.create_logged_model(experiment_id, name="model", tags={IDEMPOTENCY_TAG: TOKEN}).model_id
    client.finalize_logged_model(stray, LoggedModelStatus.READY)

    with pytest.raises(MlflowRunNotFoundError, match=f"Logged model {stray} .* names no source run"):
        reuse_logged_model(
            client,
            experiment_id=experiment_id,
            token=TOKEN,
            registered_model_name=None,
            aliases=[],
            tags={},
            tracking=TrackingConfig(tracking_uri=tracking_uri),
        )


# -- cleanup never hides the error -------------------------------------------------------------------------------------


def test_run_scope_raises_the_blocks_error_when_the_run_cannot_be_marked_failed(client, caplog):
    experiment_id = client.create_experiment("scoped")

    with (
        caplog.at_level(logging.WARNING),
        pytest.raises(ValueError, match="the block's own error"),
        run_scope(client, experiment_id=experiment_id) as run,
    ):
        client.delete_run(run.info.run_id)  # MLflow now refuses to end it: the cleanup fails
        raise ValueError("the block's own error")

    assert f"Could not mark MLflow run {run.info.run_id} FAILED" in caplog.text
    assert mlflow.active_run() is None
