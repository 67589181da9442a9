"""MlflowArtifactDataset with kedro-mlflow's catalog syntax: the saved file lands in the run (real sqlite store)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow
import pytest
from kedro.io import DataCatalog, DatasetError

from airflow_kedro_mlflow.datasets import MlflowArtifactDataset

TYPE = "airflow_kedro_mlflow.datasets.MlflowArtifactDataset"


def artifacts(run_id: str, folder: str | None = None) -> list[str]:
    return sorted(entry.path for entry in mlflow.MlflowClient().list_artifacts(run_id, folder))


def test_save_writes_the_file_and_logs_it_under_artifact_path(tracking_uri, tmp_path):
    mlflow.set_tracking_uri(tracking_uri)
    target = tmp_path / "reporting" / "report.json"
    data = DataCatalog.from_config(
        {
            "report": {
                "type": TYPE,
                "artifact_path": "reports",
                "dataset": {"type": "json.JSONDataset", "filepath": str(target)},
            }
        }
    )

    with mlflow.start_run() as run:
        data.save("report", {"auc": 0.8})
        loaded = data.load("report")

    assert json.loads(target.read_text()) == {"auc": 0.8} == loaded
    assert artifacts(run.info.run_id, "reports") == ["reports/report.json"]


def test_versioned_dataset_logs_the_version_it_just_wrote_at_the_root(tracking_uri, tmp_path):
    mlflow.set_tracking_uri(tracking_uri)
    dataset = MlflowArtifactDataset(
        dataset={"type": "pandas.CSVDataset", "filepath": str(tmp_path / "table.csv"), "versioned": True}
    )
    import pandas as pd

    with mlflow.start_run() as run:
        dataset.save(pd.DataFrame({"a": [1, 2]}))

    (version,) = (tmp_path / "table.csv").iterdir()
    assert (version / "table.csv").is_file()
    assert artifacts(run.info.run_id) == ["table.csv"]


def test_load_with_run_id_reads_the_runs_copy_and_leaves_the_local_file_alone(tracking_uri, tmp_path):
    mlflow.set_tracking_uri(tracking_uri)
    target = tmp_path / "report.json"
    config = {"type": "json.JSONDataset", "filepath": str(target)}
    with mlflow.start_run() as run:
        MlflowArtifactDataset(dataset=config, artifact_path="reports").save({"from": "run"})
    target.write_text(json.dumps({"from": "local"}))

    loaded = MlflowArtifactDataset(dataset=config, artifact_path="reports", run_id=run.info.run_id).load()

    assert loaded == {"from": "run"}
    assert json.loads(target.read_text()) == {"from": "local"}


def test_load_with_a_wrong_run_id_names_the_artifact_and_the_fix(tracking_uri, tmp_path):
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run() as run:
        pass
    dataset = MlflowArtifactDataset(
        dataset={"type": "json.JSONDataset", "filepath": str(tmp_path / "r.json")}, run_id=run.info.run_id
    )

    with pytest.raises(DatasetError, match=r"cannot download artifact 'r.json' of MLflow run .*Check run_id"):
        dataset.load()


def test_save_without_an_active_run_writes_nothing_and_says_how_to_get_one(tracking_uri, tmp_path):
    mlflow.set_tracking_uri(tracking_uri)
    target = tmp_path / "report.json"
    data = DataCatalog.from_config(
        {"report": {"type": TYPE, "dataset": {"type": "json.JSONDataset", "filepath": str(target)}}}
    )

    with pytest.raises(DatasetError, match=r"MlflowArtifactDataset 'report' has no MLflow run.*mlflow.start_run"):
        data.save("report", {"auc": 0.8})
    assert not target.exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dataset": {"type": "json.JSONDataset", "filepath": "r.json"}, "credentials": {"key": "secret"}},
         "credentials={'key': 'secret'} is not supported. Put the wrapped dataset's credentials inside dataset"),
        ({"dataset": {"filepath": "r.json"}}, "has no 'type'"),
        ({"dataset": "MemoryDataset"}, "MemoryDataset has no file path"),
        ({"dataset": {"type": "json.JSONDataset", "filepath": "memory://r.json"}}, "is on 'memory', not a local file"),
        ({"dataset": {"type": "json.JSONDataset", "filepath": "r.json"}, "artifact_path": "../up"},
         "artifact_path='../up' must be a relative folder"),
        ({"dataset": {"type": "json.JSONDataset", "filepath": "r.json"}, "artifactpath": "x"},
         "Did you mean 'artifact_path'?"),
    ],
)  # fmt: skip
def test_bad_definitions_fail_when_the_catalog_is_built(kwargs, message):
    with pytest.raises(DatasetError, match=re.escape(message)):
        MlflowArtifactDataset(**kwargs)


def test_describe_shows_the_wrapped_dataset(tmp_path: Path):
    dataset = MlflowArtifactDataset(dataset={"type": "json.JSONDataset", "filepath": "r.json"}, artifact_path="a")

    assert "json.JSONDataset" in str(dataset) and "artifact_path='a'" in str(dataset)


def test_wrapping_an_inference_artifact_of_a_pipeline_ml_names_the_plain_type_to_use(tmp_path: Path):
    from airflow_kedro_mlflow.exceptions import ArtifactNotFoundError
    from airflow_kedro_mlflow.model import KedroPipelineModel
    from tests.unit.model.classifier_pipeline import classifier_catalog, classifier_pipeline_ml

    catalog = classifier_catalog(tmp_path, versioned=False)
    catalog["classifier"] = MlflowArtifactDataset(
        dataset={"type": "pickle.PickleDataset", "filepath": str(tmp_path / "classifier.pkl")}
    )

    with pytest.raises(ArtifactNotFoundError, match=r"'classifier' \(MlflowArtifactDataset\).*pickle.PickleDataset"):
        KedroPipelineModel(classifier_pipeline_ml(), catalog).extract_pipeline_artifacts(str(tmp_path / "out"))
