"""What a training run no longer does twice: bootstrap the project, and read back the MLflow run it just created.

The training overhead benchmark (``benchmarks/training_overhead.py``) measures these costs; these tests pin the
behaviour that must stay the same while they are trimmed.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import mlflow
import pytest
from kedro.framework.startup import bootstrap_project
from mlflow import MlflowClient

from airflow_kedro_mlflow.exceptions import KedroProjectError
from airflow_kedro_mlflow.kedro_project import get_pipeline, open_session
from airflow_kedro_mlflow.tracking.runs import run_scope


def test_get_pipeline_of_an_open_session_does_not_bootstrap_the_project_again(example_project: Path) -> None:
    with open_session(example_project) as session:
        first = get_pipeline(session, "training")
        # Bootstrapping again would reload Kedro's settings and its pipeline registry (new Pipeline objects).
        assert get_pipeline(session, "training") is first
        assert get_pipeline(example_project, "training") is first


@pytest.mark.slow
def test_get_pipeline_bootstraps_again_when_kedro_was_pointed_at_another_copy(
    example_project: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other" / "kedro_classifier"
    shutil.copytree(example_project, other)
    registry = other / "src" / "kedro_classifier" / "pipeline_registry.py"
    registry.write_text(
        registry.read_text().replace('"inference": inference_pipeline,', '"extra": inference_pipeline,')
    )

    with open_session(example_project) as session:
        get_pipeline(session, "training")
        bootstrap_project(other)  # Kedro's own bootstrap, behind this package's back
        try:
            with pytest.raises(KedroProjectError, match="no pipeline named 'extra'"):
                get_pipeline(session, "extra")  # the session's own project, not the copy Kedro was pointed at
        finally:
            sys.path[:] = [entry for entry in sys.path if entry != str(other / "src")]


@pytest.fixture
def script_outside_any_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``sys.argv[0]`` of a script in a folder without a git repository above it, as a task's Airflow executable."""
    script = tmp_path / "bin" / "airflow"
    script.parent.mkdir()
    script.write_text("")
    if any((folder / ".git").exists() for folder in script.parents):
        pytest.skip(f"{tmp_path} is inside a git repository")
    monkeypatch.setattr(sys, "argv", [str(script)])
    return script


def test_a_new_run_gets_mlflow_context_tags_and_ours_and_ends_finished(
    tracking_uri: str, script_outside_any_repo: Path
) -> None:
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("scoped")

    with run_scope(client, experiment_id=experiment_id, run_name="training", tags={"kedro.env": "local"}) as run:
        active = mlflow.active_run()
        assert active is not None and active.info.run_id == run.info.run_id
        assert run.info.status == "RUNNING"
        assert client.get_run(run.info.run_id).data.tags == run.data.tags  # what was yielded is the stored run

    stored = client.get_run(run.info.run_id)
    assert mlflow.active_run() is None
    assert stored.info.status == "FINISHED"
    assert stored.info.run_name == "training"
    assert {key: stored.data.tags.get(key) for key in ("kedro.env", "mlflow.runName", "mlflow.source.name")} == {
        "kedro.env": "local",
        "mlflow.runName": "training",
        "mlflow.source.name": str(script_outside_any_repo),
    }
    assert stored.data.tags["mlflow.source.type"] == "LOCAL"
    assert "mlflow.user" in stored.data.tags


def test_a_new_run_is_marked_failed_when_the_block_raises(tracking_uri: str, script_outside_any_repo: Path) -> None:
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("scoped")

    with pytest.raises(ValueError, match="node failed"), run_scope(client, experiment_id=experiment_id) as run:
        raise ValueError("node failed")

    assert client.get_run(run.info.run_id).info.status == "FAILED"
    assert mlflow.active_run() is None
