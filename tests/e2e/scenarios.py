"""Names and helpers the e2e scenarios share: DAG ids, example rows, a served model, waiting for a DAG run."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.servers import free_port, stop_process_group, wait_for_http

if TYPE_CHECKING:
    import pandas as pd

    from tests.e2e.airflow_deployment import AirflowDeployment

ON_DEMAND_DAG = "kedro_classifier_on_demand"
FAULTS_DAG = "e2e_faults"
BATCH_SCORING_DAG = "kedro_classifier_batch_scoring"
SWEEP_DAG = "kedro_classifier_sweep"
#: Scheduled on the champion asset of ``kedro_classifier`` (dags_examples/champion_scoring.py).
CHAMPION_SCORING_DAG = "kedro_classifier_champion_scoring"
#: DAGs the scenarios trigger; they are unpaused once parsed. The weekly retraining DAG stays paused, so the
#: scheduler never starts a run no test asked for (the demo runs that one).
TRIGGERED_DAGS = (ON_DEMAND_DAG, FAULTS_DAG, BATCH_SCORING_DAG, SWEEP_DAG, CHAMPION_SCORING_DAG)
#: Kedro env of the e2e project copy whose artifacts live in the training process's memory (kedro_conf/).
NO_SHARED_DISK_ENV = "no_shared_disk"


@dataclass(frozen=True)
class CompletedRun:
    """A finished DAG run and the XCom return values of its tasks."""

    dag_id: str
    dag_run_id: str
    conf: dict[str, Any]
    xcom: dict[str, Any]


#: What the scenario types into the on-demand DAG's Trigger form (other fields keep their defaults).
ON_DEMAND_FORM = {"registered_model_name": "e2e_on_demand", "kedro_env": NO_SHARED_DISK_ENV, "C": 0.5, "threshold": 0.4}


def assert_run_succeeded(airflow: AirflowDeployment, dag_id: str, dag_run_id: str, timeout: float = 300.0) -> None:
    """Wait for the run to finish; fail with every task's log when it did not succeed."""
    state = airflow.wait_for_run(dag_id, dag_run_id, timeout=timeout)
    assert state == "success", f"{dag_id}/{dag_run_id} ended {state}:\n{airflow.all_task_logs(dag_id, dag_run_id)}"


def example_rows(count: int, offset: int = 0) -> pd.DataFrame:
    """``count`` rows of the example project's input ``instances``: breast-cancer features, underscored names."""
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])
    frame.columns = [str(column).replace(" ", "_") for column in frame.columns]
    return frame.iloc[offset : offset + count].reset_index(drop=True)


@contextlib.contextmanager
def served_model(model_uri: str, client_env: Mapping[str, str], log_dir: Path) -> Iterator[str]:
    """Run ``mlflow models serve`` for ``model_uri`` on 127.0.0.1 and yield its base URL; stop it afterwards.

    ``--env-manager local`` serves with this interpreter's packages (no virtualenv build, no network). The MLflow
    credentials go into this child's environment only.
    """
    port = free_port()
    log = log_dir / f"serve-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env.update(client_env)
    env.update({"MLFLOW_REGISTRY_URI": client_env["MLFLOW_TRACKING_URI"], "DO_NOT_TRACK": "1"})
    # The server execs `uvicorn` through bash: this interpreter's bin dir must come first on PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local"]
    command += ["-h", "127.0.0.1", "-p", str(port), "--workers", "1"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", timeout=180, process=process, log=log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process_group(process)


def invocations(base_url: str, rows: pd.DataFrame, params: Mapping[str, Any] | None = None) -> Any:
    """POST ``rows`` as ``dataframe_split`` (and ``params``) to ``/invocations``; return the decoded reply."""
    import requests

    payload: dict[str, Any] = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
    if params:
        payload["params"] = dict(params)
    response = requests.post(f"{base_url}/invocations", json=payload, timeout=120)
    assert response.status_code == 200, f"/invocations answered {response.status_code}: {response.text}"
    return response.json()
