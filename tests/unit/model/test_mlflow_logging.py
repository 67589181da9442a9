"""A KedroPipelineModel logged with mlflow.pyfunc.log_model to a temporary sqlite store, then loaded back."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from kedro.io import DataCatalog
from mlflow.exceptions import MlflowException

from airflow_kedro_mlflow.exceptions import ArtifactIntegrityError
from airflow_kedro_mlflow.model import KedroPipelineModel, default_pip_requirements, infer_model_signature
from airflow_kedro_mlflow.pipeline import PipelineML
from tests.unit.model.classifier_pipeline import (
    classifier_catalog,
    classifier_pipeline_ml,
    load_features,
    run_inference,
    sample_instances,
    train,
)


def log(model: KedroPipelineModel, signature, tracking_uri: str, folder: Path) -> str:
    """Log ``model`` in a new run of the store at ``tracking_uri``; return its model URI."""
    mlflow.set_tracking_uri(tracking_uri)
    # An explicit artifact location: a sqlite store's default experiment keeps artifacts in ./mlruns of the cwd.
    experiment_id = mlflow.MlflowClient().create_experiment("logged", artifact_location=(folder / "mlruns").as_uri())
    with mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=model,
            artifacts=model.extract_pipeline_artifacts(folder / "params"),
            signature=signature,
            pip_requirements=default_pip_requirements(),
        )
    return info.model_uri


@pytest.fixture(scope="module")
def logged(tmp_path_factory, new_mlflow_store) -> Iterator[tuple[str, str, PipelineML, DataCatalog]]:
    """One trained classifier logged once in a module-wide sqlite store (creating a store costs seconds)."""
    folder = tmp_path_factory.mktemp("logged")
    pipeline_ml = classifier_pipeline_ml()
    catalog = classifier_catalog(folder / "data")
    train(pipeline_ml, catalog)
    signature = infer_model_signature(load_features()[0], pipeline_ml.inference, catalog)
    tracking_uri = new_mlflow_store(folder)
    uri = log(KedroPipelineModel(pipeline_ml, catalog), signature, tracking_uri, folder)
    yield uri, tracking_uri, pipeline_ml, catalog
    mlflow.set_tracking_uri(None)


@pytest.fixture
def logged_model_uri(logged) -> str:
    mlflow.set_tracking_uri(logged[1])
    return logged[0]


@pytest.fixture
def pipeline_ml(logged) -> PipelineML:
    return logged[2]


@pytest.fixture
def trained_catalog(logged) -> DataCatalog:
    return logged[3]


@pytest.mark.parametrize("rows", [1, 10_000])
def test_loaded_model_predicts_as_sequential_runner(logged_model_uri, pipeline_ml, trained_catalog, rows):
    instances = sample_instances(rows, seed=rows)
    loaded = mlflow.pyfunc.load_model(logged_model_uri)
    expected = run_inference(pipeline_ml.inference, trained_catalog, instances)
    pd.testing.assert_frame_equal(loaded.predict(instances), expected)


def test_loaded_model_takes_params_from_the_signature(logged_model_uri, pipeline_ml, trained_catalog):
    instances = sample_instances(300)
    loaded = mlflow.pyfunc.load_model(logged_model_uri)
    assert loaded.metadata.get_params_schema().to_dict() == [
        {"name": "threshold", "type": "double", "default": 0.5, "shape": None},
        {"name": "runner", "type": "string", "default": "SequentialRunner", "shape": None},
    ]
    expected = run_inference(pipeline_ml.inference, trained_catalog, instances, threshold=0.95)
    pd.testing.assert_frame_equal(loaded.predict(instances, params={"threshold": 0.95}), expected)


def test_predict_time_runner_param_selects_the_runner_as_in_kedro_mlflow(logged_model_uri, pipeline_ml,
                                                                         trained_catalog):  # fmt: skip
    from kedro.runner import ThreadRunner

    instances = sample_instances(50)
    loaded = mlflow.pyfunc.load_model(logged_model_uri)
    model = loaded.unwrap_python_model()
    expected = run_inference(pipeline_ml.inference, trained_catalog, instances, threshold=0.7)

    threaded = loaded.predict(instances, params={"runner": "ThreadRunner", "threshold": 0.7})

    pd.testing.assert_frame_equal(threaded, expected)
    assert isinstance(model._predict_runners["ThreadRunner"], ThreadRunner)  # the runner really ran
    pd.testing.assert_frame_equal(loaded.predict(instances, params={"runner": "SequentialRunner", "threshold": 0.7}),
                                  expected)  # fmt: skip


@pytest.mark.parametrize(
    ("runner", "hint"),
    [("ThreadRuner", "Did you mean 'ThreadRunner'"), ("ParallelRunner", "worker processes"), ("os.system", "")],
)
def test_unknown_predict_time_runner_is_a_clear_input_error(logged_model_uri, runner, hint):
    from airflow_kedro_mlflow.model import KedroPipelineModelInputError

    loaded = mlflow.pyfunc.load_model(logged_model_uri)
    with pytest.raises(KedroPipelineModelInputError, match=re.escape(f"Unknown runner {runner!r}")) as refused:
        loaded.predict(sample_instances(2), params={"runner": runner})
    assert hint in str(refused.value) and "'SequentialRunner' or 'ThreadRunner'" in str(refused.value)


def test_wrongly_typed_param_is_refused_by_mlflow_before_predict(logged_model_uri):
    loaded = mlflow.pyfunc.load_model(logged_model_uri)
    with pytest.raises(MlflowException, match="threshold"):
        loaded.predict(sample_instances(2), params={"threshold": "high"})


def test_missing_column_is_refused_by_mlflow_naming_it(logged_model_uri):
    loaded = mlflow.pyfunc.load_model(logged_model_uri)
    with pytest.raises(MlflowException, match=re.escape("mean radius")):
        loaded.predict(sample_instances(2).drop(columns=["mean radius"]))


def test_numpy_model_round_trip(tracking_uri, tmp_path):
    pipeline_ml = classifier_pipeline_ml(numpy_input=True)
    catalog = classifier_catalog(tmp_path / "data", numpy_input=True)
    train(pipeline_ml, catalog)
    features = load_features()[0].to_numpy()
    signature = infer_model_signature(features, pipeline_ml.inference, catalog)
    uri = log(KedroPipelineModel(pipeline_ml, catalog), signature, tracking_uri, tmp_path)
    instances = sample_instances(40).to_numpy()
    loaded = mlflow.pyfunc.load_model(uri)
    pd.testing.assert_frame_equal(
        loaded.predict(instances, params={"threshold": 0.3}),
        run_inference(pipeline_ml.inference, catalog, instances, threshold=0.3),
    )


def test_artifact_modified_inside_the_logged_model_fails_loading_naming_it(logged_model_uri, tmp_path):
    local = Path(mlflow.artifacts.download_artifacts(logged_model_uri, dst_path=str(tmp_path / "downloaded")))
    (packed,) = (local / "artifacts").rglob("classifier.pkl")
    packed.write_bytes(packed.read_bytes() + b"\0")
    with pytest.raises(ArtifactIntegrityError, match=re.escape(f"Artifact 'classifier' at {packed} has sha256")):
        mlflow.pyfunc.load_model(str(local))
