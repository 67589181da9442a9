"""Session-wide real services of the e2e tier: one MLflow server (basic auth) and one Airflow, shared in sequence.

Starting Airflow costs 15-40 s on 2 cores, so every scenario reuses one deployment and one MLflow server; scenarios
keep apart by registered model name and dag run. The DAG folder is a temp copy of ``dags_examples/`` (example DAGs
and Kedro project) plus the fault-test DAG of ``tests/e2e/dags/``; the project copy gets the Kedro env
``no_shared_disk`` (``tests/e2e/kedro_conf/``) that keeps training artifacts in the training process's memory.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from tests.e2e.airflow_deployment import AirflowDeployment, airflow_deployment
from tests.e2e.dags.e2e_signals import SIGNAL_DIR_ENV
from tests.e2e.scenarios import ON_DEMAND_DAG, ON_DEMAND_FORM, TRIGGERED_DAGS, CompletedRun, assert_run_succeeded
from tests.servers import MlflowServer

E2E_DIR = Path(__file__).resolve().parent
DAGS_EXAMPLES = REPO_ROOT / "dags_examples"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this directory ``e2e``, so ``-m 'not e2e'`` skips the whole tier."""
    for item in items:
        if E2E_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


def build_dags_folder(target: Path) -> Path:
    """Copy the example DAGs and project, the e2e test DAG and its helpers, and the e2e Kedro env into ``target``."""
    shutil.copytree(
        DAGS_EXAMPLES,
        target,
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc", ".ipynb_checkpoints"),
    )
    # A fresh data root: outputs a developer's local `kedro run` left in the checkout must not leak in.
    data = target / "kedro_classifier" / "data"
    for produced in data.glob("0*/*"):
        if produced.name != ".gitkeep":
            shutil.rmtree(produced) if produced.is_dir() else produced.unlink()
    shutil.copytree(E2E_DIR / "kedro_conf", target / "kedro_classifier" / "conf", dirs_exist_ok=True)
    for module in ("e2e_faults_dag.py", "e2e_signals.py"):
        shutil.copy2(E2E_DIR / "dags" / module, target / module)
    # Inside the project's package: the training operator only loads runners from kedro.runner or the project.
    shutil.copy2(E2E_DIR / "dags" / "e2e_pausing_runner.py", target / "kedro_classifier" / "src" / "kedro_classifier")
    ignore = target / ".airflowignore"
    existing = ignore.read_text() if ignore.exists() else ""
    ignore.write_text(existing.rstrip("\n") + "\ndemo.py\ne2e_signals.py\n")  # no DAG in these
    return target


@pytest.fixture(scope="session")
def signal_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory for file signals between tests and test-DAG tasks (see ``dags/e2e_signals.py``)."""
    return tmp_path_factory.mktemp("signals")


@pytest.fixture(scope="session")
def airflow(
    tmp_path_factory: pytest.TempPathFactory, mlflow_auth_server: MlflowServer, signal_dir: Path
) -> Iterator[AirflowDeployment]:
    """A running Airflow whose ``mlflow_default`` connection is the basic-auth MLflow server (with its password)."""
    dags_folder = build_dags_folder(tmp_path_factory.mktemp("airflow-dags") / "dags")
    extra_env = {
        "AIRFLOW_CONN_MLFLOW_DEFAULT": mlflow_auth_server.airflow_conn_uri(),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        SIGNAL_DIR_ENV: str(signal_dir),
    }
    home = tmp_path_factory.mktemp("airflow-home")
    with airflow_deployment(home, dags_folder, extra_env=extra_env, dag_ids=list(TRIGGERED_DAGS)) as deployment:
        for dag_id in TRIGGERED_DAGS:
            deployment.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        yield deployment


@pytest.fixture
def mlflow_admin(mlflow_auth_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An ``MlflowClient`` logged in as the server's admin; also sets the fluent URIs and credentials of this test.

    ``mlflow.pyfunc.load_model("models:/…")`` resolves through the process-wide registry URI and reads credentials
    from the environment, so both are set here, and restored by ``monkeypatch`` and the teardown below.
    """
    import mlflow

    for name, value in mlflow_auth_server.client_env().items():
        monkeypatch.setenv(name, value)
    mlflow.set_tracking_uri(mlflow_auth_server.uri)
    mlflow.set_registry_uri(mlflow_auth_server.uri)
    try:
        yield mlflow.MlflowClient(tracking_uri=mlflow_auth_server.uri, registry_uri=mlflow_auth_server.uri)
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)


@pytest.fixture(scope="session")
def on_demand_run(airflow: AirflowDeployment) -> CompletedRun:
    """One run of the example on-demand DAG, triggered over REST with the body the UI's Trigger form sends."""
    dag_run_id = airflow.trigger_as_form(ON_DEMAND_DAG, ON_DEMAND_FORM)
    assert_run_succeeded(airflow, ON_DEMAND_DAG, dag_run_id)
    tasks = airflow.task_instances(ON_DEMAND_DAG, dag_run_id)
    return CompletedRun(
        dag_id=ON_DEMAND_DAG,
        dag_run_id=dag_run_id,
        conf=airflow.dag_run(ON_DEMAND_DAG, dag_run_id)["conf"],
        xcom={task_id: airflow.xcom(ON_DEMAND_DAG, dag_run_id, task_id) for task_id in tasks},
    )
