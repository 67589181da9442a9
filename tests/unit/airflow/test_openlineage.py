"""OpenLineage naming of dataset locations and MLflow objects, and the datasets carried by the training XCom.

Pure functions only: the provider itself (and the events it emits) is exercised in
tests/integration/test_openlineage.py, where ``apache-airflow-providers-openlineage`` is installed.
"""

from __future__ import annotations

import json
import re

import pytest

from airflow_kedro_mlflow.exceptions import TrainingXComError
from airflow_kedro_mlflow.modelify.result import ModelifyResult
from airflow_kedro_mlflow.openlineage import (
    LineageDataset,
    OpenLineageMixin,
    dataset_naming,
    mlflow_namespace,
    modelify_lineage,
    promotion_lineage,
    scoring_lineage,
    training_lineage,
)
from airflow_kedro_mlflow.promotion import KEPT_CHAMPION, PROMOTED, PromotionDecision
from airflow_kedro_mlflow.scoring.result import ScoringResult
from airflow_kedro_mlflow.training.lineage import safe_location
from airflow_kedro_mlflow.training_result import DatasetRecord, TrainingResult

ACCOUNT = "account.dfs.core.windows.net"


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/data/01_raw/iris.csv", ("file", "/data/01_raw/iris.csv")),
        ("file:///data/01_raw/iris.csv", ("file", "/data/01_raw/iris.csv")),
        ("file://nas01/data/iris.csv", ("file://nas01", "/data/iris.csv")),
        ("s3://bucket/raw/iris.csv", ("s3://bucket", "raw/iris.csv")),
        ("s3a://bucket/raw/iris.csv", ("s3://bucket", "raw/iris.csv")),
        ("gs://bucket/raw/iris.csv", ("gs://bucket", "raw/iris.csv")),
        ("gcs://bucket/raw/iris.csv", ("gs://bucket", "raw/iris.csv")),
        (f"abfss://container@{ACCOUNT}/raw/iris.csv", (f"abfss://container@{ACCOUNT}", "raw/iris.csv")),
        (f"abfs://container@{ACCOUNT}/raw/iris.csv", (f"abfs://container@{ACCOUNT}", "raw/iris.csv")),
        ("hdfs://namenode:8020/user/iris.csv", ("hdfs://namenode:8020", "user/iris.csv")),
        ("dbfs:/mnt/raw/iris.csv", ("dbfs", "/mnt/raw/iris.csv")),
        ("https://example.org/iris.csv", ("https://example.org", "iris.csv")),
    ],
)
def test_dataset_naming_follows_the_openlineage_spec(location: str, expected: tuple[str, str]) -> None:
    assert dataset_naming(location) == expected


@pytest.mark.parametrize(
    "location",
    [
        "s3://AKIAKEY:s3cr3t@bucket/raw/iris.csv?X-Amz-Signature=s3cr3t#s3cr3t",
        "sftp://user:s3cr3t@host:22/raw/iris.csv",
        f"abfss://container:s3cr3t@{ACCOUNT}/raw/iris.csv?sig=s3cr3t",
        "https://example.org/raw/iris.csv?token=s3cr3t",
    ],
)
def test_dataset_naming_drops_credentials_and_query(location: str) -> None:
    namespace, name = dataset_naming(location)
    assert "s3cr3t" not in namespace + name
    assert name.endswith("raw/iris.csv")


@pytest.mark.parametrize("location", ["", "data/01_raw/iris.csv"])
def test_dataset_naming_refuses_a_relative_path(location: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(location))):
        dataset_naming(location)


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("data/01_raw/iris.csv", "/project/data/01_raw/iris.csv"),
        ("/abs/iris.csv", "/abs/iris.csv"),
        ("file:///abs/iris.csv", "/abs/iris.csv"),
        ("s3://AKIAKEY:s3cr3t@bucket/iris.csv?X-Amz-Signature=s3cr3t", "s3://bucket/iris.csv"),
        (f"abfss://container@{ACCOUNT}/iris.csv?sig=s3cr3t", f"abfss://container@{ACCOUNT}/iris.csv"),
        (f"abfss://container:s3cr3t@{ACCOUNT}/iris.csv", f"abfss://container@{ACCOUNT}/iris.csv"),
        ("hdfs://user:s3cr3t@namenode:8020/iris.csv", "hdfs://namenode:8020/iris.csv"),
    ],
)
def test_catalog_locations_are_absolute_and_without_credentials(location: str, expected: str) -> None:
    assert safe_location(location, "/project") == expected


