"""The production topology end to end: PostgreSQL, Redis, CeleryExecutor with two workers that share no disk.

Airflow's metadata and MLflow's backend store live in PostgreSQL, Celery's broker is Redis, and artifacts travel
only through MLflow's proxied artifact store (``production_topology.py`` says what each worker owns). Training and
modelify run in the project's own virtualenv (``VirtualenvExecution(requirements=...)``) whose scikit-learn is not
the Airflow environment's; the registered model then loads in a third, fresh environment built from nothing but its
own requirements and predicts exactly what the project's environment predicts from the trained artifacts. Last, a
worker is SIGKILLed mid-training: the retry runs on the other worker and exactly one model version gets the alias.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.airflow_deployment import TASK_FINISHED
from tests.e2e.dags.e2e_signals import SIGNAL_DIR_ENV, signal_file
from tests.e2e.production_topology import (
    PROJECT_SKLEARN,
    QUEUE_A,
    QUEUE_ANY,
    QUEUE_B,
    Topology,
    fresh_environment,
    production_topology,
    project_venv_cache,
    run_json,
)

RETRAINING_DAG = "e2e_topology_retraining"
FAILOVER_DAG = "e2e_topology_failover"

#: The example rows, made the same way in every environment: scikit-learn ships the data set.
_ROWS = """
from sklearn.datasets import load_breast_cancer
rows = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])
rows.columns = [str(column).replace(" ", "_") for column in rows.columns]
"""
#: In the project's environment: the registered model, and the trained artifacts downloaded and applied by hand.
PROJECT_PREDICTS = (
    "import json, pickle, sys, mlflow, sklearn\n"
    + _ROWS
    + """
fitted = {}
for name, uri in (("scaler", sys.argv[2]), ("classifier", sys.argv[3])):
    with open(mlflow.artifacts.download_artifacts(artifact_uri=uri), "rb") as handle:
        fitted[name] = pickle.load(handle)
frame = rows[list(fitted["scaler"].feature_names_in_)]
by_hand = fitted["classifier"].predict_proba(fitted["scaler"].transform(frame))[:, 1]
predicted = mlflow.pyfunc.load_model(sys.argv[1]).predict(rows)
print(json.dumps({"sklearn": sklearn.__version__, "by_hand": by_hand.tolist(),
                  "probability": predicted["probability"].tolist(), "prediction": predicted["prediction"].tolist()}))
"""
)
#: In a fresh environment from the model's requirements: the registered model, through MLflow's pyfunc.
MODEL_PREDICTS = (
    "import json, sys, mlflow, sklearn\n"
    + _ROWS
    + """
predicted = mlflow.pyfunc.load_model(sys.argv[1]).predict(rows)
print(json.dumps({"sklearn": sklearn.__version__, "probability": predicted["probability"].tolist(),
                  "prediction": predicted["prediction"].tolist()}))
