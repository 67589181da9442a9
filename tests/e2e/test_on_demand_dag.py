"""The example on-demand DAG on a real deployment: Trigger-form body over REST, registry state, no shared disk, serving.

One run (the session fixture ``on_demand_run``) is triggered with ``C=0.5``, ``threshold=0.4`` and the Kedro env
``no_shared_disk``, whose artifacts exist only in the training task's memory; each test checks one promise about it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.airflow_deployment import AirflowDeployment
from tests.e2e.scenarios import (
    NO_SHARED_DISK_ENV,
    ON_DEMAND_DAG,
    ON_DEMAND_FORM,
    CompletedRun,
    example_rows,
    invocations,
    served_model,
)
from tests.servers import MlflowServer

MODEL_NAME = ON_DEMAND_FORM["registered_model_name"]


def test_form_params_reach_kedro_as_typed_values(on_demand_run: CompletedRun, mlflow_admin: Any) -> None:
    train = on_demand_run.xcom["train"]
    assert on_demand_run.conf["C"] == 0.5
    assert {k: train["runtime_params"][k] for k in ("C", "threshold")} == {"C": 0.5, "threshold": 0.4}
    assert type(train["runtime_params"]["C"]) is float  # render_template_as_native_obj: a number, not "0.5"
    assert train["env"] == NO_SHARED_DISK_ENV
    assert train["pipeline_name"] == "training"
    assert train["input_name"] == "instances"
    run = mlflow_admin.get_run(train["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["C"] == "0.5"
    assert run.data.params["threshold"] == "0.4"
    assert 0.9 < run.data.metrics["accuracy"] <= 1.0
    assert run.data.tags["airflow.dag_id"] == ON_DEMAND_DAG
    assert run.data.tags["airflow.dag_run_id"] == on_demand_run.dag_run_id


def test_version_registered_with_alias_and_lineage_tags(on_demand_run: CompletedRun, mlflow_admin: Any) -> None:
    train, modelify, promote = (on_demand_run.xcom[t] for t in ("train", "modelify", "promote"))
    assert modelify["registered_model_name"] == MODEL_NAME
    assert modelify["version"] == "1"
    assert modelify["aliases"] == ["challenger"]
    assert modelify["run_id"] == train["run_id"]
    assert modelify["model_uri"] == f"models:/{MODEL_NAME}/1"
    assert modelify["reused"] is False

    version = mlflow_admin.get_model_version(MODEL_NAME, "1")
    assert version.status == "READY"
    assert version.run_id == train["run_id"]
    assert {
        "airflow.dag_id": ON_DEMAND_DAG,
        "airflow.dag_run_id": on_demand_run.dag_run_id,
        "airflow.task_id": "modelify",
        "airflow.try_number": "1",
        "kedro.env": NO_SHARED_DISK_ENV,
        "kedro.pipeline_name": "training",
    }.items() <= version.tags.items()
    assert mlflow_admin.get_model_version_by_alias(MODEL_NAME, "challenger").version == "1"
    # First version of the model: there is no champion yet, so promotion gives it the alias.
    assert mlflow_admin.get_model_version_by_alias(MODEL_NAME, "champion").version == "1"
    assert (promote["decision"], promote["version"], promote["champion_version"]) == ("promoted", "1", None)
    assert promote["metric"] == "accuracy"
    assert promote["value"] == mlflow_admin.get_run(train["run_id"]).data.metrics["accuracy"]
    assert [v.version for v in mlflow_admin.search_model_versions(f"name='{MODEL_NAME}'")] == ["1"]


def test_modelify_builds_from_mlflow_copies_when_training_files_are_gone(
    on_demand_run: CompletedRun, airflow: AirflowDeployment
) -> None:
    artifacts = on_demand_run.xcom["train"]["artifacts"]
    assert {"scaler", "classifier"} <= set(artifacts)
    for name in ("scaler", "classifier"):
        record = artifacts[name]
        assert re.fullmatch(r"[0-9a-f]{64}", record["sha256"]), record
        assert record["uri"].startswith(f"runs:/{on_demand_run.xcom['train']['run_id']}/"), record
        assert not Path(record["path"]).exists(), f"{name} training file still readable: {record['path']}"
    log = airflow.task_log(ON_DEMAND_DAG, on_demand_run.dag_run_id, "modelify", 1)
    run_id = on_demand_run.xcom["train"]["run_id"]
    for name in ("scaler", "classifier"):
        # the training run's own copy, named by the run's manifest, whatever path the XCom gave
        assert f"Artifact '{name}': downloading runs:/{run_id}/kedro_artifacts/{name}/" in log, log


def test_connection_password_stays_out_of_logs_and_xcom(
    on_demand_run: CompletedRun, airflow: AirflowDeployment, mlflow_auth_server: MlflowServer
) -> None:
    password = mlflow_auth_server.admin_password
    assert password not in json.dumps(on_demand_run.xcom)
    logs = airflow.all_task_logs(ON_DEMAND_DAG, on_demand_run.dag_run_id)
    assert "Artifact 'scaler'" in logs  # the logs were really read
    assert password not in logs


def test_model_served_by_alias_answers_invocations(
    on_demand_run: CompletedRun, mlflow_admin: Any, mlflow_auth_server: MlflowServer, tmp_path: Path
) -> None:
    import mlflow
    import pandas as pd

    rows = example_rows(20)
    expected = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion").predict(rows)
    assert list(expected.columns) == ["probability", "prediction"]
    # threshold 0.4 was typed into the form: the decision follows it, not the project default of 0.5
    assert (expected["prediction"] == (expected["probability"] >= 0.4).astype("int64")).all()

    with served_model(f"models:/{MODEL_NAME}@champion", mlflow_auth_server.client_env(), tmp_path) as url:
        served = pd.DataFrame(invocations(url, rows)["predictions"])
        strict = pd.DataFrame(invocations(url, rows, params={"threshold": 0.99})["predictions"])

    pd.testing.assert_frame_equal(served[["probability", "prediction"]], expected, check_dtype=False)
    assert (strict["prediction"] == (strict["probability"] >= 0.99).astype("int64")).all()
    assert strict["prediction"].sum() < served["prediction"].sum()


@pytest.mark.parametrize("field", ["C", "threshold"])
def test_trigger_refuses_wrongly_typed_param(airflow: AirflowDeployment, field: str) -> None:
    from tests.e2e.airflow_deployment import AirflowDeploymentError

    with pytest.raises(AirflowDeploymentError, match=rf"400.*{field}"):
        airflow.trigger_as_form(ON_DEMAND_DAG, {field: "not a number"})
