"""Bad predict-time input: a clear ``KedroPipelineModelError`` for Python callers, a clean 400 from MLflow's server.

MLflow's scoring server answers an ``MlflowException`` raised by ``predict`` with its error code's HTTP status and
the message alone; any other exception becomes a 400 whose body carries the full traceback, with the server's file
paths. The server-side checks here run MLflow's own ``scoring_server.invocations`` (what ``mlflow models serve``
calls per request) on a model logged to a real sqlite store and loaded back.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import mlflow
import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node
from kedro.runner import ThreadRunner
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PythonModelContext, scoring_server

from airflow_kedro_mlflow.exceptions import ArtifactNotFoundError, KedroPipelineModelError
from airflow_kedro_mlflow.model import KedroPipelineModel, default_pip_requirements, infer_model_signature
from tests.unit.model.classifier_pipeline import (
    classifier_catalog,
    classifier_pipeline_ml,
    load_features,
    sample_instances,
    train,
)


def loaded(model: KedroPipelineModel) -> KedroPipelineModel:
    """Load ``model`` as MLflow does after unpickling it: a fresh copy, then load_context with artifact paths."""
    paths = model.extract_pipeline_artifacts()
    fresh = cloudpickle.loads(cloudpickle.dumps(model))
    fresh.load_context(PythonModelContext(artifacts=paths, model_config={}))
    return fresh


def assert_bad_input(error: pytest.ExceptionInfo, *fragments: str) -> None:
    """The error is ours, is an MLflow 400 (INVALID_PARAMETER_VALUE), fits on one line and names ``fragments``."""
    exc = error.value
    assert isinstance(exc, KedroPipelineModelError)
    assert isinstance(exc, MlflowException)
    assert exc.error_code == "INVALID_PARAMETER_VALUE"
    assert exc.get_http_status_code() == 400
    assert "\n" not in str(exc)
    for fragment in fragments:
        assert fragment in str(exc)


@pytest.fixture
def classifier(trained_catalog, pipeline_ml) -> KedroPipelineModel:
    return loaded(KedroPipelineModel(pipeline_ml, trained_catalog))


# -- params --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "shown"), [(None, "None"), (float("nan"), "NaN"), (np.float64("nan"), "NaN")])
def test_missing_param_value_is_refused_naming_the_param_and_its_default(classifier, value, shown):
    with pytest.raises(KedroPipelineModelError) as error:
        classifier.predict(None, sample_instances(2), params={"threshold": value})

    assert_bad_input(error, f"Parameter 'threshold' is {shown}", "a float", "0.5")


def test_param_whose_training_value_is_none_accepts_none():
    inference = Pipeline([node(pick, ["instances", "params:column"], "out", name="pick")])
    model = loaded(KedroPipelineModel(inference, DataCatalog({"params:column": MemoryDataset(None)}), "instances"))
    frame = pd.DataFrame({"a": [1.0, 2.0]})

    pd.testing.assert_frame_equal(model.predict(None, frame, params={"column": None}), frame)


def test_unknown_param_is_a_bad_input_error(classifier):
    with pytest.raises(KedroPipelineModelError) as error:
        classifier.predict(None, sample_instances(1), params={"treshold": 0.1})

    assert_bad_input(error, "Unknown parameter 'treshold'", "Did you mean 'threshold'?")


# -- empty input ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "empty", [sample_instances(3).iloc[:0], sample_instances(3).to_numpy()[:0], []], ids=["frame", "array", "list"]
)
def test_empty_input_is_refused_before_any_node_runs(classifier, empty):
    with pytest.raises(KedroPipelineModelError) as error:
        classifier.predict(None, empty)

    assert_bad_input(error, "model_input is empty", "send at least one row")
    assert error.value.__cause__ is None


def test_empty_input_is_refused_with_an_explicit_runner(pipeline_ml, trained_catalog):
    model = loaded(KedroPipelineModel(pipeline_ml, trained_catalog, runner=ThreadRunner()))
    with pytest.raises(KedroPipelineModelError) as error:
        model.predict(None, sample_instances(3).iloc[:0])

    assert_bad_input(error, "model_input is empty")


# -- a node failing on the data ------------------------------------------------------------------------------------


def with_nan(rows: int = 3) -> pd.DataFrame:
    frame = sample_instances(rows)
    frame.iloc[1, 0] = np.nan
    return frame


def test_node_failing_on_the_data_names_the_node_and_the_cause_in_one_line(classifier):
    with pytest.raises(KedroPipelineModelError) as error:
        classifier.predict(None, with_nan())

    assert_bad_input(error, "Node 'predict_proba'", "ValueError: Input X contains NaN.")
    assert isinstance(error.value.__cause__, ValueError)


def test_node_failing_with_an_explicit_runner_names_the_node_too(pipeline_ml, trained_catalog):
    model = loaded(KedroPipelineModel(pipeline_ml, trained_catalog, runner=ThreadRunner()))
    with pytest.raises(KedroPipelineModelError) as error:
        model.predict(None, with_nan())

    assert_bad_input(error, "Node 'predict_proba'", "Input X contains NaN.")


def test_nan_in_the_data_reaches_nodes_that_handle_it():
    inference = Pipeline([node(fill_missing, ["instances", "params:fill"], "out", name="fill")])
    model = loaded(KedroPipelineModel(inference, DataCatalog({"params:fill": MemoryDataset(0.0)}), "instances"))

    result = model.predict(None, pd.DataFrame({"a": [1.0, np.nan]}))

    pd.testing.assert_frame_equal(result, pd.DataFrame({"a": [1.0, 0.0]}))


def test_node_error_message_shows_no_server_path(tmp_path):
    inference = Pipeline([node(read_lookup, ["instances", "params:lookup"], "out", name="lookup")])
    catalog = DataCatalog({"params:lookup": MemoryDataset(str(tmp_path / "lookups" / "table.csv"))})
    model = loaded(KedroPipelineModel(inference, catalog, "instances"))

    with pytest.raises(KedroPipelineModelError) as error:
        model.predict(None, pd.DataFrame({"a": [1.0]}))

    assert_bad_input(error, "Node 'lookup'", "ValueError: no row for 'a' in <path>")
    assert str(tmp_path) not in str(error.value)


def test_node_bug_that_is_not_about_the_input_propagates_unchanged():
    inference = Pipeline([node(broken, "instances", "out", name="broken")])
    model = loaded(KedroPipelineModel(inference, DataCatalog(), "instances"))

    with pytest.raises(RuntimeError, match=r"^the node is broken$"):
        model.predict(None, pd.DataFrame({"a": [1.0]}))


def pick(frame: pd.DataFrame, column: str | None) -> pd.DataFrame:
    return frame if column is None else frame[[column]]


def fill_missing(frame: pd.DataFrame, fill: float) -> pd.DataFrame:
    return frame.fillna(fill)


def read_lookup(frame: pd.DataFrame, lookup: str) -> pd.DataFrame:
    raise ValueError(f"no row for {frame.columns[0]!r} in {lookup}\nsee the lookup table's owner")


def broken(frame: pd.DataFrame) -> pd.DataFrame:
    raise RuntimeError("the node is broken")


# -- through MLflow: pyfunc, the scoring server, a logged model missing an artifact ---------------------------------


@dataclass
class Logged:
    signed: Path  # local directory of the model logged with its signature
    unsigned: Path  # the same model logged without a signature (nothing stops bad columns before the nodes)


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    """The classifier logged twice to a module-wide sqlite store, downloaded to local model directories."""
    folder = tmp_path_factory.mktemp("logged")
    pipeline_ml = classifier_pipeline_ml()
    catalog = classifier_catalog(folder / "data")
    train(pipeline_ml, catalog)
    signature = infer_model_signature(load_features()[0], pipeline_ml.inference, catalog)
    model = KedroPipelineModel(pipeline_ml, catalog)
    artifacts = model.extract_pipeline_artifacts(folder / "params")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # a sqlite store keeps artifacts in ./mlruns of the working directory
        mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
        try:
            paths = {}
            for name, model_signature in (("signed", signature), ("unsigned", None)):
                with mlflow.start_run():
                    info = mlflow.pyfunc.log_model(
                        name=name,
                        python_model=model,
                        artifacts=artifacts,
                        signature=model_signature,
                        pip_requirements=default_pip_requirements(),
                    )
                paths[name] = Path(
                    mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(folder / f"local-{name}"))
                )
        finally:
            mlflow.set_tracking_uri(None)
    yield Logged(**paths)


@pytest.fixture(scope="module")
def signed(logged: Logged) -> Any:
    return mlflow.pyfunc.load_model(str(logged.signed))


@pytest.fixture(scope="module")
def unsigned(logged: Logged) -> Any:
    return mlflow.pyfunc.load_model(str(logged.unsigned))


def test_pyfunc_model_refuses_a_nan_param_that_mlflow_lets_through(signed):
    with pytest.raises(KedroPipelineModelError) as error:
        signed.predict(sample_instances(2), params={"threshold": math.nan})

    assert_bad_input(error, "Parameter 'threshold' is NaN")


def split(frame: pd.DataFrame) -> dict[str, Any]:
    return json.loads(frame.to_json(orient="split", index=False))


def instances_with(row: int, column: int, value: Any) -> dict[str, Any]:
    payload = split(sample_instances(3))
    payload["data"][row][column] = value
    return payload


COLUMNS = list(load_features()[0].columns)
BAD_REQUESTS = {
    "null value": ({"dataframe_split": instances_with(1, 0, None)}, "Input X contains NaN"),
    "NaN value": ({"dataframe_split": instances_with(1, 0, "NaN")}, "Input X contains NaN"),
    "null record": ({"dataframe_records": [dict.fromkeys(COLUMNS)]}, "Input X contains NaN"),
    "empty data": ({"dataframe_split": {"columns": COLUMNS, "data": []}}, "model_input is empty"),
    "null param": (
        {"dataframe_split": split(sample_instances(2)), "params": {"threshold": None}},
        "Parameter 'threshold' is None",
    ),
    "wrong columns": ({"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2.0]]}}, "'mean radius'"),
}


def invoke(model: Any, payload: dict[str, Any]) -> tuple[int, str]:
    """Answer ``payload`` as ``mlflow models serve`` does: MLflow's own ``invocations``, errors serialized by it."""
    try:
        response = scoring_server.invocations(
            json.dumps(payload), "application/json", model, model.metadata.get_input_schema()
        )
    except MlflowException as exc:
        return exc.get_http_status_code(), exc.serialize_as_json()
    return response.status, response.response


