"""Retrain the example Kedro classifier in pods of its own image, register it and promote it when it is better.

The same DAG as ``kedro_classifier_retraining.py`` with one difference, ``execution=``: training and modelify run
``airflow-kedro-mlflow train``/``modelify`` in the project's image on a Kubernetes cluster (the cncf-kubernetes
provider's ``KubernetesPodOperator``), so the workers need neither the project nor its dependencies. Promotion only
talks to MLflow and stays on the worker.

What the cluster needs (docs/execution_modes.md, "Kubernetes"):

- the image built from ``kedro_classifier/Dockerfile`` (docs/kubernetes_image.md), pushed where the cluster pulls
  from; ``AIRFLOW_KEDRO_MLFLOW_K8S_IMAGE`` names it;
- a Secret with MLflow's credential variables, in the pods' namespace: the connection's own credentials stay on the
  worker (``kubectl -n ml create secret generic mlflow-credentials --from-literal=MLFLOW_TRACKING_USERNAME=...
  --from-literal=MLFLOW_TRACKING_PASSWORD=...``);
- an ``mlflow_default`` connection whose address the pods can reach too (an in-cluster service, e.g.
  ``mlflow://mlflow.ml.svc.cluster.local:5000``), and a ``kubernetes_default`` connection (in-cluster by default).

The DAG is created paused: it runs nothing until a cluster is there and you unpause it. This file imports neither
kedro, mlflow nor the Kubernetes provider (the worker imports the provider when it builds the pod), so the DAG
processor parses it in milliseconds, even where the provider is not installed.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_kedro_mlflow.execution import KubernetesExecution
from airflow_kedro_mlflow.operators.kedro import KedroModelifyOperator, KedroTrainingOperator
from airflow_kedro_mlflow.operators.mlflow import MlflowPromoteModelOperator

IMAGE = os.environ.get("AIRFLOW_KEDRO_MLFLOW_K8S_IMAGE", "registry.example.com/kedro-classifier:1.0")

# [START kubernetes_execution]
in_a_pod = KubernetesExecution(
    image=IMAGE,
    namespace="ml",
    project_path="/app",  # the project's root inside the image (the Dockerfile's WORKDIR)
    resources={"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
    mlflow_secret="mlflow-credentials",  # a Kubernetes Secret: MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD
    pod_kwargs={"service_account_name": "kedro-training", "startup_timeout_seconds": 600},
)
# [END kubernetes_execution]

# [START kubernetes_dag]
with DAG(
    dag_id="kedro_classifier_kubernetes_retraining",
    description="Weekly retraining of the Kedro classifier in pods of its image; promotes a better version.",
    schedule="@weekly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=True,  # nothing runs before a cluster (and the image, the secret) are there
    tags=["kedro", "mlflow", "kubernetes"],
) as dag:
    train = KedroTrainingOperator(
        task_id="train",
        project_path="/app",
        pipeline_name="training",
        experiment_name="kedro_classifier",
        run_name="{{ dag.dag_id }}-{{ ds }}",
        execution=in_a_pod,
    )
    modelify = KedroModelifyOperator(
        task_id="modelify",
        training_task_id="train",
        registered_model_name="kedro_classifier",
        aliases=["challenger"],
        execution=in_a_pod,
    )
    promote = MlflowPromoteModelOperator(
        task_id="promote",
        modelify_task_id="modelify",
        metric="accuracy",
        greater_is_better=True,
    )
    train >> modelify >> promote
# [END kubernetes_dag]
