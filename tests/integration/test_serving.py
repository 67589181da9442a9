"""The example project's model, logged by modelify, served the ways MLflow users serve models.

Reference predictions come from Kedro's own ``SequentialRunner`` running the project's inference pipeline on the
same artifacts, so "the model gives the pipeline's answer" is checked against Kedro, not against our code.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from airflow_kedro_mlflow.modelify import ModelifyResult, modelify
from airflow_kedro_mlflow.tracking import TrackingConfig
from tests.conftest import EXAMPLE_PROJECT
from tests.servers import free_port, stop_process_group, wait_for_http

pytestmark = pytest.mark.integration

MODEL_NAME = "kedro_classifier_served"


@dataclass
class Served:
    project: Path
    tracking: TrackingConfig
    result: ModelifyResult
    numpy_result: ModelifyResult
    instances: pd.DataFrame

    def reference(self, data: pd.DataFrame | np.ndarray, threshold: float = 0.5) -> pd.DataFrame:
        """Predictions of the project's inference pipeline run by Kedro's SequentialRunner on ``data``."""
        from kedro.io import DataCatalog, MemoryDataset
        from kedro.runner import SequentialRunner

        from airflow_kedro_mlflow.kedro_project import get_pipeline

        inference = get_pipeline(self.project, "inference")
        catalog = DataCatalog(
            datasets={
                "instances": MemoryDataset(data),
                "scaler": MemoryDataset(_latest_pickle(self.project, "scaler")),
                "classifier": MemoryDataset(_latest_pickle(self.project, "classifier")),
                "params:threshold": MemoryDataset(threshold),
            }
        )
        outputs = SequentialRunner().run(inference, catalog)
        return _free_output(outputs, catalog, "predictions")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env.update(MLFLOW_TRACKING_URI=self.tracking.tracking_uri, KEDRO_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1")
        # mlflow runs `uvicorn` from PATH: the venv's bin must be on it even when the venv is not activated.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env


def _free_output(outputs: Any, catalog: Any, name: str) -> Any:
    """The pipeline output: returned by ``run`` (kedro 1.x returns free outputs) or left in the catalog."""
    if isinstance(outputs, dict) and name in outputs:
        value = outputs[name]
        return value.load() if hasattr(value, "load") and not isinstance(value, pd.DataFrame) else value
    return catalog.load(name)


def _latest_pickle(project: Path, name: str) -> Any:
    version_dir = sorted((project / "data" / "06_models" / f"{name}.pkl").iterdir())[-1]
    return pickle.loads((version_dir / f"{name}.pkl").read_bytes())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Train the example project in a real Kedro session, then log and register its model with modelify."""
    from mlflow.models import infer_signature

    from airflow_kedro_mlflow.kedro_project import open_session

    root = tmp_path_factory.mktemp("serving")
    project = root / "kedro_classifier"
    shutil.copytree(EXAMPLE_PROJECT, project, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # MLflow's default ./mlruns artifact root of a sqlite store
        with open_session(project) as session:
            session.run(pipeline_names=["training"])
        tracking = TrackingConfig(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
        result = modelify(
            project, "training", tracking=tracking, registered_model_name=MODEL_NAME, aliases=["champion"]
        )
        instances = pd.read_csv(project / "data" / "05_model_input" / "instances.csv")
        # The same pipeline, signed for numpy input (a tensor schema), as users serving arrays log it.
        numpy_signature = infer_signature(instances.to_numpy()[:5], params={"threshold": 0.5})
        numpy_result = modelify(
            project, "training", tracking=tracking, log_model_kwargs={"name": "numpy", "signature": numpy_signature}
        )
        yield Served(project, tracking, result, numpy_result, instances)


@pytest.fixture(scope="module")
def loaded(served: Served) -> Any:
    with served.tracking.activate():
        return mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")


@pytest.mark.parametrize("rows", [1, 10_000])
def test_loaded_model_predicts_like_the_sequential_runner(served, loaded, rows):
    data = served.instances.sample(n=rows, replace=True, random_state=7).reset_index(drop=True)

    pd.testing.assert_frame_equal(loaded.predict(data), served.reference(data))


def test_params_override_the_threshold(served, loaded):
    data = served.instances.head(200)

    strict = loaded.predict(data, params={"threshold": 0.99})

    pd.testing.assert_frame_equal(strict, served.reference(data, threshold=0.99))
    assert strict["prediction"].sum() < loaded.predict(data)["prediction"].sum()


def test_numpy_input_gives_the_dataframe_predictions(served):
    data = served.instances.head(50)
    with served.tracking.activate():
        model = mlflow.pyfunc.load_model(served.numpy_result.model_uri)

    predictions = model.predict(data.to_numpy(), params={"threshold": 0.7})

    pd.testing.assert_frame_equal(predictions, served.reference(data.to_numpy(), threshold=0.7))


def test_wrong_param_type_is_a_readable_mlflow_error(served, loaded):
    with pytest.raises(mlflow.exceptions.MlflowException, match=r"threshold.*double"):
        loaded.predict(served.instances.head(2), params={"threshold": "high"})


def test_missing_column_is_a_readable_mlflow_error(served, loaded):
    with pytest.raises(mlflow.exceptions.MlflowException, match="mean_radius"):
        loaded.predict(served.instances.head(2).drop(columns=["mean_radius"]))


# -- mlflow models serve / predict -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_url(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow models serve`` of the registered model by alias, on 127.0.0.1, in its own process group."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(mlflow_cli), "models", "serve", "-m", f"models:/{MODEL_NAME}@champion", "--env-manager", "local",
             "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
            env=served.env(), cwd=served.project.parent, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", timeout=180, process=process, log=log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process_group(process)


def post(url: str, payload: dict[str, Any]) -> tuple[int, Any]:
    status, body = post_raw(url, payload)
    return status, json.loads(body or "null")


def post_raw(url: str, payload: dict[str, Any]) -> tuple[int, str]:
    """POST ``payload`` as JSON (NaN written as Python's json writes it); return the status and the body as text."""
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_invocations_with_dataframe_split_and_params(served, server_url):
    data = served.instances.head(20)
    payload = {"dataframe_split": json.loads(data.to_json(orient="split", index=False)), "params": {"threshold": 0.8}}

    status, body = post(f"{server_url}/invocations", payload)

    assert status == 200, body
    predictions = pd.DataFrame(body["predictions"])
    expected = served.reference(data, threshold=0.8)
    pd.testing.assert_frame_equal(predictions, expected, check_dtype=False)


def test_invocations_with_a_missing_column_is_a_readable_4xx(served, server_url):
    data = served.instances.head(2).drop(columns=["worst_area"])
    payload = {"dataframe_split": json.loads(data.to_json(orient="split", index=False))}

    status, body = post(f"{server_url}/invocations", payload)

    assert 400 <= status < 500
    assert "worst_area" in body["message"]


def test_invocations_with_a_wrongly_typed_param_is_a_readable_4xx(served, server_url):
    data = served.instances.head(2)
    payload = {"dataframe_split": json.loads(data.to_json(orient="split", index=False)), "params": {"threshold": "x"}}

    status, body = post(f"{server_url}/invocations", payload)

    assert 400 <= status < 500
    assert "threshold" in body["message"]


def _split(data: pd.DataFrame) -> dict[str, Any]:
    return json.loads(data.to_json(orient="split", index=False))


def _with_value(data: pd.DataFrame, value: Any) -> dict[str, Any]:
    payload = _split(data)
    payload["data"][1][0] = value
    return payload


def _bad_requests(instances: pd.DataFrame) -> dict[str, tuple[dict[str, Any], str]]:
    """Requests a client can get wrong, each with what the 400's message must say."""
    rows = instances.head(3)
    return {
        "null value": ({"dataframe_split": _with_value(rows, None)}, "Node 'predict' failed on this input"),
        "NaN value": ({"dataframe_split": _with_value(rows, "NaN")}, "Input X contains NaN"),
        "null record": ({"dataframe_records": [dict.fromkeys(rows.columns)]}, "Input X contains NaN"),
        "empty data": ({"dataframe_split": {"columns": list(rows.columns), "data": []}}, "model_input is empty"),
        "null param": ({"dataframe_split": _split(rows), "params": {"threshold": None}}, "'threshold' is None"),
        "NaN param": ({"dataframe_split": _split(rows), "params": {"threshold": float("nan")}}, "'threshold' is NaN"),
        "wrong columns": ({"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2.0]]}}, "mean_radius"),
    }


BAD_REQUEST_CASES = ["null value", "NaN value", "null record", "empty data", "null param", "NaN param", "wrong columns"]


@pytest.mark.parametrize("case", BAD_REQUEST_CASES)
def test_invocations_with_bad_input_is_a_400_without_traceback_or_server_paths(served, server_url, case):
    payload, says = _bad_requests(served.instances)[case]

    status, body = post_raw(f"{server_url}/invocations", payload)

    assert status == 400, body
    assert says in json.loads(body)["message"]
    assert "Traceback" not in body
    assert "stack_trace" not in json.loads(body)
    assert "/site-packages/" not in body
    for server_path in (sys.prefix, tempfile.gettempdir() + "/", str(served.project.parent)):
        assert server_path not in body, server_path


def test_mlflow_models_predict_on_a_csv(served, tmp_path):
    data = served.instances.head(25)
    source = tmp_path / "instances.csv"
    data.to_csv(source, index=False)
    output = tmp_path / "predictions.json"
    mlflow_cli = Path(sys.executable).with_name("mlflow")

    completed = subprocess.run(
        [str(mlflow_cli), "models", "predict", "-m", served.result.model_uri, "-i", str(source), "-t", "csv",
         "-o", str(output), "--env-manager", "local"],
        env=served.env(), cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip

    assert completed.returncode == 0, completed.stderr[-3000:]
    predictions = pd.DataFrame(json.loads(output.read_text())["predictions"])
    pd.testing.assert_frame_equal(predictions, served.reference(data), check_dtype=False)


def test_mlflow_model_dataset_saves_a_kedro_pipeline_model_and_loads_it_back(served):
    from airflow_kedro_mlflow.datasets import MlflowModelDataset
    from airflow_kedro_mlflow.kedro_project import get_pipeline, open_session
    from airflow_kedro_mlflow.model import KedroPipelineModel

    dataset = MlflowModelDataset(tracking_uri=served.tracking.tracking_uri, artifact_path="from_dataset")
    with open_session(served.project) as session:
        model = KedroPipelineModel(get_pipeline(session, "training"), session.load_context().catalog)
        dataset.save(model)

    data = served.instances.head(30)
    pd.testing.assert_frame_equal(dataset.load().predict(data), served.reference(data))
