"""Sweep the example classifier's regularisation from the Airflow UI, and register the best training.

The training task is mapped over one set of runtime parameters per trial (dynamic task mapping): each trial is its
own task instance with its own MLflow run, and the runs are nested under one parent run per DAG run, so the MLflow UI
shows the sweep as one expandable row. ``select_best_by`` makes the modelify task build the trial whose run has the
best ``accuracy``; its trigger rule is then ``all_done``, so a failed trial does not stop the others' best.

trials -> train (mapped) -> modelify_best (registers it as ``challenger``) -> promote (``champion`` if better).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_kedro_mlflow.operators.kedro import KedroModelifyOperator, KedroTrainingOperator
from airflow_kedro_mlflow.operators.mlflow import MlflowPromoteModelOperator

PROJECT_PATH = os.environ.get(
    "AIRFLOW_KEDRO_MLFLOW_EXAMPLE_PROJECT", str(Path(__file__).resolve().parent / "kedro_classifier")
)


# [START sweep_trials]
@task
def trials(params: dict[str, Any] | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
    """One ``runtime_params`` dict per value of ``C`` typed in the form, each trial in its own data root."""
    assert params is not None and run_id is not None  # given by Airflow from the task's context
    run_folder = run_id.replace(":", "-").replace("+", "-")
    return [
        {"C": c, "threshold": params["threshold"], "data_dir": f"{params['project_path']}/data/runs/{run_folder}/C-{c}"}
        for c in params["C_values"]
    ]


# [END sweep_trials]

# [START sweep_dag]
with DAG(
    dag_id="kedro_classifier_sweep",
    description="Train the Kedro classifier once per C value typed in the form, register and promote the best.",
    schedule=None,
    render_template_as_native_obj=True,
    params={
        "project_path": Param(PROJECT_PATH, type="string", description="Kedro project root, as the worker sees it."),
        "experiment": Param("kedro_classifier_sweep", type="string", minLength=1, description="MLflow experiment."),
        "registered_model_name": Param(
            "kedro_classifier",
            type="string",
            pattern=r"^[A-Za-z0-9_.\-]+$",
            description="MLflow registered model that receives the best trial's version.",
        ),
        "C_values": Param(
            [0.1, 1.0, 10.0],
            type="array",
            items={"type": "number", "exclusiveMinimum": 0},
            minItems=1,
            description="One trial per value of the logistic regression's inverse regularisation strength.",
        ),
        "threshold": Param(0.5, type="number", minimum=0, maximum=1, description="Decision threshold at inference."),
    },
    tags=["kedro", "mlflow", "sweep"],
) as dag:
    train = KedroTrainingOperator.partial(
        task_id="train",
        project_path="{{ params.project_path }}",
        experiment_name="{{ params.experiment }}",
        mlflow_tags={"trigger": "sweep"},
    ).expand(runtime_params=trials())
    modelify_best = KedroModelifyOperator(
        task_id="modelify_best",
        training_task_id="train",
        select_best_by="accuracy",
        registered_model_name="{{ params.registered_model_name }}",
        aliases=["challenger"],
    )
    promote = MlflowPromoteModelOperator(task_id="promote", modelify_task_id="modelify_best", metric="accuracy")
    train >> modelify_best >> promote
# [END sweep_dag]
