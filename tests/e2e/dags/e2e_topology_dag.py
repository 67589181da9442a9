"""Test DAGs of the production-topology e2e test: the retraining DAG on two Celery workers, in the project's own env.

Both DAGs run the example project with ``VirtualenvExecution(requirements="requirements.txt")``: every worker builds
(once, cached) a virtualenv with the project's scikit-learn, not the Airflow environment's, and runs the
``airflow-kedro-mlflow`` CLI there. The project path is this file's sibling *on the worker that parses it*: each
worker has its own copy of this folder (``tests/e2e/production_topology.py``), so nothing but MLflow links them.

- ``e2e_topology_retraining``: train on worker ``a`` (queue ``worker_a``), modelify and promote on worker ``b``
  (queue ``worker_b``): the model can only be built from what training uploaded to MLflow.
- ``e2e_topology_failover``: every task on queue ``training``, which both workers serve; the first training try
  pauses mid-run (``e2e_pausing_runner``) so the test can SIGKILL its worker; ``retries=1`` lets the other worker
  take over.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from airflow.sdk import DAG, Param

from airflow_kedro_mlflow.execution import VirtualenvExecution
from airflow_kedro_mlflow.operators.kedro import KedroModelifyOperator, KedroTrainingOperator
from airflow_kedro_mlflow.operators.mlflow import MlflowPromoteModelOperator

PROJECT_PATH = str(Path(__file__).resolve().parent / "kedro_classifier")
PAUSING_RUNNER = "kedro_classifier.e2e_pausing_runner.PauseOnFirstTryRunner"
#: The same queue names as tests/e2e/production_topology.py (this file cannot import it: it runs on the workers).
QUEUE_A, QUEUE_B, QUEUE_ANY = "worker_a", "worker_b", "training"
#: The one argument that moves Kedro out of the task process into the project's own environment.
PROJECT_ENVIRONMENT = VirtualenvExecution(requirements="requirements.txt")


def topology_dag(dag_id: str, *, train_queue: str, modelify_queue: str, failover: bool) -> DAG:
    with DAG(
        dag_id=dag_id,
        schedule=None,
        render_template_as_native_obj=True,
        max_active_runs=1,
        params={
            "registered_model_name": Param(dag_id, type="string"),
            "C": Param(0.5, type="number", exclusiveMinimum=0),
        },
        tags=["e2e"],
    ) as dag:
        train = KedroTrainingOperator(
            task_id="train",
            project_path=PROJECT_PATH,
            env="no_shared_disk",
            experiment_name="e2e_topology",
            runtime_params={"C": "{{ params.C }}"},
            runner=PAUSING_RUNNER if failover else None,
            execution=PROJECT_ENVIRONMENT,
            queue=train_queue,
            retries=1 if failover else 0,
            retry_delay=dt.timedelta(seconds=1),
        )
        modelify = KedroModelifyOperator(
            task_id="modelify",
            training_task_id="train",
            project_path=PROJECT_PATH,  # this worker's copy; the training XCom names the other worker's
            registered_model_name="{{ params.registered_model_name }}",
            aliases=["challenger"],
            execution=PROJECT_ENVIRONMENT,
            queue=modelify_queue,
        )
        train >> modelify
        if not failover:
            modelify >> MlflowPromoteModelOperator(
                task_id="promote", modelify_task_id="modelify", metric="accuracy", queue=modelify_queue
            )
    return dag


retraining = topology_dag("e2e_topology_retraining", train_queue=QUEUE_A, modelify_queue=QUEUE_B, failover=False)
failover = topology_dag("e2e_topology_failover", train_queue=QUEUE_ANY, modelify_queue=QUEUE_ANY, failover=True)
