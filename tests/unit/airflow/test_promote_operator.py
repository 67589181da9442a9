"""MlflowPromoteModelOperator against a real MLflow registry (sqlite): every rule of the champion comparison."""

from __future__ import annotations

import logging
import re

import pytest

from airflow_kedro_mlflow.exceptions import PromotionError, XComPayloadError
from airflow_kedro_mlflow.links.mlflow import MLFLOW_MODEL_VERSION_URL_KEY
from airflow_kedro_mlflow.operators.mlflow import (
    ALREADY_CHAMPION,
    DECISION_KEY,
    DECISION_TAG,
    KEPT_CHAMPION,
    PROMOTED,
    REASON_TAG,
    MlflowPromoteModelOperator,
    decide_promotion,
)
from tests.unit.airflow.conftest import RecordingTaskInstance, make_context


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory, new_mlflow_store) -> str:
    """One sqlite store for the module (creating one costs seconds); each test registers its own model."""
    return new_mlflow_store(tmp_path_factory.mktemp("promotion"))


@pytest.fixture(scope="module")
def shared_client(store_uri):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=store_uri, registry_uri=store_uri)


@pytest.fixture
def client(shared_client, request):
    """The shared client, with a registered model named after this test (see ``model``)."""
    shared_client.create_registered_model(request.node.name)
    return shared_client


@pytest.fixture
def model(request) -> str:
    """This test's registered model name."""
    return request.node.name


@pytest.fixture
def mlflow_conn(monkeypatch, store_uri) -> str:
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", f'{{"conn_type": "mlflow", "extra": {{"tracking_uri": "{store_uri}"}}}}'
    )
    return store_uri


def _version(client, model: str, metrics: dict[str, float]) -> str:
    """Register a version whose source run logged ``metrics`` (what training + modelify leave behind)."""
    experiment = client.get_experiment_by_name("promotion") or None
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("promotion")
    run = client.create_run(experiment_id)
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id)
    return str(client.create_model_version(model, f"{run.info.artifact_uri}/model", run_id=run.info.run_id).version)


def _tags(client, model: str, version: str) -> dict[str, str]:
    return client.get_model_version(model, version).tags


def _champion(client, model: str) -> str:
    return str(client.get_model_version_by_alias(model, "champion").version)


def test_first_version_is_promoted_when_no_champion_exists(client, model):
    version = _version(client, model, {"accuracy": 0.9})
    decision = decide_promotion(client, model, version, metric="accuracy")
    assert decision.decision == PROMOTED
    assert _champion(client, model) == version
    assert _tags(client, model, version)[DECISION_TAG] == PROMOTED
    assert "no version held alias 'champion'" in _tags(client, model, version)[REASON_TAG]


def test_better_version_takes_the_alias(client, model):
    old = _version(client, model, {"accuracy": 0.90})
    client.set_registered_model_alias(model, "champion", old)
    new = _version(client, model, {"accuracy": 0.95})
    decision = decide_promotion(client, model, new, metric="accuracy")
    assert (decision.decision, decision.champion_version, decision.champion_value) == (PROMOTED, old, 0.90)
    assert _champion(client, model) == new


def test_tie_keeps_the_champion(client, model):
    old = _version(client, model, {"accuracy": 0.9})
    client.set_registered_model_alias(model, "champion", old)
    new = _version(client, model, {"accuracy": 0.9})
    decision = decide_promotion(client, model, new, metric="accuracy")
    assert decision.decision == KEPT_CHAMPION
    assert _champion(client, model) == old
    assert _tags(client, model, new)[DECISION_TAG] == KEPT_CHAMPION


def test_lower_is_better_when_configured(client, model):
    old = _version(client, model, {"rmse": 2.0})
    client.set_registered_model_alias(model, "champion", old)
    worse = _version(client, model, {"rmse": 3.0})
    better = _version(client, model, {"rmse": 1.0})
    assert decide_promotion(client, model, worse, metric="rmse", greater_is_better=False).decision == KEPT_CHAMPION
    assert decide_promotion(client, model, better, metric="rmse", greater_is_better=False).decision == PROMOTED
    assert _champion(client, model) == better


