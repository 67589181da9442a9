"""Train the example Kedro classifier on demand from the Airflow UI, with hyperparameters typed into a form.

Pressing Trigger shows one field per ``Param`` below (with its description and type checks). The DAG renders
templates as native Python objects (``render_template_as_native_obj=True``), so ``{{ params.C }}`` reaches Kedro as
the float ``0.5``, not the string ``"0.5"``; without it every runtime parameter would be a string.

train -> modelify (registers a version as ``challenger``) -> promote (moves ``champion`` when the accuracy is better).
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import DAG, Param

from airflow_kedro_mlflow.operators.kedro import KedroModelifyOperator, KedroTrainingOperator
from airflow_kedro_mlflow.operators.mlflow import MlflowPromoteModelOperator

PROJECT_PATH = os.environ.get(
    "AIRFLOW_KEDRO_MLFLOW_EXAMPLE_PROJECT", str(Path(__file__).resolve().parent / "kedro_classifier")
)

# [START on_demand_params]
PARAMS = {
    "project_path": Param(PROJECT_PATH, type="string", description="Kedro project root, as the worker sees it."),
    "experiment": Param(
        "kedro_classifier",
        type="string",
        minLength=1,
        description="MLflow experiment that receives the training run.",
    ),
    "kedro_env": Param(
        "local",
        type="string",
        minLength=1,
        description="Kedro configuration environment (a folder under conf/), as `kedro run --env`.",
    ),
    "registered_model_name": Param(
        "kedro_classifier",
        type="string",
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="MLflow registered model that receives the new version (letters, digits, '_', '-', '.').",
    ),
    "C": Param(
        1.0,
        type="number",
        exclusiveMinimum=0,
        description="Inverse regularisation strength of the logistic regression: smaller means stronger.",
    ),
    "threshold": Param(
        0.5,
        type="number",
        minimum=0,
        maximum=1,
        description="Decision threshold on the positive-class probability, applied at inference.",
    ),
}
# [END on_demand_params]

# [START on_demand_dag]
with DAG(
    dag_id="kedro_classifier_on_demand",
    description="Train the Kedro classifier with hyperparameters chosen in the trigger form, register, promote.",
    schedule=None,
    render_template_as_native_obj=True,  # typed Params reach Kedro as numbers, not strings
    params=PARAMS,
    tags=["kedro", "mlflow"],
) as dag:
    train = KedroTrainingOperator(
        task_id="train",
        project_path="{{ params.project_path }}",
        env="{{ params.kedro_env }}",
        experiment_name="{{ params.experiment }}",
        runtime_params={
            "C": "{{ params.C }}",
            "threshold": "{{ params.threshold }}",
            # Each try works in its own data root, so runs triggered at the same time never read each other's
            # intermediate files (the catalog puts every path under `data_dir`), and a retry starts clean.
            "data_dir": "{{ params.project_path }}/data/runs/{{ run_id | replace(':', '-') | replace('+', '-') }}"
            "/try-{{ ti.try_number }}",
        },
        mlflow_tags={"trigger": "on_demand"},
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
    )
    train >> modelify >> promote
# [END on_demand_dag]
