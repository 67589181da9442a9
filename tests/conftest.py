"""Fixtures shared by every tier: telemetry off, throw-away MLflow stores and Airflow home, the example project."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
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


@pytest.fixture(scope="session")
def new_mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., str]:
    """Return ``new_store(folder, name="mlflow.db") -> uri``: an empty sqlite MLflow store, ready in milliseconds.

    MLflow runs all its schema migrations the first time it opens an empty sqlite file: 1-2 s per store on a quiet
    machine, about 4 s on a busy one, which used to be most of the unit tier's time. So one store is migrated per
    session and each new store is a copy of that file: still a separate, empty store per call.

    The template is made by ``mlflow db upgrade`` (MLflow's own CLI command), which creates the tables of both the
    tracking and the model registry stores, so neither store migrates a copy again. Unlike opening a store, it does
    not create the Default experiment: that row holds an absolute artifact location (``./mlruns`` of the working
    directory at the time), so MLflow creates it in each copy, from the working directory of the test that opens it.
    """
    from mlflow.db import upgrade

    template = tmp_path_factory.mktemp("mlflow-store-template") / "mlflow.db"
    upgrade.main([f"sqlite:///{template}"], standalone_mode=False)

    def new_store(folder: Path, name: str = "mlflow.db") -> str:
        target = folder / name
        if target.exists():
            raise FileExistsError(f"{target} already exists: give new_mlflow_store another folder or name")
        shutil.copyfile(template, target)
        return f"sqlite:///{target}"

    return new_store


@pytest.fixture
def tracking_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_mlflow_store: Callable[..., str]
) -> Iterator[str]:
    """A fresh sqlite-backed MLflow store for one test; the global fluent state is reset afterwards."""
    import mlflow

    monkeypatch.chdir(tmp_path)  # a sqlite store keeps artifacts in ./mlruns of the working directory
    yield new_mlflow_store(tmp_path)
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


@pytest.fixture
def mlflow_conn(monkeypatch: pytest.MonkeyPatch, tracking_uri: str) -> str:
    """``mlflow_default`` pointing at the test's sqlite store, given the way deployments give it: an env var."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", f'{{"conn_type": "mlflow", "extra": {{"tracking_uri": "{tracking_uri}"}}}}'
    )
    return tracking_uri


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
