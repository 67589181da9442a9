"""Score a table with the registered Kedro classifier on Spark: the model, not the Kedro project, goes to the data.

The logged ``KedroPipelineModel`` is an ordinary MLflow pyfunc model, so ``MlflowBatchPredictOperator`` with
``engine="spark"`` runs the whole inference pipeline (scaler, classifier, threshold) inside Spark's Python workers,
through ``mlflow.pyfunc.spark_udf``, partition by partition. Nothing here needs the Kedro project or a shared disk:
the model comes from the registry by alias, resolved once to a concrete version that the task returns and records
next to the output.

Credentials stay with this task: the operator downloads the model inside the ``mlflow`` connection's ``activate()``
block, and Spark (its JVM and Python workers) starts after it, scoring the local copy, so no child process inherits
them.

``spark_master`` defaults to ``local[2]`` (Spark inside the worker, as in the tests); point it at a cluster
(``spark://…``, ``yarn``, ``k8s://…``) whose executors can install the model's requirements, or use
``env_manager="virtualenv"`` there. pyspark is the ``spark`` extra: ``pip install airflow-kedro-mlflow[spark]``.
An output path written by an earlier DAG run is refused (a retry of this run overwrites its own): give each run its
own ``output_path``.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import DAG, Param

from airflow_kedro_mlflow.operators.scoring import MlflowBatchPredictOperator

PROJECT_PATH = os.environ.get(
    "AIRFLOW_KEDRO_MLFLOW_EXAMPLE_PROJECT", str(Path(__file__).resolve().parent / "kedro_classifier")
)
#: Columns the example model returns per row (see the inference pipeline's ``predict`` node): its signature has no
#: output schema, so Spark is told.
RESULT_TYPE = "probability double, prediction long"

# [START batch_scoring_dag]
with DAG(
    dag_id="kedro_classifier_batch_scoring",
    description="Score a table on Spark with the registered Kedro classifier loaded by alias.",
    schedule=None,
    render_template_as_native_obj=True,
    params={
        "registered_model_name": Param("kedro_classifier", type="string", description="Registered model to use."),
        "alias": Param("champion", type="string", description="Alias of the version to score with."),
        "input_path": Param(
            f"{PROJECT_PATH}/data/05_model_input/instances.csv",
            type="string",
            description="CSV with a header row and the model's input columns.",
        ),
        "output_path": Param(
            f"{PROJECT_PATH}/data/07_model_output/batch_predictions.parquet",
            type="string",
            description=(
                "Parquet directory that receives the input columns plus probability and prediction; one per DAG run "
                "(an output an earlier run wrote is refused)."
            ),
        ),
        "spark_master": Param("local[2]", type="string", description="Spark master URL."),
    },
    tags=["kedro", "mlflow", "spark"],
) as dag:
    MlflowBatchPredictOperator(
        task_id="score",
        model_uri="models:/{{ params.registered_model_name }}@{{ params.alias }}",
        input_path="{{ params.input_path }}",
        input_format="csv",
        output_path="{{ params.output_path }}",
        output_format="parquet",
        engine="spark",
        spark_master="{{ params.spark_master }}",
        spark_result_type=RESULT_TYPE,
    )
# [END batch_scoring_dag]
