"""Score a table with the registered Kedro classifier on Spark: the model, not the Kedro project, goes to the data.

The logged ``KedroPipelineModel`` is an ordinary MLflow pyfunc model, so ``mlflow.pyfunc.spark_udf`` runs the whole
inference pipeline (scaler, classifier, threshold) inside Spark's Python workers, partition by partition. Nothing
here needs the Kedro project or a shared disk: the model comes from the registry by alias.

Credentials stay with this task: the model is downloaded inside the ``mlflow`` connection's ``activate()`` block,
and Spark (its JVM and Python workers) starts after it, scoring the local copy, so no child process inherits them.

``spark_master`` defaults to ``local[2]`` (Spark inside the worker, as in the tests); point it at a cluster
(``spark://…``, ``yarn``, ``k8s://…``) whose executors can install the model's requirements, or use
``env_manager="virtualenv"`` there. pyspark is the ``spark`` extra: ``pip install airflow-kedro-mlflow[spark]``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, task

PROJECT_PATH = os.environ.get(
    "AIRFLOW_KEDRO_MLFLOW_EXAMPLE_PROJECT", str(Path(__file__).resolve().parent / "kedro_classifier")
)
#: Columns the example model returns per row (see the inference pipeline's ``predict`` node).
RESULT_TYPE = "probability double, prediction long"


def score_with_spark(
    model_uri: str, input_path: str, output_path: str, *, spark_master: str, mlflow_conn_id: str = "mlflow_default"
) -> dict[str, Any]:
    """Score the CSV at ``input_path`` with the model at ``model_uri`` on Spark and write Parquet to ``output_path``.

    :return: what was scored and where it went, for XCom (no credentials).
    """
    import sys
    import tempfile

    import mlflow
    from pyspark.sql import SparkSession

    from airflow_kedro_mlflow.hooks.mlflow import MlflowHook

    tracking = MlflowHook(mlflow_conn_id).get_tracking_config()
    with tempfile.TemporaryDirectory(prefix="batch-scoring-") as scratch:
        with tracking.activate():
            local_model = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=scratch)
        # Spark's Python workers must run this interpreter: it has the model's requirements (env_manager="local").
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        spark = (
            SparkSession.builder.master(spark_master)
            .appName("kedro_classifier_batch_scoring")
            .config("spark.ui.enabled", "false")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.host", "127.0.0.1")
            .getOrCreate()
        )
        try:
            instances = spark.read.csv(input_path, header=True, inferSchema=True)
            predict = mlflow.pyfunc.spark_udf(spark, local_model, result_type=RESULT_TYPE, env_manager="local")
            scored = instances.withColumn("scores", predict(*instances.columns)).select(
                *instances.columns, "scores.probability", "scores.prediction"
            )
            scored.write.mode("overwrite").parquet(output_path)
            rows = spark.read.parquet(output_path).count()
        finally:
            spark.stop()
    return {"model_uri": model_uri, "input_path": input_path, "output_path": output_path, "rows": rows}


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
            description="Parquet directory that receives the input columns plus probability and prediction.",
        ),
        "spark_master": Param("local[2]", type="string", description="Spark master URL."),
    },
    tags=["kedro", "mlflow", "spark"],
) as dag:

    @task
    def score(params: dict[str, Any]) -> dict[str, Any]:
        """Score ``input_path`` with ``models:/<registered_model_name>@<alias>``."""
        return score_with_spark(
            f"models:/{params['registered_model_name']}@{params['alias']}",
            params["input_path"],
            params["output_path"],
            spark_master=params["spark_master"],
        )

    score()
# [END batch_scoring_dag]
