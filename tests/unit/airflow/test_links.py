"""Extra links read the URL their operator pushed; Airflow stores the result for the UI when the task finishes.

A real ``XCom.get_value`` needs a running task (it asks the task supervisor), so here it is replaced by a lookup in
a dict; tests/integration/test_dags.py checks the stored links of real task runs.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from airflow_kedro_mlflow.links.mlflow import (
    MLFLOW_MODEL_VERSION_URL_KEY,
    MLFLOW_RUN_URL_KEY,
    MlflowModelVersionLink,
    MlflowRunLink,
)

TI_KEY = SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=1)


@pytest.fixture
def xcoms(monkeypatch) -> dict[str, object]:
    from airflow.sdk.execution_time import xcom

    stored: dict[str, object] = {}

    def get_value(*, ti_key, key):
        assert ti_key is TI_KEY
        return stored.get(key)

    monkeypatch.setattr(xcom.XCom, "get_value", staticmethod(get_value))
    return stored


def test_link_names_are_the_buttons_in_the_ui():
    assert MlflowRunLink().name == "MLflow run"
    assert MlflowModelVersionLink().name == "MLflow model version"


def test_run_link_returns_the_pushed_run_url(xcoms):
    xcoms[MLFLOW_RUN_URL_KEY] = "http://mlflow:5000/#/experiments/1/runs/abc"
    assert MlflowRunLink().get_link(None, ti_key=TI_KEY) == "http://mlflow:5000/#/experiments/1/runs/abc"


def test_model_version_link_returns_the_pushed_version_url(xcoms):
    xcoms[MLFLOW_MODEL_VERSION_URL_KEY] = "http://mlflow:5000/#/models/m/versions/3"
    assert MlflowModelVersionLink().get_link(None, ti_key=TI_KEY) == "http://mlflow:5000/#/models/m/versions/3"


def test_no_pushed_url_means_no_link(xcoms):
    assert MlflowRunLink().get_link(None, ti_key=TI_KEY) == ""
    assert MlflowModelVersionLink().get_link(None, ti_key=TI_KEY) == ""
