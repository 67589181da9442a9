"""MlflowModelDataset: save logs a model, load reads it back by run, registry alias or model id (real sqlite store)."""

from __future__ import annotations

from collections.abc import Iterator

import mlflow
import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, DatasetError
from sklearn.linear_model import LogisticRegression

from airflow_kedro_mlflow.datasets import MlflowModelDataset


class AddOne(mlflow.pyfunc.PythonModel):
    """A tiny pyfunc model: adds one to every value."""

    def predict(self, context, model_input, params=None):
        return model_input + 1


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One sqlite store for the module; the cwd is its folder (MLflow's default ./mlruns artifact root)."""
    root = tmp_path_factory.mktemp("dataset-store")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        yield f"sqlite:///{root / 'store.db'}"
    while mlflow.active_run() is not None:
        mlflow.end_run()


def latest_run(store: str):
    client = mlflow.MlflowClient(store)
    experiment_id = client.get_experiment_by_name("Default").experiment_id
    (run,) = client.search_runs([experiment_id], order_by=["attributes.start_time DESC"], max_results=1)
    return run


FRAME = pd.DataFrame({"x": [1.0, 2.0]})


def test_save_logs_a_new_run_and_load_returns_that_model(store):
    dataset = MlflowModelDataset(tracking_uri=store)

    dataset.save(AddOne())

    assert dataset.model_uri.startswith("models:/m-")
    pd.testing.assert_frame_equal(dataset.load().predict(FRAME), FRAME + 1)
    model = mlflow.MlflowClient(store).get_logged_model(dataset.model_uri.removeprefix("models:/"))
    assert mlflow.MlflowClient(store).get_run(model.source_run_id).info.status == "FINISHED"
    assert mlflow.get_tracking_uri() != store  # the process' URI is restored after each call


def test_save_logs_into_the_active_run_and_load_by_run_id(store):
    mlflow.set_tracking_uri(store)
    try:
        with mlflow.start_run() as run:
            MlflowModelDataset(artifact_path="adder").save(AddOne())
    finally:
        mlflow.set_tracking_uri(None)

    loaded = MlflowModelDataset(run_id=run.info.run_id, artifact_path="adder", tracking_uri=store).load()
    pd.testing.assert_frame_equal(loaded.predict(FRAME), FRAME + 1)


def test_save_registers_and_loads_by_alias_through_a_catalog(store):
    MlflowModelDataset(tracking_uri=store, registered_model_name="adder", alias="champion").save(AddOne())
    catalog = DataCatalog.from_config(
        {
            "model": {
                "type": "airflow_kedro_mlflow.datasets.MlflowModelDataset",
                "model_uri": "models:/adder@champion",
                "tracking_uri": store,
            }
        }
    )

    pd.testing.assert_frame_equal(catalog.load("model").predict(FRAME), FRAME + 1)
    by_version = MlflowModelDataset(registered_model_name="adder", version=1, tracking_uri=store)
    assert by_version.model_uri == "models:/adder/1"
    assert by_version.exists()


def test_other_flavors_save_and_load_their_own_objects(store):
    features = np.array([[0.0], [1.0], [2.0], [3.0]])
    classifier = LogisticRegression().fit(features, [0, 0, 1, 1])
    dataset = MlflowModelDataset(
        flavor="mlflow.sklearn",
        tracking_uri=store,
        save_args={"serialization_format": "pickle", "pip_requirements": ["scikit-learn"]},
    )

    dataset.save(classifier)

    assert list(dataset.load().predict(features)) == [0, 0, 1, 1]


def test_missing_model_is_a_dataset_error_naming_the_uri(store):
    dataset = MlflowModelDataset(model_uri="models:/nothing_here@champion", tracking_uri=store)

    assert not dataset.exists()
    with pytest.raises(DatasetError, match=r"cannot load MLflow model 'models:/nothing_here@champion' from tracking"):
        dataset.load()


def test_dataset_without_tracking_server_refuses_mlflow_uris(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(None)

    with pytest.raises(DatasetError, match="has no MLflow tracking server"):
        MlflowModelDataset(model_uri="models:/m@champion").load()
    with pytest.raises(DatasetError, match="has no MLflow tracking server"):
        MlflowModelDataset().save(AddOne())
    assert not (tmp_path / "mlflow.db").exists()


def test_dataset_without_model_cannot_load():
    with pytest.raises(DatasetError, match="has no model to load"):
        MlflowModelDataset().load()


def test_pyfunc_dataset_refuses_objects_that_are_not_python_models(store):
    with pytest.raises(DatasetError, match=r"can only save a mlflow\.pyfunc\.PythonModel, got LogisticRegression"):
        MlflowModelDataset(tracking_uri=store).save(LogisticRegression())
    assert latest_run(store).info.status == "FAILED"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"registered_model_name": "m", "alias": "a", "version": 1}, "both given"),
        ({"alias": "champion"}, "alias/version need registered_model_name"),
        ({"model_uri": "runs:/x/model", "run_id": "x"}, "model_uri='runs:/x/model' and run_id='x' both given"),
        ({"flavor": "mlflow.nope"}, "flavor 'mlflow.nope' cannot be imported"),
        ({"flavor": "json"}, "'json' is not an MLflow flavor"),
        ({"pyfunc_workflow": "loader_module"}, "pyfunc_workflow='loader_module' is not supported"),
        ({"artifact_path": "a/b"}, "must be a plain name"),
    ],
)
def test_bad_options_fail_when_the_catalog_is_built(kwargs, message):
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MlflowModelDataset(**kwargs)


def test_describe_never_shows_credentials():
    dataset = MlflowModelDataset(model_uri="models:/m@a", tracking_uri="http://user:secret@mlflow.internal:5000")

    assert "secret" not in str(dataset)
    assert "mlflow.internal:5000" in str(dataset)
