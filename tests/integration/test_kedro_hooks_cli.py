"""PipelineMLHook from a real ``kedro run``: the hook in the project's settings logs and registers the model.

The in-process behaviour of the hook (disabled, partial runs, failures, an active run) is unit-tested in
tests/unit/test_kedro_hooks.py; this is the path a Kedro user takes, a ``kedro run`` subprocess.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest

pytestmark = pytest.mark.integration

SETTINGS_WITH_HOOK = """

from airflow_kedro_mlflow.kedro_hooks import PipelineMLHook

HOOKS = (PipelineMLHook(experiment_name="hooked", registered_model_name="hooked_model", aliases=["candidate"]),)
"""


def add_hook_to_settings(project: Path) -> Path:
    settings = project / "src" / "kedro_classifier" / "settings.py"
    settings.write_text(settings.read_text() + SETTINGS_WITH_HOOK)
    return project


def kedro_run(project: Path, tracking_uri: str, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AIRFLOW_KEDRO_MLFLOW"))}
    env.update(MLFLOW_TRACKING_URI=tracking_uri, KEDRO_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1", **extra_env)
    kedro = Path(sys.executable).with_name("kedro")
    return subprocess.run(
        [str(kedro), "run", *args], cwd=project, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def latest_version_file(project: Path, name: str) -> Path:
    version_dir = sorted((project / "data" / "06_models" / f"{name}.pkl").iterdir())[-1]
    return version_dir / f"{name}.pkl"


def test_kedro_run_of_the_training_pipeline_logs_and_registers_the_model(tmp_path, example_project):
    project = add_hook_to_settings(example_project)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    completed = kedro_run(project, uri, "--pipelines", "training")

    assert completed.returncode == 0, completed.stderr[-3000:]
    client = mlflow.MlflowClient(uri)
    version = client.get_model_version_by_alias("hooked_model", "candidate")
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "hooked"
    assert "accuracy" in run.data.metrics  # logged by a node, into the hook's run
    assert run.data.params["threshold"] == "0.5"
    assert run.data.tags["kedro.pipeline_name"] == "training"
    assert version.tags["kedro.env"] == "local"

    from airflow_kedro_mlflow.kedro_project import bootstrap

    bootstrap(project)
    from kedro_classifier.pipelines.inference.nodes import predict, scale

    data = pd.read_csv(project / "data" / "05_model_input" / "instances.csv").head(5)
    scaler = pickle.loads(latest_version_file(project, "scaler").read_bytes())
    classifier = pickle.loads(latest_version_file(project, "classifier").read_bytes())
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        model = mlflow.pyfunc.load_model("models:/hooked_model@candidate")
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    pd.testing.assert_frame_equal(model.predict(data), predict(scale(data, scaler), classifier, 0.5))