"""
)


@pytest.fixture(scope="module")
def signal_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("topology-signals")


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory, signal_dir: Path) -> Iterator[Topology]:
    started = time.perf_counter()
    root = tmp_path_factory.mktemp("topology")
    dag_ids = [RETRAINING_DAG, FAILOVER_DAG]
    with production_topology(root, dag_ids, {SIGNAL_DIR_ENV: str(signal_dir)}) as running:
        print(f"\nproduction topology up in {time.perf_counter() - started:.1f} s")
        yield running


def _versions(client: Any, name: str) -> list[Any]:
    return sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))


def test_retraining_on_two_workers_in_the_project_environment_and_the_model_loads_from_its_requirements(
    topology: Topology, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    airflow, name = topology.airflow, "e2e_topology"
    started = time.perf_counter()
    dag_run_id = airflow.trigger(RETRAINING_DAG, {"registered_model_name": name, "C": 0.5})
    topology.assert_run_succeeded(RETRAINING_DAG, dag_run_id)
    print(f"\nretraining run: {time.perf_counter() - started:.1f} s")

    # Queues put training on worker a, modelify and promote on worker b; each logged on its own disk only.
    tis = airflow.task_instances(RETRAINING_DAG, dag_run_id)
    assert {task: ti["queue"] for task, ti in tis.items()} == {"train": QUEUE_A, "modelify": QUEUE_B,
                                                                 "promote": QUEUE_B}  # fmt: skip
    where = {task: topology.ran_on(RETRAINING_DAG, dag_run_id, task) for task in tis}
    assert where == {"train": {1: "a"}, "modelify": {1: "b"}, "promote": {1: "b"}}, where
    # Each task ran in its own worker's copy of the project, in that worker's virtualenv (scikit-learn 1.7.x), its
    # Kedro log streamed into the task log.
    workers = topology.workers
    for task, worker in (("train", "a"), ("modelify", "b")):
        log = topology.task_log(RETRAINING_DAG, dag_run_id, task, 1)
        assert f"the virtualenv built from {workers[worker].dags_folder / 'kedro_classifier'}" in log, log
        assert str(project_venv_cache(workers[worker].root)) in log, log
    assert "Node fit_classifier finished" in topology.task_log(RETRAINING_DAG, dag_run_id, "train", 1)
    train = airflow.xcom(RETRAINING_DAG, dag_run_id, "train")
    assert train["project_path"] == str(workers["a"].dags_folder / "kedro_classifier")
    modelify = airflow.xcom(RETRAINING_DAG, dag_run_id, "modelify")
    assert modelify["model_uri"] == f"models:/{name}/1"
    assert all(len(worker.project_pythons()) == 1 for worker in workers.values())
    assert metadata.version("scikit-learn") != PROJECT_SKLEARN

    # MLflow's store is PostgreSQL, its artifacts are proxied; Airflow's metadata is in PostgreSQL too.
    client = MlflowClient(tracking_uri=topology.mlflow.uri, registry_uri=topology.mlflow.uri)
    run = client.get_run(train["run_id"])
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), run.info.artifact_uri
    assert topology.query("mlflow", "SELECT version FROM model_versions WHERE name = %s", name) == [(1,)]
    assert topology.query("airflow", "SELECT state FROM dag_run WHERE run_id = %s", dag_run_id) == [("success",)]
    assert client.get_model_version_by_alias(name, "champion").version == "1"  # promote: the first version wins

    # The project's environment predicts from the trained artifacts; a fresh one from the model's requirements alone
    # loads the registered model and predicts exactly the same.
    model_uri = f"models:/{name}@challenger"
    tracking_env = {"MLFLOW_TRACKING_URI": topology.mlflow.uri, "MLFLOW_REGISTRY_URI": topology.mlflow.uri}
    artifacts = train["artifacts"]
    project_args = (model_uri, artifacts["scaler"]["uri"], artifacts["classifier"]["uri"])
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):  # models:/ URIs resolve through the env
        monkeypatch.setenv(variable, topology.mlflow.uri)
    import mlflow

    with ThreadPoolExecutor(max_workers=1) as pool:  # the project's side runs while the fresh env is built
        project_side = pool.submit(
            run_json, workers["b"].project_pythons()[0], PROJECT_PREDICTS, *project_args, env=tracking_env,
            cwd=tmp_path,
        )  # fmt: skip
        requirements = Path(mlflow.pyfunc.get_model_dependencies(model_uri))
        assert f"scikit-learn=={PROJECT_SKLEARN}" in requirements.read_text().splitlines(), requirements.read_text()
        started = time.perf_counter()
        model_python = fresh_environment(requirements, tmp_path)
        print(f"fresh environment from the model's requirements: {time.perf_counter() - started:.1f} s")
        served = run_json(model_python, MODEL_PREDICTS, model_uri, env=tracking_env, cwd=tmp_path)
        project = project_side.result()
    assert project["sklearn"] == served["sklearn"] == PROJECT_SKLEARN
    assert (served["probability"], served["prediction"]) == (project["probability"], project["prediction"])
    # The model applies the very scaler and classifier training fitted (to the last bits, but for BLAS rounding).
    assert project["probability"] == pytest.approx(project["by_hand"], rel=1e-12, abs=1e-15)
    assert project["prediction"] == [int(p >= 0.5) for p in project["probability"]]


def test_worker_killed_mid_training_retry_runs_on_the_other_worker_one_version(
    topology: Topology, signal_dir: Path
) -> None:
    from mlflow import MlflowClient

    airflow, name = topology.airflow, "e2e_topology_failover"
    dag_run_id = airflow.trigger(FAILOVER_DAG, {"registered_model_name": name})
    marker = signal_file(dag_run_id, "paused", signal_dir)
    deadline = time.monotonic() + 300
    while not marker.exists():  # the first try pauses after saving the scaler, in the project's process
        train = airflow.task_instance(FAILOVER_DAG, dag_run_id, "train")
        assert train["state"] not in TASK_FINISHED, topology.all_task_logs(FAILOVER_DAG, dag_run_id)
        assert time.monotonic() < deadline, f"{marker} not written\n{airflow.diagnostics()}"
        time.sleep(0.5)
    paused_pid = int(marker.read_text())
    victim = next(worker for worker in topology.workers.values() if worker.is_ancestor_of(paused_pid))
    survivor = next(worker for worker in topology.workers.values() if worker is not victim)
    assert (airflow.task_instance(FAILOVER_DAG, dag_run_id, "train")["queue"]) == QUEUE_ANY

    started = time.perf_counter()
    victim.kill()  # the worker, its task supervisor and the project's training process: all at once
    topology.assert_run_succeeded(FAILOVER_DAG, dag_run_id)
    seconds = time.perf_counter() - started
    print(f"\nworker {victim.name} killed: the run finished on worker {survivor.name} {seconds:.1f} s later")

    assert topology.ran_on(FAILOVER_DAG, dag_run_id, "train") == {1: victim.name, 2: survivor.name}
    assert topology.ran_on(FAILOVER_DAG, dag_run_id, "modelify") == {1: survivor.name}
    killed_log = topology.task_log(FAILOVER_DAG, dag_run_id, "train", 1)
    assert "Node fit_scaler finished" in killed_log and "Node fit_classifier started" not in killed_log, killed_log

    client = MlflowClient(tracking_uri=topology.mlflow.uri, registry_uri=topology.mlflow.uri)
    result = airflow.xcom(FAILOVER_DAG, dag_run_id, "train")
    assert result["project_path"] == str(survivor.dags_folder / "kedro_classifier")
    runs = client.search_runs([result["experiment_id"]], filter_string=f"tags.`airflow.dag_run_id` = '{dag_run_id}'")
    by_try = {run.data.tags["airflow.try_number"]: run for run in runs}
    assert sorted(by_try) == ["1", "2"]
    assert by_try["2"].info.run_id == result["run_id"] and by_try["1"].info.status != "FINISHED"
    versions = _versions(client, name)
    assert [(v.version, v.run_id) for v in versions] == [("1", result["run_id"])]
    assert client.get_model_version_by_alias(name, "challenger").version == "1"