@pytest.mark.parametrize(
    ("tracking_uri", "expected"),
    [
        ("http://mlflow.internal:5000/", "http://mlflow.internal:5000"),
        ("https://admin:s3cr3t@mlflow.internal/prefix?token=s3cr3t", "https://mlflow.internal/prefix"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
        ("databricks", "databricks"),
    ],
)
def test_mlflow_namespace_is_the_public_tracking_uri(tracking_uri: str, expected: str) -> None:
    assert mlflow_namespace(tracking_uri) == expected


def _training(datasets: dict[str, list[DatasetRecord]] | None) -> TrainingResult:
    return TrainingResult(
        run_id="r1",
        experiment_id="7",
        tracking_uri="http://admin:s3cr3t@mlflow:5000",
        project_path="/project",
        env="local",
        conf_source=None,
        runtime_params={},
        pipeline_name="training",
        input_name="instances",
        datasets=datasets,
    )


def test_training_datasets_round_trip_through_the_xcom() -> None:
    datasets = {
        "inputs": [DatasetRecord("raw_data", "/project/data/01_raw/raw.csv")],
        "outputs": [DatasetRecord("classifier", "s3://bucket/06_models/classifier.pkl", "2026-11-29T17.00.00.000Z")],
    }
    payload = json.loads(json.dumps(_training(datasets).to_xcom()))
    assert TrainingResult.from_xcom(payload).datasets == datasets


def test_training_xcom_without_datasets_is_still_accepted() -> None:
    payload = _training(None).to_xcom()
    del payload["datasets"]
    assert TrainingResult.from_xcom(payload).datasets is None


def test_malformed_training_datasets_are_named() -> None:
    payload = _training(None).to_xcom()
    payload["datasets"] = {"inputs": [{"name": "raw_data"}]}
    with pytest.raises(TrainingXComError, match=re.escape("datasets['inputs'][0].location")):
        TrainingResult.from_xcom(payload)


def test_training_lineage_reads_and_writes_catalog_datasets_and_the_run() -> None:
    lineage = training_lineage(
        _training(
            {
                "inputs": [DatasetRecord("raw_data", "/p/raw.csv"), DatasetRecord("odd", "relative/x.csv")],
                "outputs": [DatasetRecord("classifier", "s3://bucket/classifier.pkl", "v1")],
            }
        )
    )
    assert lineage.inputs == (LineageDataset("file", "/p/raw.csv"),)  # the relative one is left out, not fatal
    assert lineage.outputs == (
        LineageDataset("s3://bucket", "classifier.pkl", "v1"),
        LineageDataset("http://mlflow:5000", "experiments/7/runs/r1"),
    )


def test_modelify_lineage_goes_from_the_training_run_to_the_model_version() -> None:
    result = ModelifyResult(model_uri="models:/iris/3", run_id="r1", experiment_id="7", registered_model_name="iris")
    lineage = modelify_lineage(result, "http://mlflow:5000")
    assert lineage.inputs == (LineageDataset("http://mlflow:5000", "experiments/7/runs/r1"),)
    assert lineage.outputs == (LineageDataset("http://mlflow:5000", "models/iris/3"),)
    logged_only = ModelifyResult(model_uri="models:/m-0123", run_id="r1", experiment_id="7")
    assert modelify_lineage(logged_only, "http://mlflow:5000").outputs == (
        LineageDataset("http://mlflow:5000", "models/m-0123"),
    )


@pytest.mark.parametrize(("decision", "moved"), [(PROMOTED, True), (KEPT_CHAMPION, False)])
def test_promotion_lineage_writes_the_alias_only_when_it_moved(decision: str, moved: bool) -> None:
    promotion = PromotionDecision(decision, "reason", "iris", "3", "champion", "accuracy", 0.9, None, None)
    lineage = promotion_lineage(promotion, "http://mlflow:5000")
    assert lineage.inputs == (LineageDataset("http://mlflow:5000", "models/iris/3"),)
    assert lineage.outputs == ((LineageDataset("http://mlflow:5000", "models/iris@champion"),) if moved else ())


def _scoring(output: str) -> ScoringResult:
    return ScoringResult(
        model_uri="models:/iris/3",
        requested_model_uri="models:/iris@champion",
        registered_model_name="iris",
        version="3",
        run_id="r1",
        rows=10,
        input="ignored",
        output=output,
        output_format="parquet",
        engine="pandas",
        tracking_uri="http://mlflow:5000",
    )


def test_scoring_lineage_reads_the_model_version_and_the_input_and_writes_the_output(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.chdir(tmp_path)
    lineage = scoring_lineage(_scoring("s3://bucket/scores/2026-11-29.parquet?token=s3cr3t"), "in/rows.csv")
    assert lineage.inputs == (
        LineageDataset("http://mlflow:5000", "models/iris/3"),
        LineageDataset("file", str(tmp_path / "in" / "rows.csv")),  # relative: as this process read it
    )
    assert lineage.outputs == (LineageDataset("s3://bucket", "scores/2026-11-29.parquet"),)
    from_catalog = scoring_lineage(_scoring("/data/scores.parquet"), None)  # a catalog input: its file is not known
    assert from_catalog.inputs == (LineageDataset("http://mlflow:5000", "models/iris/3"),)


def test_a_run_model_uri_is_named_after_the_run() -> None:
    result = _scoring("/data/scores.parquet")
    result.model_uri = "runs:/r1/model"
    assert scoring_lineage(result, None).inputs == (LineageDataset("http://mlflow:5000", "runs/r1/model"),)


def test_a_lineage_that_cannot_be_built_costs_the_lineage_not_the_task(caplog: pytest.LogCaptureFixture) -> None:
    def broken(_: object) -> None:
        raise KeyError("datasets")

    operator = OpenLineageMixin()
    operator._record_lineage(broken, object())
    assert operator.get_openlineage_facets_on_complete(task_instance=None) is None
    assert "No OpenLineage datasets" in caplog.text
