"""Sweeps: one parent run per mapped training task, its status from its children, and the best child (sqlite store).

The whole loop (three mapped trainings, nested under one parent, the best one modelified) runs under ``dag.test()``
in tests/integration/test_dags.py; here each step's rules are checked against a real store in milliseconds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient

from airflow_kedro_mlflow.exceptions import SweepError
from airflow_kedro_mlflow.tracking.sweeps import (
    BEST_RUN_TAG,
    PARENT_RUN_ID_TAG,
    SWEEP_TAG,
    best_run,
    child_runs,
    settle_sweep,
    sweep_identity,
    sweep_parent_run,
    sweep_trial,
)
from airflow_kedro_mlflow.tracking.tags import (
    DAG_ID_TAG,
    DAG_RUN_ID_TAG,
    KEDRO_ENV_TAG,
    KEDRO_SESSION_TAG,
    MAP_INDEX_TAG,
    TASK_ID_TAG,
    TRY_NUMBER_TAG,
)

IDENTITY = {DAG_ID_TAG: "sweep_dag", DAG_RUN_ID_TAG: "manual__1", TASK_ID_TAG: "train"}


@pytest.fixture
def client(tracking_uri: str) -> Iterator[MlflowClient]:
    mlflow.set_tracking_uri(tracking_uri)
    yield MlflowClient(tracking_uri)


@pytest.fixture
def experiment_id(client: MlflowClient) -> str:
    return client.create_experiment("sweeps")


def child(client: MlflowClient, parent_id: str, map_index: int, *, status: str = "FINISHED", **metrics: float) -> str:
    """A trial's run as the training of map index ``map_index`` leaves it."""
    experiment_id = client.get_run(parent_id).info.experiment_id
    tags = {**IDENTITY, MAP_INDEX_TAG: str(map_index), PARENT_RUN_ID_TAG: parent_id}
    run_id = client.create_run(experiment_id, tags=tags).info.run_id
    for name, value in metrics.items():
        client.log_metric(run_id, name, value)
    if status != "RUNNING":
        client.set_terminated(run_id, status=status)
    return str(run_id)


def test_sweep_identity_needs_dag_dag_run_and_task():
    assert sweep_identity({**IDENTITY, MAP_INDEX_TAG: "2"}) == IDENTITY
    assert sweep_identity({DAG_ID_TAG: "d", TASK_ID_TAG: "t"}) is None


def test_parent_is_created_once_with_the_sweeps_tags_only(client, experiment_id):
    first_child_tags = {KEDRO_ENV_TAG: "local", MAP_INDEX_TAG: "0", TRY_NUMBER_TAG: "1", KEDRO_SESSION_TAG: "s"}
    parent = sweep_parent_run(client, experiment_id, IDENTITY, run_name="train sweep", tags=first_child_tags)
    again = sweep_parent_run(client, experiment_id, IDENTITY, tags={MAP_INDEX_TAG: "1"})

    assert again.info.run_id == parent.info.run_id
    tags = client.get_run(parent.info.run_id).data.tags
    assert {key: tags[key] for key in IDENTITY} == IDENTITY
    assert (tags[SWEEP_TAG], tags[KEDRO_ENV_TAG], tags["mlflow.runName"]) == ("parent", "local", "train sweep")
    # One child's tags would let that child's retry take the parent for its own dead try (fail_superseded_runs).
    assert not {MAP_INDEX_TAG, TRY_NUMBER_TAG, KEDRO_SESSION_TAG} & set(tags)
    other = sweep_parent_run(client, experiment_id, {**IDENTITY, DAG_RUN_ID_TAG: "manual__2"})
    assert other.info.run_id != parent.info.run_id


class RacingClient(MlflowClient):
    """A client whose first parent creation loses a race: another worker's parent appears just before its own."""

    def __init__(self, tracking_uri: str, rival_tags: dict[str, str]) -> None:
        super().__init__(tracking_uri)
        self.rival_tags = rival_tags
        self.rival_id: str | None = None

    def create_run(self, experiment_id: str, *args: Any, **kwargs: Any):  # type: ignore[override]
        if self.rival_id is None:
            self.rival_id = super().create_run(experiment_id, tags=self.rival_tags).info.run_id
            time.sleep(0.002)  # start times are in ms: the rival started first
        return super().create_run(experiment_id, *args, **kwargs)


