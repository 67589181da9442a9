"""Score a table on Spark with ``mlflow.pyfunc.spark_udf``: the model goes to the data, partition by partition.

The logged model is an ordinary pyfunc model, so Spark's Python workers run the whole inference pipeline. The caller
downloads the model inside ``TrackingConfig.activate()`` and Spark (its JVM and Python workers) starts after that
block, scoring the local copy: no child process inherits the connection's credentials.

``spark_master`` defaults to ``local[2]`` (Spark inside the worker); point it at a cluster (``spark://…``, ``yarn``,
``k8s://…``) whose executors can install the model's requirements, or pass ``env_manager="virtualenv"``. Spark reads
and writes the paths itself (``s3a://`` and the like need the cluster's Hadoop configuration), so only path inputs
and outputs are supported. pyspark is the ``spark`` extra.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from airflow_kedro_mlflow.exceptions import ScoringInputError
from airflow_kedro_mlflow.scoring.pandas_engine import check_columns

_READERS = {"parquet": "parquet", "csv": "csv", "jsonl": "json"}


@contextmanager
def spark_session(spark_master: str, app_name: str = "airflow_kedro_mlflow_batch_scoring") -> Iterator[Any]:
    """A SparkSession bound to the loopback interface (UI off), stopped after the block.

    Its Python workers run this interpreter (``PYSPARK_PYTHON``), which has the model's requirements.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise ScoringInputError(
            "engine='spark' needs pyspark: pip install 'airflow-kedro-mlflow[spark]' (and Java) on the worker."
        ) from exc

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.master(spark_master).appName(app_name).config("spark.ui.enabled", "false")
    if spark_master.startswith("local"):
        builder = builder.config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
    spark = builder.getOrCreate()
    try:
        yield spark
    finally:
        spark.stop()


def score_on_spark(
    spark: Any,
    local_model: str,
    *,
    input_path: str,
    input_format: str,
    temporary_output: str,
    output_format: str,
    model_uri: str,
    result_type: str | None,
    env_manager: str = "local",
    params: dict[str, Any] | None = None,
) -> int:
    """Score ``input_path`` with the model in the ``local_model`` folder and write ``temporary_output``.

    :return: the number of rows written.
    :raises ScoringInputError: missing input columns (checked before Spark writes anything), or no ``result_type``
        for a model whose signature has no output schema.
    """
    import mlflow
    from mlflow.models import Model

    metadata = Model.load(local_model)
    if result_type is None and metadata.get_output_schema() is None:
        raise ScoringInputError(
            f"model {model_uri} has no output schema in its signature, so Spark cannot know the columns it returns; "
            "pass spark_result_type, e.g. 'probability double, prediction long'."
        )
    reader = spark.read.format(_READERS[input_format])
    if input_format == "csv":
        reader = reader.option("header", True).option("inferSchema", True)
    instances = reader.load(input_path)
    check_columns(metadata, instances.columns, model_uri=model_uri, source=input_path)
    predict = mlflow.pyfunc.spark_udf(
        spark, local_model, result_type=result_type, env_manager=env_manager, params=params or None
    )
    columns = [instances[name] for name in instances.columns]
    scored = instances.withColumn("__scores", predict(*columns))
    if scored.schema["__scores"].dataType.typeName() == "struct":
        scored = scored.select(*instances.columns, "__scores.*")
    else:
        scored = scored.withColumnRenamed("__scores", "prediction")
    writer = scored.write.mode("overwrite").format(_READERS[output_format])
    if output_format == "csv":
        writer = writer.option("header", True)
    writer.save(temporary_output)
    # One row out per row in (the UDF maps rows); Spark skips hidden paths such as the temporary output when it reads.
    return int(instances.count())
