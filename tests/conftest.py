"""Fixtures shared by every tier: telemetry off, throw-away MLflow stores, a private copy of the example project."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_kedro_mlflow.kedro_project import prepare_kedro_environment
from tests.servers import MlflowServer

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_PROJECT = REPO_ROOT / "dags_examples" / "kedro_classifier"

# Set up the process as the operators and the CLI do, before any test imports kedro: telemetry off (its plugin
# would try to reach the network) and kedro's plain logging config (its Rich handler would print to stdout).
prepare_kedro_environment()
os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
# Airflow reads AIRFLOW_HOME once, when first imported: give the whole session a throw-away home, never ~/airflow.
if "AIRFLOW_HOME" not in os.environ:
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="akm-airflow-home-")
    atexit.register(shutil.rmtree, os.environ["AIRFLOW_HOME"], ignore_errors=True)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


@pytest.fixture(autouse=True)
def _no_ambient_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a developer's MLFLOW_* settings (and MLflow's implicit ./mlflow.db) out of every test."""
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID",
                "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
                "AIRFLOW_CONN_MLFLOW_DEFAULT"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh sqlite-backed MLflow store for one test; the global fluent state is reset afterwards."""
    import mlflow

    monkeypatch.chdir(tmp_path)  # a sqlite store keeps artifacts in ./mlruns of the working directory
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    yield uri
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


@pytest.fixture
def example_project(tmp_path: Path) -> Path:
    """A private copy of the example Kedro project, so tests never write into the repository."""
    target = tmp_path / "kedro_classifier"
    shutil.copytree(EXAMPLE_PROJECT, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return target


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real ``mlflow server`` on 127.0.0.1 (sqlite, proxied artifacts), shared by a test session."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlflow_auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real ``mlflow server`` with basic auth on, so connection credentials are really exercised."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-auth-server"), auth=True).start()
    yield server
    server.stop()