def test_champion_without_the_metric_loses_with_a_warning_and_a_tag(client, model, caplog):
    old = _version(client, model, {"f1": 0.8})
    client.set_registered_model_alias(model, "champion", old)
    new = _version(client, model, {"accuracy": 0.5})
    with caplog.at_level(logging.WARNING, logger="airflow_kedro_mlflow.operators.mlflow"):
        decision = decide_promotion(client, model, new, metric="accuracy")
    assert decision.decision == PROMOTED
    assert _champion(client, model) == new
    assert f"champion version {old} has no metric 'accuracy'" in _tags(client, model, new)[REASON_TAG]
    assert any("has no metric 'accuracy'" in record.getMessage() for record in caplog.records)


def test_version_already_champion_is_left_alone(client, model):
    version = _version(client, model, {"accuracy": 0.9})
    client.set_registered_model_alias(model, "champion", version)
    assert decide_promotion(client, model, version, metric="accuracy").decision == ALREADY_CHAMPION
    assert _champion(client, model) == version


def test_candidate_without_the_metric_is_an_error_naming_metric_and_run(client, model):
    version = _version(client, model, {"f1": 0.8})
    run_id = client.get_model_version(model, version).run_id
    with pytest.raises(PromotionError, match=re.escape(f"metric 'accuracy' is absent from run {run_id}")):
        decide_promotion(client, model, version, metric="accuracy")
    with pytest.raises(Exception, match="not found"):
        _champion(client, model)


def test_unknown_version_is_an_error(client, model):
    with pytest.raises(PromotionError, match=re.escape(f"registered model '{model}' has no version '42'")):
        decide_promotion(client, model, "42", metric="accuracy")


def test_execute_reads_the_version_from_the_modelify_xcom_and_pushes_the_decision(client, model, mlflow_conn):
    version = _version(client, model, {"accuracy": 0.9})
    ti = RecordingTaskInstance(task_id="promote")
    ti.xcoms[("modelify", "return_value")] = {"registered_model_name": model, "version": version}
    operator = MlflowPromoteModelOperator(task_id="promote", modelify_task_id="modelify", metric="accuracy")
    result = operator.execute(make_context(ti))
    assert result["decision"] == PROMOTED
    assert result["version"] == version
    assert ti.xcoms[("promote", DECISION_KEY)] == PROMOTED
    assert ti.xcoms[("promote", MLFLOW_MODEL_VERSION_URL_KEY)] is None  # a sqlite store has no UI to link to
    assert _champion(client, model) == version


def test_explicit_name_and_version_need_no_xcom(client, model, mlflow_conn):
    version = _version(client, model, {"accuracy": 0.9})
    operator = MlflowPromoteModelOperator(
        task_id="promote", registered_model_name=model, version=int(version), metric="accuracy"
    )
    assert operator.execute(make_context(RecordingTaskInstance(task_id="promote")))["decision"] == PROMOTED


def test_missing_modelify_xcom_is_a_clear_error(mlflow_conn):
    operator = MlflowPromoteModelOperator(task_id="promote", modelify_task_id="modelify", metric="accuracy")
    with pytest.raises(XComPayloadError, match=re.escape("modelify task 'modelify' published no XCom")):
        operator.execute(make_context(RecordingTaskInstance(task_id="promote")))


def test_modelify_that_only_logged_has_no_version_to_promote(mlflow_conn):
    ti = RecordingTaskInstance(task_id="promote")
    ti.xcoms[("modelify", "return_value")] = {"registered_model_name": None, "version": None}
    operator = MlflowPromoteModelOperator(task_id="promote", modelify_task_id="modelify", metric="accuracy")
    with pytest.raises(PromotionError, match="logged its model without registering it"):
        operator.execute(make_context(ti))


def test_operator_needs_a_version_source():
    with pytest.raises(ValueError, match="pass modelify_task_id"):
        MlflowPromoteModelOperator(task_id="promote", metric="accuracy", registered_model_name="kedro_classifier")
