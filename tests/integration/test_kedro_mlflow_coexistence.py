"""A kedro-mlflow 2.x project, unchanged, under ``run_training`` and ``modelify``, kedro-mlflow installed and active.

A copy of the example project becomes a kedro-mlflow project: its ``PipelineML`` from kedro-mlflow's
``pipeline_ml_factory``, an ``mlflow.yml`` pointing at *another* tracking server with credentials of its own, and
kedro-mlflow tracking datasets in the catalog (a metric keyed by its catalog name, an artifact). Then:

- under ``run_training`` + ``modelify`` (the operators' core): exactly one MLflow run, on our connection's server, with
  the tracking datasets' values in it and exactly one logged model (modelify's); ``mlflow.yml``'s server is never
  touched and its credentials never reach the worker's environment;
- under plain ``kedro run``: kedro-mlflow does what it always did (its run, its model, on ``mlflow.yml``'s server), and
  the params of the two runs line up (``params: {shape: kedro_mlflow}``).

kedro-mlflow is a test-only dependency installed by this module into a private folder (``uv pip install --target``)
put on the PYTHONPATH of the subprocesses only: installed into the integration env, its entry-point hook would join
every other test's ``kedro run`` of the example project.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from tests.conftest import EXAMPLE_PROJECT

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
KEDRO_MLFLOW = "kedro-mlflow==2.0.3"
#: What the nodes of the example's training pipeline read: kedro-mlflow logs exactly these.
NODE_PARAMS = {"C", "max_iter", "random_state", "test_size", "threshold"}

REGISTRY = """
from kedro.pipeline import Pipeline, node
from kedro_mlflow.pipeline import pipeline_ml_factory

from kedro_classifier.pipelines import inference, training


def accuracy_of(metrics):
    return metrics["accuracy"]


def register_pipelines():
    inference_pipeline = inference.create_pipeline()
    training_pipeline = pipeline_ml_factory(
        training=training.create_pipeline() + Pipeline([node(accuracy_of, "metrics", "test_accuracy", name="acc")]),
        inference=inference_pipeline,
        input_name="instances",
        log_model_kwargs={"name": "model", "signature": "auto"},
    )
    return {"training": training_pipeline, "inference": inference_pipeline, "__default__": training_pipeline}
"""

TRACKING_DATASETS = """
test_accuracy:
  type: kedro_mlflow.io.metrics.MlflowMetricDataset

metrics:
  type: kedro_mlflow.io.artifacts.MlflowArtifactDataset
  artifact_path: reports
  dataset:
    type: json.JSONDataset
    filepath: ${runtime_params:data_dir, data}/08_reporting/metrics.json
"""

TRAIN_AND_MODELIFY = """
import json, os, sys

import mlflow

from airflow_kedro_mlflow.modelify import modelify
from airflow_kedro_mlflow.tracking import TrackingConfig
from airflow_kedro_mlflow.training import run_training

project, uri, data_dir = sys.argv[1:4]
tracking = TrackingConfig(tracking_uri=uri)
trained = run_training(project, "training", tracking=tracking, experiment_name="ours",
                       runtime_params={"data_dir": data_dir}, params_options={"shape": "kedro_mlflow"})
