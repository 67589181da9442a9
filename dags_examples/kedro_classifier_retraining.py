"""Retrain the example Kedro classifier every week and promote it when it beats the serving model.

train (KedroTrainingOperator) -> modelify (KedroModelifyOperator, registers a version as ``challenger``) ->
promote (MlflowPromoteModelOperator, moves ``champion`` when the new accuracy is strictly better).

MLflow is reached through the Airflow connection ``mlflow_default`` (type ``mlflow``), e.g.
``AIRFLOW_CONN_MLFLOW_DEFAULT='mlflow://mlflow.internal:5000'``. The Kedro project is the example project next to
this file unless ``AIRFLOW_KEDRO_MLFLOW_EXAMPLE_PROJECT`` points elsewhere (as the worker sees it).

This file imports neither kedro nor mlflow: the operators import them when they run, so the DAG processor parses
it in milliseconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Param

from airflow_kedro_mlflow.operators.kedro import KedroModelifyOperator, KedroTrainingOperator
from airflow_kedro_mlflow.operators.mlflow import MlflowPromoteModelOperator

PROJECT_PATH = os.environ.get(
    "AIRFLOW_KEDRO_MLFLOW_EXAMPLE_PROJECT", str(Path(__file__).resolve().parent / "kedro_classifier")
)

# [START retraining_dag]
with DAG(
    dag_id="kedro_classifier_retraining",
    description="Weekly retraining of the Kedro classifier; promotes the new version when its accuracy is better.",
    schedule="@weekly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,  # a missed week is not worth training for: only the latest interval runs
    max_active_runs=1,
    render_template_as_native_obj=True,
    params={
        "project_path": Param(PROJECT_PATH, type="string", description="Kedro project root, as the worker sees it."),
        "registered_model_name": Param(
            "kedro_classifier", type="string", description="MLflow registered model that receives the versions."
        ),
    },
    tags=["kedro", "mlflow"],
) as dag:
    train = KedroTrainingOperator(
        task_id="train",
        project_path="{{ params.project_path }}",
        pipeline_name="training",
        experiment_name="kedro_classifier",
        run_name="{{ dag.dag_id }}-{{ ds }}",
    )
    modelify = KedroModelifyOperator(
        task_id="modelify",
        training_task_id="train",
        registered_model_name="{{ params.registered_model_name }}",
        aliases=["challenger"],
    )
    promote = MlflowPromoteModelOperator(
        task_id="promote",
        modelify_task_id="modelify",
        metric="accuracy",
        greater_is_better=True,
    )
    train >> modelify >> promote
# [END retraining_dag]
