"""PipelineMLHook: ``kedro run`` of a PipelineML logs (and registers) its inference model, and only then.

The hook runs in-process here, on a real KedroSession; a real ``kedro run`` subprocess with the hook in the
project's settings is in tests/integration/test_kedro_hooks_cli.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest

from airflow_kedro_mlflow.exceptions import MlflowConnectionError
from airflow_kedro_mlflow.kedro_hooks import DISABLE_ENV_VAR, PipelineMLHook
from airflow_kedro_mlflow.kedro_project import open_session, register_session_hooks
from airflow_kedro_mlflow.tracking import TrackingConfig
from airflow_kedro_mlflow.training import run_training
from tests.conftest import EXAMPLE_PROJECT


def copy_project(target: Path) -> Path:
    shutil.copytree(EXAMPLE_PROJECT, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return target


# In-process runs: the same hook object registered on one real KedroSession.


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)  # MLflow's default ./mlruns artifact root of a sqlite store
    return copy_project(tmp_path / "kedro_classifier")


def run_with_hook(project: Path, hook: PipelineMLHook, **run_kwargs: object) -> None:
    with open_session(project, runtime_params=run_kwargs.pop("runtime_params", None)) as session:
        register_session_hooks(session, hook)
        session.run(**run_kwargs)


@pytest.mark.slow
def test_disable_env_var_turns_the_hook_off(project, tracking_uri, monkeypatch):
    monkeypatch.setenv(DISABLE_ENV_VAR, "true")
    hook = PipelineMLHook(tracking_uri=tracking_uri, experiment_name="disabled")

    run_with_hook(project, hook, pipeline_names=["training"])

    assert hook.last_result is None
    assert mlflow.MlflowClient(tracking_uri).get_experiment_by_name("disabled") is None


@pytest.mark.slow
def test_partial_run_logs_no_model(project, tracking_uri, caplog):
    hook = PipelineMLHook(tracking_uri=tracking_uri, experiment_name="partial")

    run_with_hook(project, hook, pipeline_names=["training"], to_nodes=["fit_classifier"])

    assert hook.last_result is None
    assert "skipped training nodes" in caplog.text
    assert mlflow.MlflowClient(tracking_uri).get_experiment_by_name("partial") is None


@pytest.mark.slow
def test_plain_pipeline_run_logs_nothing(project, tracking_uri):
    run_with_hook(project, PipelineMLHook(enabled=False), pipeline_names=["training"])
    hook = PipelineMLHook(tracking_uri=tracking_uri, experiment_name="plain")

    run_with_hook(project, hook, pipeline_names=["inference"])

    assert hook.last_result is None
    assert mlflow.MlflowClient(tracking_uri).get_experiment_by_name("plain") is None


@pytest.mark.slow
def test_hook_logs_into_an_already_active_run_and_leaves_it_open(project, tracking_uri):
    hook = PipelineMLHook(tracking_uri=tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run() as run:
        run_with_hook(project, hook, pipeline_names=["__default__"])
        assert mlflow.active_run().info.run_id == run.info.run_id

    assert hook.last_result is not None
    assert hook.last_result.run_id == run.info.run_id


@pytest.mark.slow
def test_hook_and_run_training_log_the_same_params(project, tracking_uri):
    # data_dir is read by the catalog only, no node takes it: both entry points still log it, as every parameter
    runtime_params = {"C": 0.3, "data_dir": str(project / "data")}
    hook = PipelineMLHook(tracking_uri=tracking_uri, experiment_name="hooked")
    run_with_hook(project, hook, pipeline_names=["training"], runtime_params=runtime_params)
    trained = run_training(project, tracking=TrackingConfig(tracking_uri), experiment_name="operator",
                           runtime_params=runtime_params)  # fmt: skip

    client = mlflow.MlflowClient(tracking_uri)
    hooked = client.get_run(hook.last_result.run_id).data.params
    assert hooked == client.get_run(trained.run_id).data.params
    assert set(hooked) == {"C", "max_iter", "random_state", "test_size", "threshold", "data_dir"}
    assert hooked["C"] == "0.3"


@pytest.mark.slow
def test_project_setting_kedro_mlflow_shape_is_logged_alike_by_the_hook_and_run_training(project, tracking_uri):
    (project / "conf" / "base" / "airflow_kedro_mlflow.yml").write_text(
        "params:\n  shape: kedro_mlflow\n  long_params_strategy: fail\n", encoding="utf-8"
    )
    runtime_params = {"C": 0.3, "data_dir": str(project / "data")}
    hook = PipelineMLHook(tracking_uri=tracking_uri, experiment_name="hooked")
    run_with_hook(project, hook, pipeline_names=["training"], runtime_params=runtime_params)
    trained = run_training(project, tracking=TrackingConfig(tracking_uri), experiment_name="operator",
                           runtime_params=runtime_params)  # fmt: skip

    client = mlflow.MlflowClient(tracking_uri)
    hooked = client.get_run(hook.last_result.run_id).data.params
    assert hooked == client.get_run(trained.run_id).data.params
    # kedro-mlflow's set: the params: inputs of the nodes that ran; data_dir (catalog only) is not one of them
    assert set(hooked) == {"C", "max_iter", "random_state", "test_size", "threshold"}


@pytest.mark.slow
def test_params_options_argument_wins_and_a_wrong_one_fails_in_settings(project, tracking_uri):
    from airflow_kedro_mlflow.exceptions import KedroProjectError

    with pytest.raises(KedroProjectError, match="shape='nested'"):
        PipelineMLHook(params_options={"shape": "nested"})
    (project / "conf" / "base" / "airflow_kedro_mlflow.yml").write_text("params:\n  shape: kedro_mlflow\n")
    trained = run_training(project, tracking=TrackingConfig(tracking_uri), experiment_name="operator",
                           runtime_params={"data_dir": str(project / "data")},
                           params_options={"shape": "flatten"})  # fmt: skip
    assert "data_dir" in mlflow.MlflowClient(tracking_uri).get_run(trained.run_id).data.params


@pytest.mark.slow
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
    with pytest.raises(ValueError, match="not a valid registered model name"):
        PipelineMLHook(registered_model_name="a:b")