model = modelify(training=trained, tracking=tracking)
print(json.dumps({
    "run_id": trained.run_id,
    "model_id": model.model_id,
    "leaked_credentials": sorted(k for k in os.environ if k.startswith("MLFLOW_TRACKING_")),
    "global_tracking_uri": mlflow.get_tracking_uri(),
}))
"""


@pytest.fixture(scope="module")
def kedro_mlflow_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kedro-mlflow (no dependencies: the integration env has them all) in a folder of its own."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is needed to install kedro-mlflow for this test (pip install uv), as tox itself uses it.")
    target = tmp_path_factory.mktemp("kedro-mlflow")
    subprocess.run([uv, "pip", "install", "--quiet", "--no-deps", "--python", sys.executable, "--target", str(target),
                    KEDRO_MLFLOW], check=True, timeout=300)  # fmt: skip
    return target


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The example project as a kedro-mlflow user has it, mlflow.yml pointing at a server that is not ours."""
    project = tmp_path / "kedro_classifier"
    shutil.copytree(EXAMPLE_PROJECT, project, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "mlruns"))
    (project / "src" / "kedro_classifier" / "pipeline_registry.py").write_text(REGISTRY, encoding="utf-8")
    catalog = project / "conf" / "base" / "catalog.yml"
    text = catalog.read_text(encoding="utf-8")
    start = text.index("\nmetrics:")
    end = text.find("\n\n", start + 1)
    catalog.write_text(text[:start] + (text[end:] if end != -1 else "\n") + TRACKING_DATASETS, encoding="utf-8")
    (project / "conf" / "base" / "mlflow.yml").write_text(
        textwrap.dedent(f"""\
            server:
              mlflow_tracking_uri: sqlite:///{tmp_path / "kedro_mlflow_server.db"}
              credentials: mlflow_credentials
            tracking:
              experiment:
                name: from_mlflow_yml
            """),
        encoding="utf-8",
    )
    (project / "conf" / "local").mkdir(exist_ok=True)
    (project / "conf" / "local" / "credentials.yml").write_text(
        "mlflow_credentials:\n  MLFLOW_TRACKING_USERNAME: project-user\n  MLFLOW_TRACKING_PASSWORD: project-secret\n",
        encoding="utf-8",
    )
    return project


def subprocess_env(kedro_mlflow_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update(PYTHONPATH=os.pathsep.join([str(kedro_mlflow_path), str(REPO_ROOT)]), KEDRO_DISABLE_TELEMETRY="true",
               DO_NOT_TRACK="1", MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true")  # fmt: skip
    return env


def run(args: list[str], *, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(args, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done.stdout


def test_kedro_mlflow_project_runs_unchanged_under_run_training_and_modelify_and_kedro_run(
    kedro_mlflow_path, project, tracking_uri, tmp_path
):
    env = subprocess_env(kedro_mlflow_path)
    side_server = tmp_path / "kedro_mlflow_server.db"
    script = tmp_path / "train_and_modelify.py"
    script.write_text(TRAIN_AND_MODELIFY, encoding="utf-8")
    data_dir = str(project / "data")

    out = run([sys.executable, str(script), str(project), tracking_uri, data_dir], cwd=tmp_path, env=env)
    ours = json.loads(out.strip().splitlines()[-1])

    # One run, on our server, holding what kedro-mlflow's datasets saved and modelify's model only.
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("ours")
    (trained,) = client.search_runs([experiment.experiment_id])
    assert trained.info.run_id == ours["run_id"] and trained.info.status == "FINISHED"
    assert "test_accuracy" in trained.data.metrics  # MlflowMetricDataset, keyed by its catalog name
    assert [a.path for a in client.list_artifacts(ours["run_id"], "reports")] == ["reports/metrics.json"]
    models = client.search_logged_models([experiment.experiment_id])
    assert [(m.model_id, m.source_run_id) for m in models] == [(ours["model_id"], ours["run_id"])]
    assert set(trained.data.params) == NODE_PARAMS
    # mlflow.yml was not applied: its server untouched, its credentials not in the worker's environment.
    assert not side_server.exists()
    assert ours["leaked_credentials"] == []

    # The model predicts, and takes kedro-mlflow's predict-time runner param.
    instances = pd.read_csv(Path(data_dir) / "05_model_input" / "instances.csv").head(5)
    mlflow.set_tracking_uri(tracking_uri)
    loaded = mlflow.pyfunc.load_model(f"models:/{ours['model_id']}")
    assert len(loaded.predict(instances, params={"runner": "ThreadRunner"})) == 5

    # Plain `kedro run`: kedro-mlflow as before, on mlflow.yml's server, with its own model; params line up with ours.
    run([sys.executable, "-m", "kedro", "run", "--pipeline", "training", "--params", f"data_dir={data_dir}"],
        cwd=project, env=env)  # fmt: skip
    theirs_client = mlflow.MlflowClient(f"sqlite:///{side_server}")
    theirs_experiment = theirs_client.get_experiment_by_name("from_mlflow_yml")
    (theirs,) = theirs_client.search_runs([theirs_experiment.experiment_id])
    assert theirs.info.status == "FINISHED" and "test_accuracy" in theirs.data.metrics
    assert [m.name for m in theirs_client.search_logged_models([theirs_experiment.experiment_id])] == ["model"]
    assert theirs.data.params == trained.data.params
