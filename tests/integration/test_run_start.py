"""Starting an MLflow run looks for a git repository around the entry script only when there can be one.

``mlflow.start_run`` imports GitPython and searches the folders above ``sys.argv[0]`` for a repository, to tag the
run with its commit. A task's entry script is Airflow's executable, outside any repository: ``run_scope`` then skips
that search (0.06 s of CPU, 0.2 s of wall time per run) and the run gets the same tags. A script inside a repository
still gets MLflow's git tags. Fresh interpreters, since MLflow caches what it found for the rest of a process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
import mlflow
from airflow_kedro_mlflow.tracking.runs import run_scope

mlflow.set_tracking_uri(sys.argv[1])
client = mlflow.MlflowClient(sys.argv[1])
with run_scope(client, experiment_id=client.create_experiment("exp"), run_name="training") as run:
    pass
stored = client.get_run(run.info.run_id)
print(json.dumps({"git_imported": "git" in sys.modules, "status": stored.info.status, "tags": stored.data.tags}))
"""


def _start_a_run(script: Path, tracking_uri: str) -> dict:
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "DO_NOT_TRACK": "1"}  # this checkout's package
    env.pop("MLFLOW_RUN_ID", None)
    done = subprocess.run(
        [sys.executable, str(script), tracking_uri],
        cwd=script.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_script_outside_any_repository_starts_its_run_without_git(tmp_path: Path, tracking_uri: str) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    if any((parent / ".git").exists() for parent in folder.parents):
        pytest.skip(f"{tmp_path} is inside a git repository")

    result = _start_a_run(folder / "task.py", tracking_uri)

    assert result["git_imported"] is False
    assert result["status"] == "FINISHED"
    assert result["tags"]["mlflow.runName"] == "training"
    assert result["tags"]["mlflow.source.name"] == str(folder / "task.py")
    assert not any(key.startswith("mlflow.source.git") for key in result["tags"])


def test_a_script_inside_a_repository_still_gets_mlflow_git_tags(tmp_path: Path, tracking_uri: str) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "README").write_text("x")
    subprocess.run([*git, "add", "README"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()

    result = _start_a_run(repo / "train.py", tracking_uri)

    assert result["tags"]["mlflow.source.git.commit"] == head
    assert result["status"] == "FINISHED"
