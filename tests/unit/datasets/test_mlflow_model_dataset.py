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
from airflow_kedro_mlflow.model import KedroPipelineModel
from airflow_kedro_mlflow.tracking.tags import IDEMPOTENCY_TAG
from tests.unit.model.classifier_pipeline import (
    classifier_catalog,
    classifier_pipeline_ml,
    run_inference,
    sample_instances,
    train,
)


class AddOne(mlflow.pyfunc.PythonModel):
    """A tiny pyfunc model: adds one to every value."""

    def predict(self, context, model_input, params=None):
        return model_input + 1


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, new_mlflow_store) -> Iterator[str]:
    """One sqlite store for the module; the cwd is its folder (MLflow's default ./mlruns artifact root)."""
    root = tmp_path_factory.mktemp("dataset-store")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        yield new_mlflow_store(root, "store.db")
    while mlflow.active_run() is not None:
        mlflow.end_run()


def all_runs(store: str) -> list:
    client = mlflow.MlflowClient(store)
    return client.search_runs([experiment.experiment_id for experiment in client.search_experiments()])


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


def test_refused_saves_leave_no_run_behind(store):
    runs_before = len(all_runs(store))

    with pytest.raises(DatasetError, match=r"can only save a mlflow\.pyfunc\.PythonModel, got LogisticRegression"):
        MlflowModelDataset(tracking_uri=store).save(LogisticRegression())
    with pytest.raises(DatasetError, match="not a valid registered model name"):
        MlflowModelDataset(tracking_uri=store, registered_model_name="a b").save(AddOne())
    with pytest.raises(DatasetError, match="alias 'v1' is reserved"):
        MlflowModelDataset(tracking_uri=store, registered_model_name="adder", alias="v1").save(AddOne())

    assert len(all_runs(store)) == runs_before


def test_kedro_pipeline_model_is_logged_once_per_run_and_content_with_the_run_lineage(store, tmp_path):
    catalog = classifier_catalog(tmp_path / "data")
    train(classifier_pipeline_ml(), catalog)
    lineage = {"kedro.pipeline_name": "training", "kedro.env": "local", "airflow.dag_id": "retrain"}
    client = mlflow.MlflowClient(store)
    dataset = MlflowModelDataset(tracking_uri=store, registered_model_name="classifier", alias="candidate")
    mlflow.set_tracking_uri(store)
    try:
        with mlflow.start_run(tags={**lineage, "unrelated": "x"}) as run:
            dataset.save(KedroPipelineModel(classifier_pipeline_ml(), catalog))
            # the same model saved again into the same run (a retried task sharing the run): no second model/version
            again = MlflowModelDataset(tracking_uri=store, registered_model_name="classifier", alias="candidate")
            again.save(KedroPipelineModel(classifier_pipeline_ml(), catalog))
    finally:
        mlflow.set_tracking_uri(None)

    assert dataset.model_uri == again.model_uri == "models:/classifier/1"
    (version,) = client.search_model_versions("name = 'classifier'")
    assert {key: version.tags[key] for key in lineage} == lineage
    assert "unrelated" not in version.tags
    assert IDEMPOTENCY_TAG in version.tags
    logged_models = client.search_logged_models([run.info.experiment_id])
    (logged,) = [model for model in logged_models if model.source_run_id == run.info.run_id]
    assert {key: logged.tags[key] for key in lineage} == lineage
    assert client.get_run(run.info.run_id).info.status == "FINISHED"  # an active run is used, never ended
    instances = sample_instances(5)
    expected = run_inference(classifier_pipeline_ml().inference, catalog, instances)
    pd.testing.assert_frame_equal(again.load().predict(instances), expected)


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
