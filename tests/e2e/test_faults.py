"""Faults on the real deployment: MLflow outage during modelify, two runs at once, a worker killed mid-training.

Each fault happens at a known point, never by racing the scheduler: the ``e2e_faults`` test DAG holds modelify until
the test releases it, and its pausing runner stops the first training try right after the ``scaler`` was saved.
"""

from __future__ import annotations

import os
import pickle
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_kedro_mlflow.model import sha256_path
from tests.e2e.airflow_deployment import TASK_FINISHED, AirflowDeployment
from tests.e2e.dags.e2e_signals import signal_file
from tests.e2e.scenarios import FAULTS_DAG, ON_DEMAND_DAG, assert_run_succeeded, example_rows
from tests.servers import MlflowServer


def _versions(client: Any, name: str) -> list[Any]:
    return sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))


def _wait_for_file(path: Path, airflow: AirflowDeployment, dag_run_id: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        train = airflow.task_instance(FAULTS_DAG, dag_run_id, "train")
        assert train["state"] not in TASK_FINISHED, (
            f"train ended {train['state']} before pausing:\n{airflow.all_task_logs(FAULTS_DAG, dag_run_id)}"
        )
        assert time.monotonic() < deadline, f"{path} not written within {timeout:.0f}s\n{airflow.diagnostics()}"
        time.sleep(0.5)


def test_mlflow_outage_during_modelify_fails_clearly_then_retry_registers_once(
    airflow: AirflowDeployment, mlflow_auth_server: MlflowServer, signal_dir: Path, mlflow_admin: Any
) -> None:
    name = "e2e_outage"
    dag_run_id = airflow.trigger_as_form(FAULTS_DAG, {"registered_model_name": name, "hold_modelify": True})
    train = airflow.wait_for_task(FAULTS_DAG, dag_run_id, "train", TASK_FINISHED, timeout=300)
    assert train["state"] == "success", airflow.all_task_logs(FAULTS_DAG, dag_run_id)

    mlflow_auth_server.stop()
    try:
        signal_file(dag_run_id, "release", signal_dir).touch()
        modelify = airflow.wait_for_task(FAULTS_DAG, dag_run_id, "modelify", TASK_FINISHED, timeout=300)
        failed_log = airflow.task_log(FAULTS_DAG, dag_run_id, "modelify", 1)
    finally:
        mlflow_auth_server.start()

    assert modelify["state"] == "failed", failed_log
    assert f"Cannot reach the MLflow tracking server at {mlflow_auth_server.uri}" in failed_log, failed_log
    assert mlflow_auth_server.admin_password not in failed_log

    airflow.clear_task(FAULTS_DAG, dag_run_id, "modelify")  # Airflow's "Clear": the next try, server back
    assert_run_succeeded(airflow, FAULTS_DAG, dag_run_id)
    assert airflow.task_instance(FAULTS_DAG, dag_run_id, "modelify")["try_number"] == 2
    versions = _versions(mlflow_admin, name)
    assert [v.version for v in versions] == ["1"]
    assert versions[0].tags["airflow.try_number"] == "2"
    assert mlflow_admin.get_model_version_by_alias(name, "challenger").version == "1"


def test_concurrent_runs_with_different_params_make_two_versions_from_their_own_artifacts(
    airflow: AirflowDeployment, mlflow_admin: Any, tmp_path: Path
) -> None:
    import mlflow

    name = "e2e_concurrent"
    # kedro env "local": both runs work on this machine's disk at the same time, with the DAG's own data paths.
    settings = {"strong": {"C": 0.001, "threshold": 0.3}, "weak": {"C": 100.0, "threshold": 0.7}}
    runs = {
        label: airflow.trigger_as_form(ON_DEMAND_DAG, {"registered_model_name": name, "kedro_env": "local", **params})
        for label, params in settings.items()
    }
    for dag_run_id in runs.values():
        assert_run_succeeded(airflow, ON_DEMAND_DAG, dag_run_id)

    versions = {v.tags["airflow.dag_run_id"]: v for v in _versions(mlflow_admin, name)}
    assert sorted(versions) == sorted(runs.values())
    rows = example_rows(60)
    probabilities = {}
    for label, dag_run_id in runs.items():
        params = settings[label]
        train = airflow.xcom(ON_DEMAND_DAG, dag_run_id, "train")
        assert versions[dag_run_id].run_id == train["run_id"]
        fitted = {}
        for artifact in ("scaler", "classifier"):
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=train["artifacts"][artifact]["uri"], dst_path=str(tmp_path / label / artifact)
            )
            fitted[artifact] = pickle.loads(Path(local).read_bytes())
        assert fitted["classifier"].get_params()["C"] == params["C"]

        predicted = mlflow.pyfunc.load_model(f"models:/{name}/{versions[dag_run_id].version}").predict(rows)
        own = fitted["classifier"].predict_proba(fitted["scaler"].transform(rows))[:, 1]
        assert predicted["probability"].to_numpy() == pytest.approx(own)
        assert (predicted["prediction"] == (predicted["probability"] >= params["threshold"]).astype(int)).all()
        probabilities[label] = predicted["probability"].to_numpy()
    assert (probabilities["strong"] != probabilities["weak"]).any()


def test_worker_killed_mid_training_retry_starts_clean(
    airflow: AirflowDeployment, signal_dir: Path, mlflow_admin: Any
) -> None:
    name = "e2e_killed"
    form = {"registered_model_name": name, "pause_training": True, "kedro_env": "local"}
    dag_run_id = airflow.trigger_as_form(FAULTS_DAG, form)
    marker = signal_file(dag_run_id, "paused", signal_dir)
    _wait_for_file(marker, airflow, dag_run_id)
    task_pid = int(marker.read_text())
    train = airflow.task_instance(FAULTS_DAG, dag_run_id, "train")
    assert (train["state"], train["try_number"]) == ("running", 1)

    os.kill(task_pid, signal.SIGKILL)  # the worker's task process dies mid-training: scaler saved, no classifier
    assert_run_succeeded(airflow, FAULTS_DAG, dag_run_id)

    assert airflow.task_instance(FAULTS_DAG, dag_run_id, "train")["try_number"] == 2
    killed_log = airflow.task_log(FAULTS_DAG, dag_run_id, "train", 1)
    assert "Node fit_scaler started" in killed_log and "Node fit_classifier started" not in killed_log, killed_log
    retry_log = airflow.task_log(FAULTS_DAG, dag_run_id, "train", 2)
    for node in ("load_raw_data", "split_data", "fit_scaler", "fit_classifier", "evaluate"):
        assert f"Node {node} started" in retry_log, retry_log  # from the first node on: nothing resumed

    result = airflow.xcom(FAULTS_DAG, dag_run_id, "train")
    runs = mlflow_admin.search_runs(
        [result["experiment_id"]], filter_string=f"tags.`airflow.dag_run_id` = '{dag_run_id}'"
    )
    by_try = {run.data.tags["airflow.try_number"]: run for run in runs}
    assert sorted(by_try) == ["1", "2"]
    assert by_try["2"].info.run_id == result["run_id"]
    assert by_try["1"].info.status != "FINISHED"
    logged = mlflow_admin.search_logged_models(experiment_ids=[result["experiment_id"]])
    assert {m.source_run_id for m in logged} & {by_try["1"].info.run_id} == set()  # nothing built on try 1

    scaler = result["artifacts"]["scaler"]
    assert sha256_path(scaler["path"]) == scaler["sha256"]  # try 2's own, intact scaler version
    versions = _versions(mlflow_admin, name)
    assert [(v.version, v.run_id) for v in versions] == [("1", result["run_id"])]
