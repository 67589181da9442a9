"""Test-only DAG: a sweep whose every trial fails (``C`` must be positive), and a modelify of its best trial."""

from __future__ import annotations

import os

from airflow.sdk import DAG

from airflow_kedro_mlflow.operators.kedro import KedroModelifyOperator, KedroTrainingOperator

DAG_ID = "akm_test_failed_sweep"
PROJECT_PATH = os.environ["AIRFLOW_KEDRO_MLFLOW_EXAMPLE_PROJECT"]

with DAG(DAG_ID, schedule=None, render_template_as_native_obj=True):
    train = KedroTrainingOperator.partial(
        task_id="train", project_path=PROJECT_PATH, experiment_name="akm_failed_sweep"
    ).expand(runtime_params=[{"C": c, "data_dir": f"{PROJECT_PATH}/data/runs/failed-C{c}"} for c in (-1.0, -2.0)])
    train >> KedroModelifyOperator(task_id="modelify_best", training_task_id="train", select_best_by="accuracy")
