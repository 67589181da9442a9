"""Test-only DAG: a task starts an MLflow run, and a training task logs into that same run (``run_id``)."""

from __future__ import annotations

import os

from airflow.sdk import DAG, task

from airflow_kedro_mlflow.operators.kedro import KedroTrainingOperator

DAG_ID = "akm_test_shared_run"
PROJECT_PATH = os.environ["AIRFLOW_KEDRO_MLFLOW_EXAMPLE_PROJECT"]


@task
def start_run() -> str:
    """Start the DAG run's one MLflow run and log what this step knows, as a data-preparation step would."""
    from airflow_kedro_mlflow.hooks.mlflow import MlflowHook
    from airflow_kedro_mlflow.tracking.runs import get_or_create_experiment

    tracking = MlflowHook().get_tracking_config()
    with tracking.activate():
        client = tracking.client()
        run = client.create_run(get_or_create_experiment(client, "akm_shared_run"), run_name="prepare and train")
        client.log_param(run.info.run_id, "prepared_rows", 569)
        client.set_terminated(run.info.run_id, status="FINISHED")
    return str(run.info.run_id)


with DAG(DAG_ID, schedule=None, render_template_as_native_obj=True):
    start_run() >> KedroTrainingOperator(
        task_id="train",
        project_path=PROJECT_PATH,
        run_id="{{ ti.xcom_pull(task_ids='start_run') }}",
        runtime_params={"data_dir": f"{PROJECT_PATH}/data/runs/shared"},
    )
