"""Provider metadata: valid against Airflow's schema, and discovered by Airflow's ProvidersManager."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import airflow
import jsonschema
import pytest

from airflow_kedro_mlflow import __version__
from airflow_kedro_mlflow.get_provider_info import get_provider_info

AIRFLOW_DIR = Path(airflow.__file__).parent


def _import(dotted: str) -> object:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_provider_info_is_valid_against_airflows_schema():
    schema = json.loads((AIRFLOW_DIR / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_package_name_and_version_match_the_distribution():
    info = get_provider_info()
    assert info["package-name"] == "airflow-kedro-mlflow"
    assert info["versions"] == [__version__]


def test_every_listed_module_and_class_imports():
    info = get_provider_info()
    for section in ("operators", "hooks"):
        for entry in info[section]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    for link in info["extra-links"]:
        assert _import(link)().name in {"MLflow run", "MLflow model version"}
    (conn,) = info["connection-types"]
    hook = _import(conn["hook-class-name"])
    assert conn["connection-type"] == hook.conn_type
    assert conn["hook-name"] == hook.hook_name


def test_connection_form_behaviour_is_valid_against_airflows_schema():
    (conn,) = get_provider_info()["connection-types"]
    behaviour = conn["ui-field-behaviour"]
    schema = json.loads((AIRFLOW_DIR / "customized_form_field_behaviours.schema.json").read_text())
    jsonschema.validate(
        {
            "hidden_fields": behaviour["hidden-fields"],
            "relabeling": behaviour["relabeling"],
            "placeholders": behaviour["placeholders"],
        },
        schema,
    )


def test_connection_form_fields_are_the_extras_the_hook_reads():
    (conn,) = get_provider_info()["connection-types"]
    assert sorted(conn["conn-fields"]) == [
        "insecure_tls",
        "max_retries",
        "registry_uri",
        "timeout",
        "tracking_uri",
        "ui_url",
    ]
    for name, field in conn["conn-fields"].items():
        assert field["label"], name
        assert "null" in field["schema"]["type"], name


@pytest.fixture
def providers_manager():
    from airflow.providers_manager import ProvidersManager

    return ProvidersManager()


@pytest.mark.slow
def test_airflow_discovers_the_provider_hook_form_and_links(providers_manager):
    assert "airflow-kedro-mlflow" in providers_manager.providers
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    hook = ProvidersManagerTaskRuntime().hooks["mlflow"]
    assert hook is not None
    assert hook.hook_class_name == "airflow_kedro_mlflow.hooks.mlflow.MlflowHook"
    assert hook.connection_id_attribute_name == "mlflow_conn_id"
    widgets = providers_manager.connection_form_widgets
    assert {"extra__mlflow__tracking_uri", "extra__mlflow__ui_url", "extra__mlflow__max_retries"} <= set(widgets)
    assert providers_manager.field_behaviours["mlflow"]["hidden_fields"] == ["extra"]
    assert {
        "airflow_kedro_mlflow.links.mlflow.MlflowRunLink",
        "airflow_kedro_mlflow.links.mlflow.MlflowModelVersionLink",
    } <= set(providers_manager.extra_links_class_names)


def test_ui_test_button_path_reaches_the_hook(monkeypatch, tmp_path, new_mlflow_store):
    """The API's "Test" exports the form as AIRFLOW_CONN_<random id>, builds the hook by conn_type, calls it."""
    from airflow.models.connection import Connection

    uri = new_mlflow_store(tmp_path)
    conn = Connection(conn_id="transient_test", conn_type="mlflow", extra=json.dumps({"tracking_uri": uri}))
    monkeypatch.setenv("AIRFLOW_CONN_TRANSIENT_TEST", conn.get_uri())
    hook = conn.get_hook()
    assert type(hook).__name__ == "MlflowHook"
    assert hook.mlflow_conn_id == "transient_test"
    assert conn.test_connection() == (True, f"Connected to the MLflow tracking server at {uri}")
