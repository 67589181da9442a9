"""A new champion triggers the champion-scoring DAG on the real scheduler, which scores with exactly that version.

The on-demand DAG is triggered (as the UI's form does) for the example model ``kedro_classifier``; its promote task
moves ``champion`` and emits an event of the asset ``mlflow-model://127.0.0.1:<port>/kedro_classifier@champion``
through its alias outlet; the scheduler then starts ``kedro_classifier_champion_scoring`` (scheduled on the plain
asset), whose scoring task pins ``models:/kedro_classifier@champion`` to the event's version.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.airflow_deployment import AirflowDeployment
from tests.e2e.scenarios import (
    CHAMPION_SCORING_DAG,
    NO_SHARED_DISK_ENV,
    ON_DEMAND_DAG,
    assert_run_succeeded,
    example_rows,
)
from tests.servers import MlflowServer

MODEL = "kedro_classifier"  # the model the example scoring DAG is scheduled on; no other scenario registers it


def _events_of(airflow: AirflowDeployment, dag_id: str, dag_run_id: str) -> list[dict[str, Any]]:
    """The asset events a DAG run's tasks emitted, through the public REST API."""
    payload = airflow.request("GET", "/assets/events", params={"source_dag_id": dag_id, "source_run_id": dag_run_id})
    return payload["asset_events"]


def _wait_for_triggered_run(airflow: AirflowDeployment, promotion_run_id: str, timeout: float = 180.0) -> str:
    """The dag_run_id of the scoring DAG's run that the promote task's asset event created."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (event,) = [e for e in _events_of(airflow, ON_DEMAND_DAG, promotion_run_id) if e["source_task_id"] == "promote"]
        created = [run for run in event["created_dagruns"] if run["dag_id"] == CHAMPION_SCORING_DAG]
        if created:
            return created[0]["run_id"]
        time.sleep(1.0)
    runs = airflow.request("GET", f"/dags/{CHAMPION_SCORING_DAG}/dagRuns")["dag_runs"]
    raise AssertionError(f"the champion event created no {CHAMPION_SCORING_DAG} run in {timeout:.0f}s; runs: {runs}")


@pytest.fixture(scope="module")
def promotion(airflow: AirflowDeployment) -> dict[str, Any]:
    """One on-demand run that registers and promotes the first version of ``kedro_classifier``."""
    dags_folder = Path(airflow.env["AIRFLOW__CORE__DAGS_FOLDER"])
    # The scoring DAG's default input: the example project's `instances` (training here writes per-run data roots).
    example_rows(25).to_csv(dags_folder / "kedro_classifier" / "data" / "05_model_input" / "instances.csv", index=False)
    form = {"registered_model_name": MODEL, "kedro_env": NO_SHARED_DISK_ENV, "C": 0.5, "threshold": 0.4}
    dag_run_id = airflow.trigger_as_form(ON_DEMAND_DAG, form)
    assert_run_succeeded(airflow, ON_DEMAND_DAG, dag_run_id)
    return {"dag_run_id": dag_run_id, "promote": airflow.xcom(ON_DEMAND_DAG, dag_run_id, "promote")}


def test_a_new_champion_triggers_scoring_with_exactly_that_version(
    airflow: AirflowDeployment, promotion: dict[str, Any], mlflow_auth_server: MlflowServer, mlflow_admin: Any
) -> None:
    import pyarrow.parquet as pq

    decision = promotion["promote"]
    assert (decision["decision"], decision["registered_model_name"]) == ("promoted", MODEL)
    version = decision["version"]
    champion_asset = f"mlflow-model://127.0.0.1:{mlflow_auth_server.port}/{MODEL}@champion"
    events = {event["source_task_id"]: event for event in _events_of(airflow, ON_DEMAND_DAG, promotion["dag_run_id"])}
    assert set(events) == {"modelify", "promote"}  # challenger (a new version), then champion (it moved)
    champion_event = events["promote"]
    assert champion_event["uri"] == champion_asset
    assert champion_event["extra"] == {
        "registered_model_name": MODEL,
        "alias": "champion",
        "version": version,
        "model_uri": f"models:/{MODEL}/{version}",
        "run_id": mlflow_admin.get_model_version(MODEL, version).run_id,
        "tracking_uri": mlflow_auth_server.uri,
    }
    assert mlflow_auth_server.admin_password not in json.dumps(list(events.values()))

    scoring_run_id = _wait_for_triggered_run(airflow, promotion["dag_run_id"])
    assert airflow.dag_run(CHAMPION_SCORING_DAG, scoring_run_id)["run_type"] == "asset_triggered"
    assert_run_succeeded(airflow, CHAMPION_SCORING_DAG, scoring_run_id)
    result = airflow.xcom(CHAMPION_SCORING_DAG, scoring_run_id, "score")
    log = airflow.task_log(CHAMPION_SCORING_DAG, scoring_run_id, "score", 1)
    assert f"Scoring with models:/{MODEL}/{version}: the version of the asset event" in log, log
    assert (result["model_uri"], result["version"], result["rows"]) == (f"models:/{MODEL}/{version}", version, 25)
    record = json.loads(pq.read_metadata(result["output"]).metadata[b"airflow_kedro_mlflow.scoring"])
    assert (record["model_uri"], record["version"]) == (f"models:/{MODEL}/{version}", version)
    assert pq.read_table(result["output"]).num_rows == 25
