"""Scale-out: the registered KedroPipelineModel scores Spark DataFrames (``spark_udf``, ``local[2]``) like pandas, and
the example batch-scoring DAG (``MlflowBatchPredictOperator``, ``engine="spark"``) writes the same scores.

Java comes from Debian's packages (installed by the test setup when missing); Spark binds 127.0.0.1 with its UI off,
and its Python workers run this interpreter (``PYSPARK_PYTHON``), which has the model's requirements.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.airflow_deployment import AirflowDeployment
from tests.e2e.installers import ensure_java
from tests.e2e.scenarios import BATCH_SCORING_DAG, ON_DEMAND_FORM, CompletedRun, assert_run_succeeded, example_rows

pytestmark = pytest.mark.spark

MODEL_URI = f"models:/{ON_DEMAND_FORM['registered_model_name']}@champion"


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """A ``local[2]`` SparkSession bound to 127.0.0.1, stopped after the module."""
    from pyspark.sql import SparkSession

    ensure_java()
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    session = (
        SparkSession.builder.master("local[2]")
        .appName("e2e-spark-udf")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    yield session
    session.stop()


def test_spark_udf_scores_like_pandas_predict(spark: Any, on_demand_run: CompletedRun, mlflow_admin: Any) -> None:
    import mlflow
    import pandas as pd

    rows = example_rows(120)
    expected = mlflow.pyfunc.load_model(MODEL_URI).predict(rows)
    predict = mlflow.pyfunc.spark_udf(
        spark, MODEL_URI, result_type="probability double, prediction long", env_manager="local"
    )
    frame = spark.createDataFrame(rows)
    scored = frame.withColumn("scores", predict(*frame.columns)).select("scores.probability", "scores.prediction")
    got = scored.toPandas()

    assert len(got) == len(rows)
    pd.testing.assert_frame_equal(got, expected.reset_index(drop=True), check_dtype=False)


def test_batch_scoring_dag_task_scores_on_spark(
    airflow: AirflowDeployment, on_demand_run: CompletedRun, mlflow_admin: Any, tmp_path: Path
) -> None:
    import mlflow
    import pandas as pd

    ensure_java()  # the task starts Spark on this machine's worker
    rows = example_rows(200, offset=100)
    input_path = tmp_path / "instances.csv"
    rows.to_csv(input_path, index=False)
    output_path = tmp_path / "predictions.parquet"
    conf = {
        "registered_model_name": ON_DEMAND_FORM["registered_model_name"],
        "alias": "champion",
        "input_path": str(input_path),
        "output_path": str(output_path),
    }
    dag_run_id = airflow.trigger_as_form(BATCH_SCORING_DAG, conf)
    assert_run_succeeded(airflow, BATCH_SCORING_DAG, dag_run_id)

    result = airflow.xcom(BATCH_SCORING_DAG, dag_run_id, "score")
    version = mlflow.MlflowClient().get_model_version_by_alias(ON_DEMAND_FORM["registered_model_name"], "champion")
    assert {key: result[key] for key in ("model_uri", "requested_model_uri", "version", "run_id", "rows")} == {
        "model_uri": f"models:/{version.name}/{version.version}",  # the alias, resolved once
        "requested_model_uri": MODEL_URI,
        "version": str(version.version),
        "run_id": version.run_id,
        "rows": 200,
    }
    assert (result["engine"], result["output"], result["output_format"]) == ("spark", str(output_path), "parquet")
    record = json.loads((tmp_path / ".predictions.parquet.scoring.json").read_text())
    assert (record["model_uri"], record["rows"]) == (result["model_uri"], 200)
    assert record["task_identity"]["airflow.dag_run_id"] == dag_run_id
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        ".predictions.parquet.scoring.json",
        "instances.csv",
        "predictions.parquet",
    ]  # no temporary output left behind
    written = pd.read_parquet(output_path)
    key = list(rows.columns)
    written = written.sort_values(key).reset_index(drop=True)
    expected = pd.concat([rows, mlflow.pyfunc.load_model(MODEL_URI).predict(rows)], axis=1)
    expected = expected.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(written, expected, check_dtype=False)
