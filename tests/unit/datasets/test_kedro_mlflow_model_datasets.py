"""kedro-mlflow's model datasets with their own argument names, mapped onto MlflowModelDataset (real sqlite store)."""

from __future__ import annotations

import re

import mlflow
import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, DatasetError
from sklearn.linear_model import LogisticRegression

from airflow_kedro_mlflow.datasets import (
    MlflowModelLocalFileSystemDataset,
    MlflowModelRegistryDataset,
    MlflowModelTrackingDataset,
)

FRAME = pd.DataFrame({"x": [1.0, 2.0]})
SKLEARN_SAVE_ARGS = {"serialization_format": "pickle", "pip_requirements": ["scikit-learn"]}


class AddOne(mlflow.pyfunc.PythonModel):
    """A tiny pyfunc model: adds one to every value."""

    def predict(self, context, model_input, params=None):
        return model_input + 1


def fitted() -> LogisticRegression:
    return LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1]))


def test_tracking_dataset_logs_into_the_active_run_under_its_name_and_registers(tracking_uri):
    mlflow.set_tracking_uri(tracking_uri)
    data = DataCatalog.from_config(
        {
            "adder": {
                "type": "airflow_kedro_mlflow.datasets.MlflowModelTrackingDataset",
                "flavor": "mlflow.pyfunc",
                "pyfunc_workflow": "python_model",
                "save_args": {"name": "adder", "registered_model_name": "adder"},
            }
        }
    )

    with mlflow.start_run() as run:
        data.save("adder", AddOne())
    loaded = data.load("adder")

    pd.testing.assert_frame_equal(loaded.predict(FRAME), FRAME + 1)
    client = mlflow.MlflowClient()
    (model,) = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert (model.name, model.source_run_id) == ("adder", run.info.run_id)
    (version,) = client.search_model_versions("name = 'adder'")
    assert version.run_id == run.info.run_id


def test_tracking_dataset_loads_load_args_model_uri_and_refuses_to_save_over_it(tracking_uri):
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run() as run:
        MlflowModelTrackingDataset(pyfunc_workflow="python_model", save_args={"name": "add_one"}).save(AddOne())
    dataset = MlflowModelTrackingDataset(
        flavor="mlflow.pyfunc",
        pyfunc_workflow="python_model",
        load_args={"model_uri": f"runs:/{run.info.run_id}/add_one"},
    )

    pd.testing.assert_frame_equal(dataset.load().predict(FRAME), FRAME + 1)
    with mlflow.start_run(), pytest.raises(DatasetError, match="names an existing model, so this dataset cannot save"):
        dataset.save(AddOne())


def test_tracking_dataset_without_an_active_run_says_how_to_get_one(tracking_uri):
    mlflow.set_tracking_uri(tracking_uri)

    with pytest.raises(DatasetError, match=r"MlflowModelTrackingDataset has no MLflow run.*mlflow.start_run"):
        MlflowModelTrackingDataset(pyfunc_workflow="python_model").save(AddOne())
    assert mlflow.MlflowClient().search_runs(["0"]) == []


@pytest.mark.slow
def test_registry_dataset_loads_by_alias_version_and_latest(tracking_uri):
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run():
        for name in ("first", "second"):
            MlflowModelTrackingDataset(save_args={"name": name, "registered_model_name": "adder"}).save(AddOne())
    mlflow.MlflowClient().set_registered_model_alias("adder", "champion", "1")

    uris = [
        MlflowModelRegistryDataset(model_name="adder", **kwargs).model_uri
        for kwargs in ({"alias": "champion"}, {"stage_or_version": 2}, {"stage_or_version": "1"}, {})
    ]
    latest = MlflowModelRegistryDataset(model_name="adder").load()

    assert uris == ["models:/adder@champion", "models:/adder/2", "models:/adder/1", "models:/adder/latest"]
    assert mlflow.MlflowClient().get_model_version("adder", "2").source == f"models:/{latest.metadata.model_uuid}"
    champion = MlflowModelRegistryDataset(model_name="adder", alias="champion").load()
    pd.testing.assert_frame_equal(champion.predict(FRAME), FRAME + 1)


def test_local_filesystem_dataset_saves_and_loads_a_versioned_model_folder(tmp_path):
    data = DataCatalog.from_config(
        {
            "local_model": {
                "type": "airflow_kedro_mlflow.datasets.MlflowModelLocalFileSystemDataset",
                "flavor": "mlflow.sklearn",
                "filepath": str(tmp_path / "classifier"),
                "save_args": SKLEARN_SAVE_ARGS,
                "versioned": True,
            }
        }
    )

    data.save("local_model", fitted())

    (version,) = (tmp_path / "classifier").iterdir()
    assert (version / "classifier" / "MLmodel").is_file()
    assert data.exists("local_model")
    assert list(data.load("local_model").predict(np.array([[3.0]]))) == [1]


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (MlflowModelTrackingDataset, {"run_id": "abc"},
         "run_id='abc' is not supported. kedro-mlflow 2.x dropped run_id/artifact_path"),
        (MlflowModelTrackingDataset, {"artifact_path": "model"}, "load_args: {model_uri: runs:/<run_id>/<name>}"),
        (MlflowModelTrackingDataset, {"pyfunc_workflow": "loader_module"}, "'loader_module' is not supported"),
        (MlflowModelTrackingDataset, {"save_args": {"name": "a", "artifact_path": "b"}},
         "name='a' and artifact_path='b'"),
        (MlflowModelTrackingDataset, {"flavor": "mlflow.nope"}, "flavor 'mlflow.nope' cannot be imported"),
        (MlflowModelRegistryDataset, {"model_name": "m", "stage_or_version": "Production"},
         "stage_or_version='Production' is a registry stage"),
        (MlflowModelRegistryDataset, {"model_name": "m", "alias": "a", "stage_or_version": 1}, "both given"),
        (MlflowModelRegistryDataset, {"model_name": "m", "load_args": {"model_uri": "runs:/x/m"}},
         "load_args model_uri is not used here"),
        (MlflowModelRegistryDataset, {"model_name": "m", "save_args": {}}, "a registry dataset only loads"),
        (MlflowModelLocalFileSystemDataset, {"filepath": "m", "log_args": {"a": 1}},
         "accepts log_args here but never uses them"),
        (MlflowModelLocalFileSystemDataset, {"filepath": "m", "pyfunc_workflow": "loader_module"},
         "'loader_module' is not supported"),
        (MlflowModelLocalFileSystemDataset, {"filepath": "m", "flavour": "mlflow.sklearn"}, "Did you mean 'flavor'?"),
    ],
)  # fmt: skip
def test_unsupported_kedro_mlflow_arguments_fail_when_the_catalog_is_built(cls, kwargs, message):
    with pytest.raises(DatasetError, match=re.escape(message)):
        cls(**kwargs)


def test_registry_dataset_refuses_to_save_like_kedro_mlflow():
    with pytest.raises(DatasetError, match=r"a registry dataset only loads.*registered_model_name"):
        MlflowModelRegistryDataset(model_name="m").save(AddOne())
