"""The README's first command: the demo runs the retraining DAG end to end and prints what it produced."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

from tests.conftest import EXAMPLE_PROJECT, REPO_ROOT

DEMO = REPO_ROOT / "dags_examples" / "demo.py"


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if "__pycache__" not in p.parts}


def _links(airflow_db: Path) -> dict[tuple[str, str], str]:
    """The extra-link URLs Airflow stored for each task (``_link_<class>`` XComs, what the UI's link buttons open)."""
    with closing(sqlite3.connect(airflow_db)) as db:
        rows = db.execute("SELECT task_id, key, value FROM xcom").fetchall()
    return {
        (task, key.removeprefix("_link_")): json.loads(value) for task, key, value in rows if key.startswith("_link_")
    }


def test_demo_runs_the_dag_and_prints_run_version_alias_prediction_and_browse_commands(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"
    project_files = _files(EXAMPLE_PROJECT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__", "MLFLOW_"))}
    process = subprocess.Popen(
        [sys.executable, str(DEMO), "--demo-dir", str(demo_dir)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, output

    for step in range(1, 6):
        assert f"[{step}/5]" in output, output
    for task in ("train", "modelify", "promote"):
        assert re.search(rf"{task}\s+finished in \d+\.\d s", output), output
    run_id = re.search(r"MLflow run\s+([0-9a-f]{32}) \(experiment 'kedro_classifier', status FINISHED\)", output)
    assert run_id, output
    assert re.search(r"accuracy=0\.9\d{3}", output), output
    assert "registered model    'kedro_classifier' version 1" in output, output
    assert "aliases             challenger, champion" in output, output
    assert "models:/kedro_classifier@champion" in output, output
    rows = re.findall(r"^\s+\d+\s+(\d\.\d{4})\s+([01])\s+([01])$", output, flags=re.MULTILINE)
    assert len(rows) == 5, output
    assert all(int(pred) == (float(prob) >= 0.5) for prob, pred, _ in rows), rows
    # The browse commands name the tox env's executables by absolute path: they work from a shell outside the env
    # (tests/integration/test_demo_commands.py runs them).
    bin_dir = Path(sys.executable).parent
    assert (
        f"MLflow:  {bin_dir / 'mlflow'} ui --backend-store-uri sqlite:///{demo_dir / 'mlflow.db'} "
        "--host 127.0.0.1 --port 5000" in output
    ), output
    assert f"Airflow: AIRFLOW_HOME={demo_dir / 'airflow'} {bin_dir / 'airflow'} api-server --host 127.0.0.1" in output
    # The tasks' extra links point at the MLflow UI the demo tells the user to serve.
    version = "1"
    assert _links(demo_dir / "airflow" / "airflow.db") == {
        ("train", "MlflowRunLink"): f"http://127.0.0.1:5000/#/experiments/1/runs/{run_id[1]}",
        ("modelify", "MlflowRunLink"): f"http://127.0.0.1:5000/#/experiments/1/runs/{run_id[1]}",
        ("modelify", "MlflowModelVersionLink"): f"http://127.0.0.1:5000/#/models/kedro_classifier/versions/{version}",
        ("promote", "MlflowModelVersionLink"): f"http://127.0.0.1:5000/#/models/kedro_classifier/versions/{version}",
    }

    assert (demo_dir / "mlflow.db").is_file() and (demo_dir / "airflow" / "airflow.db").is_file()
    assert list((demo_dir / "kedro_classifier" / "data" / "06_models").glob("classifier.pkl/*/classifier.pkl"))
    assert _files(EXAMPLE_PROJECT) == project_files  # the checkout's project was not written to
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        pass  # nothing the demo started is still running
    else:
        raise AssertionError(f"processes of the demo's group {process.pid} are still running")
