"""Assets of MLflow registered models: the URI scheme, its handler and factory, the DAG-parse-time helper."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from airflow.sdk import Asset, AssetAlias

from airflow_kedro_mlflow.assets import (
    EVENT_EXTRA_KEYS,
    MODEL_ALIAS_OUTLET,
    create_asset,
    emit_model_alias_events,
    mlflow_model_asset,
    model_event_extra,
    sanitize_uri,
)
from airflow_kedro_mlflow.exceptions import MlflowConnectionError, ModelRegistrationError
from airflow_kedro_mlflow.get_provider_info import get_provider_info
from airflow_kedro_mlflow.operators.kedro import KedroModelifyOperator, KedroTrainingOperator
from airflow_kedro_mlflow.operators.mlflow import MlflowPromoteModelOperator
from airflow_kedro_mlflow.tracking import TrackingConfig
from tests.unit.airflow.conftest import RecordingTaskInstance, make_context


@pytest.mark.parametrize(
    ("tracking_uri", "expected"),
    [
        ("http://127.0.0.1:5000", "mlflow-model://127.0.0.1:5000/kedro_classifier@champion"),
        ("http://127.0.0.1:5000/", "mlflow-model://127.0.0.1:5000/kedro_classifier@champion"),
        ("HTTP://admin:s3cret@MLflow.Internal", "mlflow-model://mlflow.internal:80/kedro_classifier@champion"),
        (
            "https://mlflow.example.com/mlflow/",
            "mlflow-model://mlflow.example.com:443/mlflow/kedro_classifier@champion",
        ),
        ("http://[::1]:5000", "mlflow-model://[::1]:5000/kedro_classifier@champion"),
        ("sqlite:////opt/mlflow/mlflow.db", "mlflow-model://sqlite/opt/mlflow/mlflow.db/kedro_classifier@champion"),
        ("postgresql://u:pw@DB:5432/mlflow", "mlflow-model://postgresql/db:5432/mlflow/kedro_classifier@champion"),
        ("file:///srv/ml runs", "mlflow-model://file/srv/ml%20runs/kedro_classifier@champion"),
        ("databricks", "mlflow-model://databricks/kedro_classifier@champion"),
    ],
)
def test_asset_uri_names_the_registry_without_credentials(tracking_uri, expected):
    asset = create_asset(registered_model_name="kedro_classifier", alias="champion", tracking_uri=tracking_uri)
    assert (asset.uri, asset.name) == (expected, expected)
    assert "s3cret" not in asset.uri and "pw" not in asset.uri


def test_registry_uri_names_the_asset_when_it_differs_from_tracking():
    asset = create_asset(
        registered_model_name="m", alias="champion", tracking_uri="http://t:5000", registry_uri="http://r:5001"
    )
    assert asset.uri == "mlflow-model://r:5001/m@champion"


def test_handler_is_registered_and_makes_spellings_of_one_alias_one_asset():
    (entry,) = get_provider_info()["asset-uris"]
    assert entry == {
        "schemes": ["mlflow-model"],
        "handler": "airflow_kedro_mlflow.assets.sanitize_uri",
        "factory": "airflow_kedro_mlflow.assets.create_asset",
    }
    canonical = "mlflow-model://mlflow.internal:5000/kedro_classifier@champion"
    assert Asset(uri="MLflow-Model://MLFLOW.internal:5000/kedro_classifier@champion/").uri == canonical
    assert Asset(uri="mlflow-model://mlflow.internal:5000/kedro_classifier@%63hampion").uri == canonical
    assert Asset(uri=canonical).normalized_uri == canonical


def test_handler_is_idempotent_and_encodes_unicode_aliases():
    once = sanitize_uri(urlsplit("mlflow-model://h:1/store path/m@été"))
    assert once.geturl() == "mlflow-model://h:1/store%20path/m@%C3%A9t%C3%A9"
    assert sanitize_uri(urlsplit(once.geturl())) == once
    assert create_asset(registered_model_name="m", alias="été", tracking_uri="http://h:1/store path").uri == (
        once.geturl()
    )


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("mlflow-model://h:5000", "does not name a registered model alias"),
        ("mlflow-model://h:5000/kedro_classifier", "does not name a registered model alias"),
        ("mlflow-model://h:5000/@champion", "does not name a registered model alias"),
        ("mlflow-model:///kedro_classifier@champion", "does not name a registered model alias"),
        ("mlflow-model://h:5000/kedro classifier@champion", "'kedro classifier' is not a valid registered model"),
        ("mlflow-model://h:5000/kedro_classifier@latest", "alias 'latest' is reserved"),
        ("mlflow-model://h:5000/kedro_classifier@v3", "alias 'v3' is reserved"),
    ],
)
def test_malformed_asset_uri_is_refused_naming_what_is_wrong(uri, message):
    with pytest.raises(ModelRegistrationError, match=re.escape(message)):
        Asset(uri=uri)


@pytest.mark.parametrize(
    ("tracking_uri", "message"),
    [
        ("sqlite:///mlflow.db", "relative sqlite path"),
        ("mlruns", "is not an absolute URI"),
        ("http:///nohost", "has no host"),
    ],
)
def test_store_that_is_not_one_place_for_every_worker_is_refused(tracking_uri, message):
    with pytest.raises(MlflowConnectionError, match=re.escape(message)):
        create_asset(registered_model_name="m", tracking_uri=tracking_uri)


def test_helper_reads_the_connection_at_parse_time_without_credentials(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT",
        '{"conn_type": "mlflow", "host": "mlflow.internal", "port": 5000, "login": "admin", "password": "s3cret"}',
    )
    asset = mlflow_model_asset("kedro_classifier")
    assert asset.uri == "mlflow-model://mlflow.internal:5000/kedro_classifier@champion"
    assert "s3cret" not in repr(asset)


def test_helper_with_an_explicit_tracking_uri_reads_no_connection():
    asset = mlflow_model_asset("kedro_classifier", "challenger", tracking_uri="http://mlflow.internal:5000")
    assert asset.uri == "mlflow-model://mlflow.internal:5000/kedro_classifier@challenger"


def test_helper_without_a_configured_server_says_how_to_configure_one():
    with pytest.raises(MlflowConnectionError, match="mlflow_default"):
        mlflow_model_asset("kedro_classifier")


@pytest.mark.parametrize(
    ("name", "alias", "message"),
    [("kedro/classifier", "champion", "'/'"), ("kedro_classifier", "latest", "reserved"), ("", "champion", "empty")],
)
def test_helper_validates_name_and_alias_before_anything_else(name, alias, message):
    with pytest.raises(ModelRegistrationError, match=re.escape(message)):
        mlflow_model_asset(name, alias)  # no connection is configured: the name is checked first


def test_event_extra_has_exactly_the_documented_keys_and_no_credentials():
    extra = model_event_extra("kedro_classifier", "champion", 3, "abc123", "http://admin:s3cret@mlflow.internal:5000")
    assert tuple(extra) == EVENT_EXTRA_KEYS
    assert extra == {
        "registered_model_name": "kedro_classifier",
        "alias": "champion",
        "version": "3",
        "model_uri": "models:/kedro_classifier/3",
        "run_id": "abc123",
        "tracking_uri": "http://mlflow.internal:5000",
    }


def test_modelify_and_promote_declare_the_alias_outlet_once_and_training_does_not():
    modelify = KedroModelifyOperator(task_id="modelify", training_task_id="train", outlets=[Asset("other")])
    promote = MlflowPromoteModelOperator(task_id="promote", metric="accuracy", modelify_task_id="modelify")
    training = KedroTrainingOperator(task_id="train", project_path="/project")
    assert modelify.outlets == [Asset("other"), MODEL_ALIAS_OUTLET]
    assert promote.outlets == [MODEL_ALIAS_OUTLET]
    assert training.outlets == []
    assert isinstance(MODEL_ALIAS_OUTLET, AssetAlias)


def test_outside_a_task_run_nothing_is_emitted_and_nothing_is_read():
    context = make_context(RecordingTaskInstance(task_id="promote"))
    tracking = TrackingConfig("http://127.0.0.1:9")  # nothing listens: a registry read would fail
    assert emit_model_alias_events(context, tracking, "m", "1", ["champion"], moved_now=True) == []
