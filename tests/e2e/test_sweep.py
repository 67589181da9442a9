"""The example sweep DAG on a real deployment: three mapped trainings from the Trigger form, the best one registered.

The scheduler expands ``train`` over the list the ``trials`` task returns (dynamic task mapping), runs the three
trainings as separate task instances, and ``modelify_best`` builds the one whose run has the best accuracy.
"""

from __future__ import annotations

from typing import Any

from tests.e2e.airflow_deployment import AirflowDeployment
from tests.e2e.scenarios import SWEEP_DAG, assert_run_succeeded

MODEL_NAME = "e2e_sweep"
C_VALUES = [0.001, 1.0, 100.0]


def test_three_mapped_trainings_nest_under_one_run_and_the_best_is_registered_and_promoted(
    airflow: AirflowDeployment, mlflow_admin: Any
) -> None:
    form = {"C_values": C_VALUES, "registered_model_name": MODEL_NAME, "experiment": MODEL_NAME}
    dag_run_id = airflow.trigger_as_form(SWEEP_DAG, form)
    assert_run_succeeded(airflow, SWEEP_DAG, dag_run_id, timeout=420)

    trainings = [airflow.xcom(SWEEP_DAG, dag_run_id, "train", map_index=i) for i in range(len(C_VALUES))]
    assert [training["runtime_params"]["C"] for training in trainings] == C_VALUES
    runs = [mlflow_admin.get_run(training["run_id"]) for training in trainings]
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert [run.data.tags["airflow.map_index"] for run in runs] == ["0", "1", "2"]
    (parent_id,) = {run.data.tags["mlflow.parentRunId"] for run in runs}
    parent = mlflow_admin.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert (parent.data.tags["airflow.dag_run_id"], parent.data.tags["airflow.task_id"]) == (dag_run_id, "train")

    accuracies = [run.data.metrics["accuracy"] for run in runs]
    best = runs[accuracies.index(max(accuracies))].info.run_id
    assert parent.data.tags["airflow_kedro_mlflow.best_run_id"] == best
    modelify = airflow.xcom(SWEEP_DAG, dag_run_id, "modelify_best")
    assert (modelify["run_id"], modelify["registered_model_name"], modelify["version"]) == (best, MODEL_NAME, "1")
    assert mlflow_admin.get_model_version(MODEL_NAME, "1").run_id == best
    assert mlflow_admin.get_model_version_by_alias(MODEL_NAME, "champion").version == "1"
