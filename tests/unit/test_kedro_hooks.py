"""PipelineMLHook: ``kedro run`` of a PipelineML logs (and registers) its inference model, and only then."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from airflow_kedro_mlflow.exceptions import MlflowConnectionError
from airflow_kedro_mlflow.kedro_hooks import DISABLE_ENV_VAR, PipelineMLHook
from airflow_kedro_mlflow.kedro_project import open_session, register_session_hooks
from tests.conftest import EXAMPLE_PROJECT

SETTINGS_WITH_HOOK = """

from airflow_kedro_mlflow.kedro_hooks import PipelineMLHook

HOOKS = (PipelineMLHook(experiment_name="hooked", registered_model_name="hooked_model", aliases=["candidate"]),)
"""


def copy_project(target: Path, with_hook: bool = False) -> Path:
    shutil.copytree(EXAMPLE_PROJECT, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    if with_hook:
        settings = target / "src" / "kedro_classifier" / "settings.py"
        settings.write_text(settings.read_text() + SETTINGS_WITH_HOOK)
    return target


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


def test_kedro_run_of_the_training_pipeline_logs_and_registers_the_model(tmp_path):
    project = copy_project(tmp_path / "kedro_classifier", with_hook=True)
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


# In-process runs: the same hook object registered on one real KedroSession.


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)  # MLflow's default ./mlruns artifact root of a sqlite store
    return copy_project(tmp_path / "kedro_classifier")


def run_with_hook(project: Path, hook: PipelineMLHook, **run_kwargs: object) -> None:
    with open_session(project, runtime_params=run_kwargs.pop("runtime_params", None)) as session:
        register_session_hooks(session, hook)
        session.run(**run_kwargs)


def test_disable_env_var_turns_the_hook_off(project, tracking_uri, monkeypatch):
    monkeypatch.setenv(DISABLE_ENV_VAR, "true")
    hook = PipelineMLHook(tracking_uri=tracking_uri, experiment_name="disabled")

    run_with_hook(project, hook, pipeline_names=["training"])

    assert hook.last_result is None
    assert mlflow.MlflowClient(tracking_uri).get_experiment_by_name("disabled") is None


def test_partial_run_logs_no_model(project, tracking_uri, caplog):
    hook = PipelineMLHook(tracking_uri=tracking_uri, experiment_name="partial")

    run_with_hook(project, hook, pipeline_names=["training"], to_nodes=["fit_classifier"])

    assert hook.last_result is None
    assert "skipped training nodes" in caplog.text
    assert mlflow.MlflowClient(tracking_uri).get_experiment_by_name("partial") is None


def test_plain_pipeline_run_logs_nothing(project, tracking_uri):
    run_with_hook(project, PipelineMLHook(enabled=False), pipeline_names=["training"])
    hook = PipelineMLHook(tracking_uri=tracking_uri, experiment_name="plain")

    run_with_hook(project, hook, pipeline_names=["inference"])

    assert hook.last_result is None
    assert mlflow.MlflowClient(tracking_uri).get_experiment_by_name("plain") is None


def test_hook_logs_into_an_already_active_run_and_leaves_it_open(project, tracking_uri):
    hook = PipelineMLHook(tracking_uri=tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run() as run:
        run_with_hook(project, hook, pipeline_names=["__default__"])
        assert mlflow.active_run().info.run_id == run.info.run_id

    assert hook.last_result is not None
    assert hook.last_result.run_id == run.info.run_id


def test_failing_training_marks_the_hook_run_failed_and_logs_no_model(project, tracking_uri):
    hook = PipelineMLHook(tracking_uri=tracking_uri, experiment_name="failing")

    # Any exception: the node's own error, or what Kedro's resume suggestion raises while handling it.
    with pytest.raises(Exception):  # noqa: B017
        run_with_hook(project, hook, pipeline_names=["training"], runtime_params={"test_size": 5.0})

    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("failing")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED"
    assert client.search_logged_models([experiment.experiment_id]) == []
    assert mlflow.active_run() is None


def test_no_tracking_uri_fails_before_training(project):
    hook = PipelineMLHook()

    with pytest.raises(MlflowConnectionError, match="PipelineMLHook has no MLflow tracking server"):
        run_with_hook(project, hook, pipeline_names=["training"])
    assert not any((project / "data" / "06_models").glob("*.pkl"))


def test_invalid_registered_model_name_fails_in_settings():
    with pytest.raises(ValueError, match="not a valid MLflow registered model name"):
        PipelineMLHook(registered_model_name="a:b")
