"""Test-only DAG: a sweep — one training task mapped over hyperparameters — modelified two ways.

Each mapped training instance is its own task (``airflow.map_index`` in the MLflow tags), so none marks another's
run superseded; their runs are nested under one parent run. Modelify map index ``i`` builds the model of training
map index ``i`` (one version per training), and ``modelify_best`` builds the training with the best accuracy.
"""

from __future__ import annotations

import os
from typing import Any

from airflow.sdk import DAG

from airflow_kedro_mlflow.operators.kedro import KedroModelifyOperator, KedroTrainingOperator

DAG_ID = "akm_test_mapped_training"
PROJECT_PATH = os.environ["AIRFLOW_KEDRO_MLFLOW_EXAMPLE_PROJECT"]
C_VALUES = (0.5, 1.0, 2.0)


def run_id_of(result: dict[str, Any]) -> str:
    """The MLflow run of one training result: the run each modelify map index logs its model next to."""
    return str(result["run_id"])


with DAG(DAG_ID, schedule=None, render_template_as_native_obj=True):
    train = KedroTrainingOperator.partial(
        task_id="train", project_path=PROJECT_PATH, experiment_name="akm_mapped"
    ).expand(runtime_params=[{"C": c, "data_dir": f"{PROJECT_PATH}/data/runs/mapped-C{c}"} for c in C_VALUES])
    KedroModelifyOperator.partial(
        task_id="modelify", training_task_id="train", registered_model_name="akm_mapped"
    ).expand(run_id=train.output.map(run_id_of))
    # The best training's run already holds modelify's model of that index: a second model in one run needs a name.
    train >> KedroModelifyOperator(
        task_id="modelify_best",
        training_task_id="train",
        select_best_by="accuracy",
        registered_model_name="akm_mapped_best",
        log_model_kwargs={"name": "best_model"},
    )