def test_racing_parent_creations_end_with_the_earliest_parent_and_delete_the_others(tracking_uri, experiment_id):
    racer = RacingClient(tracking_uri, {**IDENTITY, SWEEP_TAG: "parent"})

    parent = sweep_parent_run(racer, experiment_id, IDENTITY)

    assert parent.info.run_id == racer.rival_id
    remaining = racer.search_runs([experiment_id], filter_string=f"tags.`{SWEEP_TAG}` = 'parent'")
    assert [run.info.run_id for run in remaining] == [racer.rival_id]


def test_identity_without_a_task_or_with_a_quote_is_refused(client, experiment_id):
    with pytest.raises(SweepError, match=re.escape("missing: ['airflow.task_id']")):
        sweep_parent_run(client, experiment_id, {DAG_ID_TAG: "d", DAG_RUN_ID_TAG: "r"})
    with pytest.raises(SweepError, match="contain a quote"):
        sweep_parent_run(client, experiment_id, {**IDENTITY, DAG_RUN_ID_TAG: "it's"})


def test_parent_status_follows_its_children(client, experiment_id):
    parent = sweep_parent_run(client, experiment_id, IDENTITY)
    running = child(client, parent.info.run_id, 0, status="RUNNING")
    child(client, parent.info.run_id, 1, status="FAILED")

    assert settle_sweep(client, parent) == "RUNNING"
    client.set_terminated(running, status="FINISHED")
    assert settle_sweep(client, parent) == "FINISHED"
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
    assert len(child_runs(client, parent)) == 2

    failed_sweep = sweep_parent_run(client, experiment_id, {**IDENTITY, DAG_RUN_ID_TAG: "manual__2"})
    child(client, failed_sweep.info.run_id, 0, status="FAILED")
    assert settle_sweep(client, failed_sweep) == "FAILED"


def test_a_trial_reopens_a_settled_parent_and_settles_it_even_when_it_fails(client, experiment_id):
    parent = sweep_parent_run(client, experiment_id, IDENTITY)
    client.set_terminated(parent.info.run_id, status="FINISHED")

    with pytest.raises(RuntimeError, match="node failed"), sweep_trial(client, parent):
        assert client.get_run(parent.info.run_id).info.status == "RUNNING"
        child(client, parent.info.run_id, 0, status="FAILED")
        raise RuntimeError("node failed")

    assert client.get_run(parent.info.run_id).info.status == "FAILED"


def test_best_run_picks_the_best_finished_child_and_records_it_on_the_parent(client, experiment_id):
    parent = sweep_parent_run(client, experiment_id, IDENTITY).info.run_id
    low = child(client, parent, 0, accuracy=0.90, rmse=0.3)
    high = child(client, parent, 1, accuracy=0.95, rmse=0.5)
    tie = child(client, parent, 2, accuracy=0.95, rmse=0.3)
    failed = child(client, parent, 3, status="FAILED", accuracy=0.99)
    no_metric = child(client, parent, 4)
    candidates = [low, high, tie, failed, no_metric]

    run, value = best_run(client, candidates, "accuracy", identity=IDENTITY)
    assert (run.info.run_id, value) == (high, 0.95)  # the tie goes to the lower map index; FAILED never wins
    parent_run = client.get_run(parent)
    assert parent_run.data.tags[BEST_RUN_TAG] == high
    assert parent_run.data.metrics["accuracy"] == 0.95

    run, value = best_run(client, candidates, "rmse", greater_is_better=False)
    assert (run.info.run_id, value) == (low, 0.3)


def test_best_run_refuses_a_run_of_another_task(client, experiment_id):
    parent = sweep_parent_run(client, experiment_id, IDENTITY).info.run_id
    stranger = client.create_run(experiment_id, tags={**IDENTITY, TASK_ID_TAG: "other"}).info.run_id
    client.set_terminated(stranger, status="FINISHED")

    with pytest.raises(SweepError, match=rf"MLflow run {stranger} is not a training of this sweep .*'other'"):
        best_run(client, [child(client, parent, 0, accuracy=0.9), stranger], "accuracy", identity=IDENTITY)


def test_best_run_says_when_every_child_failed_or_none_has_the_metric(client, experiment_id):
    parent = sweep_parent_run(client, experiment_id, IDENTITY).info.run_id
    failed = [child(client, parent, i, status="FAILED") for i in range(2)]
    with pytest.raises(SweepError, match=re.escape("no training run of the sweep finished (2 published")):
        best_run(client, failed, "accuracy")

    finished = child(client, parent, 2, f1=0.5)
    with pytest.raises(SweepError, match=re.escape(f"runs ['{finished}'] has metric 'acuracy'")):
        best_run(client, [finished], "acuracy")
