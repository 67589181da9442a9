"""MlflowHook: the mlflow connection -> TrackingConfig, fallbacks, errors, and the UI's Test button."""

from __future__ import annotations

import json
import re

import pytest

from airflow_kedro_mlflow.exceptions import MlflowConnectionError
from airflow_kedro_mlflow.hooks.mlflow import DEFAULT_MAX_RETRIES, MlflowHook
from tests.servers import free_port


def _conn(monkeypatch: pytest.MonkeyPatch, value: str | dict, conn_id: str = "mlflow_default") -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", value if isinstance(value, str) else json.dumps(value))


def test_hook_names_follow_the_provider_conventions():
    assert MlflowHook.conn_type == "mlflow"
    assert MlflowHook.default_conn_name == "mlflow_default"
    assert MlflowHook.conn_name_attr == "mlflow_conn_id"
    assert MlflowHook.hook_name == "MLflow"
    assert MlflowHook().mlflow_conn_id == "mlflow_default"


def test_uri_connection_gives_http_tracking_uri_and_basic_auth(monkeypatch):
    _conn(monkeypatch, "mlflow://admin:s3cr%40t-pass@mlflow.internal:5000")
    tracking = MlflowHook().get_tracking_config()
    assert tracking.tracking_uri == "http://mlflow.internal:5000"
    assert tracking.username == "admin"
    assert tracking.password == "s3cr@t-pass"
    assert tracking.registry_uri is None
    assert tracking.max_retries == DEFAULT_MAX_RETRIES
    assert "s3cr@t-pass" not in repr(tracking)


def test_https_schema_port_and_path_build_the_tracking_uri(monkeypatch):
    _conn(monkeypatch, {"conn_type": "mlflow", "schema": "https", "host": "tools.example.com/mlflow", "port": 8443})
    assert MlflowHook().get_tracking_config().tracking_uri == "https://tools.example.com:8443/mlflow"


def test_host_may_be_a_whole_url(monkeypatch):
    _conn(monkeypatch, {"conn_type": "mlflow", "host": "https://tools.example.com/mlflow/"})
    assert MlflowHook().get_tracking_config().tracking_uri == "https://tools.example.com/mlflow"


def test_password_with_empty_login_is_a_token(monkeypatch):
    _conn(monkeypatch, {"conn_type": "mlflow", "host": "mlflow.internal", "password": "tok-123456"})
    tracking = MlflowHook().get_tracking_config()
    assert tracking.username is None
    assert tracking.password == "tok-123456"
    assert tracking._authorization_header() == "Bearer tok-123456"


def test_extras_from_a_uri_are_coerced_to_their_types(monkeypatch):
    _conn(
        monkeypatch,
        "mlflow://mlflow.internal:5000/https?registry_uri=http%3A%2F%2Fregistry%3A5001"
        "&ui_url=https%3A%2F%2Fmlflow.example.com&insecure_tls=true&timeout=7.5&max_retries=0",
    )
    tracking = MlflowHook().get_tracking_config()
    assert tracking.tracking_uri == "https://mlflow.internal:5000"
    assert tracking.registry_uri == "http://registry:5001"
    assert tracking.ui_url == "https://mlflow.example.com"
    assert tracking.insecure_tls is True
    assert tracking.timeout == 7.5
    assert tracking.max_retries == 0
    assert tracking.run_url("1", "abc") == "https://mlflow.example.com/#/experiments/1/runs/abc"


def test_tracking_uri_extra_overrides_host(monkeypatch, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _conn(monkeypatch, {"conn_type": "mlflow", "host": "ignored", "extra": {"tracking_uri": uri}})
    tracking = MlflowHook().get_tracking_config()
    assert tracking.tracking_uri == uri
    assert tracking.run_url("1", "abc") is None


def test_missing_default_connection_falls_back_to_mlflow_tracking_uri(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    assert MlflowHook().get_tracking_config().tracking_uri == "http://from-env:5000"


def test_no_connection_and_no_env_var_is_a_clear_error():
    with pytest.raises(MlflowConnectionError, match=r"'mlflow_default' does not exist and MLFLOW_TRACKING_URI"):
        MlflowHook().get_tracking_config()


def test_named_connection_that_does_not_exist_is_an_error_even_with_env_var(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    with pytest.raises(MlflowConnectionError, match=re.escape("connection 'mlflow_prod' does not exist")):
        MlflowHook("mlflow_prod").get_tracking_config()


def test_connection_without_host_names_the_connection(monkeypatch):
    _conn(monkeypatch, {"conn_type": "mlflow", "login": "admin"}, conn_id="mlflow_team")
    with pytest.raises(MlflowConnectionError, match=re.escape("connection 'mlflow_team' has no host")):
        MlflowHook("mlflow_team").get_tracking_config()


@pytest.mark.parametrize(
    ("conn", "message"),
    [
        ({"host": "h", "schema": "ftp"}, "has schema 'ftp'"),
        ({"host": "ftp://h"}, "with scheme 'ftp'"),
        ({"host": "https://h", "schema": "http"}, "has schema 'http' but its host says 'https'"),
        ({"host": "h", "extra": {"insecure_tls": "maybe"}}, "'insecure_tls'='maybe'; expected true or false"),
        ({"host": "h", "extra": {"timeout": "soon"}}, "'timeout'='soon'; expected a positive number"),
        ({"host": "h", "extra": {"timeout": 0}}, "'timeout'=0; expected a positive number"),
        ({"host": "h", "extra": {"max_retries": -1}}, "'max_retries'=-1; expected a whole number"),
        ({"host": "h", "extra": {"tracking_uri": 5}}, "'tracking_uri'=5; expected a string"),
        ({"extra": {"tracking_uri": "http://u:p@h:5000"}}, "credentials inside its tracking URI"),
    ],
)
def test_unusable_fields_name_the_field(monkeypatch, conn, message):
    _conn(monkeypatch, {"conn_type": "mlflow", **conn})
    with pytest.raises(MlflowConnectionError, match=re.escape(message)):
        MlflowHook().get_tracking_config()


def test_get_conn_is_a_client_bound_to_the_connection(monkeypatch, tmp_path, new_mlflow_store):
    uri = new_mlflow_store(tmp_path)
    _conn(monkeypatch, {"conn_type": "mlflow", "extra": {"tracking_uri": uri}})
    client = MlflowHook().get_conn()
    assert client.tracking_uri == uri


def test_test_connection_succeeds_against_a_real_store(monkeypatch, tmp_path, new_mlflow_store):
    uri = new_mlflow_store(tmp_path)
    _conn(monkeypatch, {"conn_type": "mlflow", "extra": {"tracking_uri": uri}})
    ok, message = MlflowHook().test_connection()
    assert ok, message
    assert uri in message


def test_test_connection_reports_an_unreachable_server_without_the_password(monkeypatch):
    port = free_port()  # nothing listens there
    _conn(
        monkeypatch,
        {"conn_type": "mlflow", "host": "127.0.0.1", "port": port, "login": "admin", "password": "hunter2-secret",
         "extra": {"max_retries": 0, "timeout": 2}},
    )  # fmt: skip
    ok, message = MlflowHook().test_connection()
    assert not ok
    assert f"http://127.0.0.1:{port}" in message
    assert "hunter2-secret" not in message