def assert_clean_400(status: int, body: str, model_dir: Path, *fragments: str) -> None:
    assert status == 400, body
    assert "Traceback" not in body
    assert "stack_trace" not in json.loads(body)
    assert "/site-packages/" not in body
    assert str(model_dir) not in body
    for fragment in fragments:
        assert fragment in json.loads(body)["message"]


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_scoring_server_answers_bad_requests_with_a_clean_400(signed, logged, case):
    payload, cause = BAD_REQUESTS[case]

    status, body = invoke(signed, payload)

    assert_clean_400(status, body, logged.signed, cause)


def test_scoring_server_answers_a_nan_param_with_a_clean_400(signed, logged):
    # JSON has no NaN, but Python's json module (and so MLflow's server) reads the NaN token.
    payload = {"dataframe_split": split(sample_instances(2)), "params": {"threshold": math.nan}}

    status, body = invoke(signed, payload)

    assert_clean_400(status, body, logged.signed, "Parameter 'threshold' is NaN")


def test_scoring_server_names_the_node_failing_on_unexpected_columns(unsigned, logged):
    payload = {"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2.0]]}}

    status, body = invoke(unsigned, payload)

    assert_clean_400(status, body, logged.unsigned, "Node 'scale'", "ValueError: ")


def test_scoring_server_still_answers_good_requests(signed):
    status, body = invoke(signed, {"dataframe_split": split(sample_instances(2)), "params": {"threshold": 0.9}})

    assert status == 200, body
    assert len(json.loads(body)["predictions"]) == 2


def test_logged_model_missing_an_artifact_says_to_log_it_again(logged, tmp_path):
    local = Path(shutil.copytree(logged.signed, tmp_path / "model"))
    (packed,) = (local / "artifacts").rglob("scaler.pkl")
    packed.unlink()

    with pytest.raises(ArtifactNotFoundError) as error:
        mlflow.pyfunc.load_model(str(local))

    message = str(error.value)
    assert message.startswith(
        f"The logged model is incomplete: artifact 'scaler' is missing from it (no file at {packed})"
    )
    assert "modelify" in message
    assert "run the training pipeline" not in message
