"""Model assets with ``dag.test()`` on a migrated Airflow DB and a real basic-auth ``mlflow server``.

The modelify and promote operators add asset events through their alias outlet only when an alias moved; the
event's ``extra`` is exactly the documented keys, without credentials; a DAG scheduled on the plain asset is queued
by such an event; and a scoring DAG on a model alias that does not exist fails naming it. The scheduler itself
(events triggering the scoring DAG) is exercised by ``tests/e2e/test_model_assets.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE_PROJECT, REPO_ROOT
from tests.integration.airflow_db import migrated_airflow
from tests.servers import MLFLOW_ADMIN_USER, MlflowServer

pytestmark = pytest.mark.integration

ON_DEMAND = "kedro_classifier_on_demand"
CHAMPION_SCORING = "kedro_classifier_champion_scoring"
MODEL = "kedro_classifier"  # the example scoring DAG's model; no other module registers it on this server
FLAKY_DAG, PROMOTE_DAG, MISSING_DAG = "akm_assets_flaky_promote", "akm_assets_promote", "akm_assets_missing_alias"
ALIAS_OUTLET = "airflow-kedro-mlflow-model-aliases"

TEST_DAGS_SOURCE = f'''
"""Test-only DAGs of test_model_assets.py."""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import DAG, Param

from airflow_kedro_mlflow.assets import mlflow_model_asset
from airflow_kedro_mlflow.operators.mlflow import MlflowPromoteModelOperator
from airflow_kedro_mlflow.operators.scoring import MlflowBatchPredictOperator


class FailsAfterFirstPromotion(MlflowPromoteModelOperator):
    """Moves the alias, then fails its first try: as a try whose worker is lost right after the move."""

    def execute(self, context):
        result = super().execute(context)
        if context["ti"].try_number == 1:
            raise RuntimeError("worker lost after moving the alias")
        return result


with DAG("{FLAKY_DAG}", schedule=None):
    FailsAfterFirstPromotion(
        task_id="promote",
        registered_model_name="akm_assets_retry",
        version="1",
        metric="accuracy",
        retries=1,
        retry_delay=timedelta(0),
    )

with DAG("{PROMOTE_DAG}", schedule=None, params={{"version": Param("1", type="string")}}):
    MlflowPromoteModelOperator(
        task_id="promote",
        registered_model_name="akm_assets_promoted",
        version="{{{{ params.version }}}}",
        metric="accuracy",
    )

with DAG(
    "{MISSING_DAG}",
    schedule=[mlflow_model_asset("akm_assets_unregistered", "champion")],
    params={{"model_uri": Param("models:/akm_assets_unregistered@champion", type="string")}},
):
    MlflowBatchPredictOperator(
        task_id="score",
        model_uri="{{{{ params.model_uri }}}}",
        input_path=os.environ["AKM_ASSETS_INPUT"],
        output_path=os.environ["AKM_ASSETS_INPUT"] + ".scored.parquet",
    )
'''


@dataclass
class AssetsEnv:
    dags_folder: Path
    server: MlflowServer
    env: dict[str, str]
    input_csv: Path

    def tracking(self):
        from airflow_kedro_mlflow.tracking import TrackingConfig

        return TrackingConfig(self.server.uri, username=MLFLOW_ADMIN_USER, password=self.server.admin_password)


@dataclass
class Run:
    dag_id: str
    run_id: str
    state: str
    task_states: dict[str, str]
    tries: dict[str, int]
    xcoms: dict[tuple[str, str], Any]
    output: str


@pytest.fixture(scope="module")
def assets_env(tmp_path_factory, mlflow_auth_server: MlflowServer) -> Iterator[AssetsEnv]:
    """A migrated Airflow DB; a DAGs folder with the example on-demand and champion-scoring DAGs and the test DAGs.

    The ``mlflow_default`` connection is set for the whole module, as a deployment gives it to the DAG processor
    too: the scoring DAGs read it when they are parsed, to name the asset they are scheduled on.
    """

    from tests.e2e.scenarios import example_rows

    root = tmp_path_factory.mktemp("assets-dags")
    dags_folder = root / "dags"
    dags_folder.mkdir()
    for name in ("champion_scoring.py", f"{ON_DEMAND}.py"):
        shutil.copy(REPO_ROOT / "dags_examples" / name, dags_folder)
    (dags_folder / "akm_assets_test_dags.py").write_text(textwrap.dedent(TEST_DAGS_SOURCE))
    project = root / "kedro_classifier"
    shutil.copytree(EXAMPLE_PROJECT, project, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    input_csv = root / "instances.csv"
    example_rows(20).to_csv(input_csv, index=False)

    env = {
        "AIRFLOW_HOME": os.environ["AIRFLOW_HOME"],
        "AIRFLOW_KEDRO_MLFLOW_EXAMPLE_PROJECT": str(project),
        "AIRFLOW_CONN_MLFLOW_DEFAULT": mlflow_auth_server.airflow_conn_uri(),
        "AKM_ASSETS_INPUT": str(input_csv),
        "KEDRO_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    }
    with migrated_airflow(dags_folder, env):
        # Airflow queues no run of a paused DAG. Whether a new DAG starts paused is read once, when the first module
        # of the session imported Airflow's models, so the consumer DAG is recorded and unpaused here, as a user would.
        for command in (["dags", "reserialize"], ["dags", "unpause", CHAMPION_SCORING]):
            done = subprocess.run(
                [sys.executable, "-m", "airflow", *command], capture_output=True, text=True, timeout=300, check=False
            )
            assert done.returncode == 0, done.stdout + done.stderr
        yield AssetsEnv(dags_folder=dags_folder, server=mlflow_auth_server, env=env, input_csv=input_csv)


@pytest.fixture(autouse=True)
def _connection_for_every_test(assets_env, monkeypatch):
    """Restore the connection the repository-wide autouse fixture removes before each test."""
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", assets_env.env["AIRFLOW_CONN_MLFLOW_DEFAULT"])


@pytest.fixture(scope="module")
def dagbag(assets_env):
    from airflow.dag_processing.dagbag import DagBag

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", assets_env.env["AIRFLOW_CONN_MLFLOW_DEFAULT"])
        return DagBag(dag_folder=str(assets_env.dags_folder))


def _run_dag(assets_env, dagbag, dag_id: str, run_conf: dict[str, Any] | None = None) -> Run:
    """``dag.test()`` with the connection set; states, XComs and what the run printed."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with pytest.MonkeyPatch.context() as patch, _captured() as captured:
        patch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", assets_env.env["AIRFLOW_CONN_MLFLOW_DEFAULT"])
        dag_run = dagbag.dags[dag_id].test(run_conf=run_conf)
    with create_session() as session:
        task_instances = dag_run.get_task_instances(session=session)
        states = {ti.task_id: str(ti.state) for ti in task_instances}
        tries = {ti.task_id: ti.try_number for ti in task_instances}
        rows = session.query(XComModel).filter_by(dag_id=dag_id, run_id=dag_run.run_id).all()
        xcoms = {(row.task_id, row.key): XComModel.deserialize_value(row) for row in rows}
    return Run(dag_id, dag_run.run_id, str(dag_run.state), states, tries, xcoms, captured.read())


class _captured:
    """Collect what a run writes while the block runs: log records of any logger, and fds 1 and 2."""

    def __enter__(self):
        import logging
        import tempfile

        self._file = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        self._handler = logging.StreamHandler(self._file)
        self._handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(self._handler)
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = [os.dup(1), os.dup(2)]
        self._saved_streams = sys.stdout, sys.stderr
        os.dup2(self._file.fileno(), 1)
        os.dup2(self._file.fileno(), 2)
        sys.stdout = sys.stderr = self._file  # the task runner's structured log writes to sys.stdout
        return self

    def __exit__(self, *exc: object) -> None:
        import logging

        logging.getLogger().removeHandler(self._handler)
        self._file.flush()
        sys.stdout, sys.stderr = self._saved_streams
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        for fd in self._saved:
            os.close(fd)

    def read(self) -> str:
        self._file.seek(0)
        return self._file.read()


def _events(dag_id: str, run_id: str | None = None) -> list[dict[str, Any]]:
    """Every asset event a DAG's tasks emitted (one run's when ``run_id``), oldest first."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        query = session.query(AssetEvent).filter(AssetEvent.source_dag_id == dag_id)
        if run_id is not None:
            query = query.filter(AssetEvent.source_run_id == run_id)
        return [
            {
                "task_id": event.source_task_id,
                "run_id": event.source_run_id,
                "uri": event.asset.uri,
                "extra": dict(event.extra or {}),
                "aliases": sorted(alias.name for alias in event.source_aliases),
            }
            for event in query.order_by(AssetEvent.id)
        ]


def _asset_uri(server: MlflowServer, name: str, alias: str) -> str:
    return f"mlflow-model://127.0.0.1:{server.port}/{name}@{alias}"


def _version(client, name: str, accuracy: float) -> str:
    """Register a version whose source run logged ``accuracy`` (what training + modelify leave behind)."""
    experiment = client.get_experiment_by_name("akm_assets_registry")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("akm_assets_registry")
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "accuracy", accuracy)
    client.set_terminated(run.info.run_id)
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    return str(client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id).version)


@pytest.fixture
def client(assets_env):
    tracking = assets_env.tracking()
    with tracking.activate():
        yield tracking.client()


ON_DEMAND_CONF = {"registered_model_name": MODEL, "experiment": "akm_assets", "C": 1.0, "threshold": 0.5}


@pytest.fixture(scope="module")
def first_run(assets_env, dagbag) -> Run:
    """The on-demand DAG registers version 1 as challenger, and promotes it: there is no champion yet."""
    return _run_dag(assets_env, dagbag, ON_DEMAND, run_conf=ON_DEMAND_CONF)


@pytest.fixture(scope="module")
def second_run(assets_env, dagbag, first_run) -> Run:
    """The same training again: version 2 as challenger; the same accuracy ties, so the champion stays."""
    return _run_dag(assets_env, dagbag, ON_DEMAND, run_conf=ON_DEMAND_CONF)


def _assert_succeeded(run: Run) -> None:
    assert run.state == "success", f"{run.task_states}\n{run.output[-6000:]}"


def test_dag_files_parse_and_scoring_is_scheduled_on_the_champion_asset(assets_env, dagbag):
    assert dagbag.import_errors == {}
    (asset,) = dagbag.dags[CHAMPION_SCORING].timetable.asset_condition.objects
    assert (asset.name, asset.uri) == (_asset_uri(assets_env.server, MODEL, "champion"),) * 2


def test_new_version_and_first_champion_each_emit_one_event_with_the_documented_extra(first_run, assets_env):
    _assert_succeeded(first_run)
    training = first_run.xcoms[("train", "return_value")]
    assert first_run.xcoms[("promote", "decision")] == "promoted"
    expected_extra = {
        "registered_model_name": MODEL,
        "version": "1",
        "model_uri": f"models:/{MODEL}/1",
        "run_id": training["run_id"],
        "tracking_uri": assets_env.server.uri,
    }
    assert _events(ON_DEMAND, first_run.run_id) == [
        {
            "task_id": "modelify",
            "run_id": first_run.run_id,
            "uri": _asset_uri(assets_env.server, MODEL, "challenger"),
            "extra": {**expected_extra, "alias": "challenger"},
            "aliases": [ALIAS_OUTLET],
        },
        {
            "task_id": "promote",
            "run_id": first_run.run_id,
            "uri": _asset_uri(assets_env.server, MODEL, "champion"),
            "extra": {**expected_extra, "alias": "champion"},
            "aliases": [ALIAS_OUTLET],
        },
    ]
    assert assets_env.server.admin_password not in json.dumps(_events(ON_DEMAND))


def test_a_promotion_that_keeps_the_champion_emits_nothing(second_run, assets_env):
    _assert_succeeded(second_run)
    assert second_run.xcoms[("promote", "decision")] == "kept_champion"
    events = _events(ON_DEMAND, second_run.run_id)
    assert [(event["task_id"], event["uri"], event["extra"]["version"]) for event in events] == [
        ("modelify", _asset_uri(assets_env.server, MODEL, "challenger"), "2")
    ]


def test_promote_emits_only_when_the_alias_moves(assets_env, dagbag, client):
    name = "akm_assets_promoted"
    first, worse, better = (_version(client, name, accuracy) for accuracy in (0.9, 0.8, 0.95))
    outcomes = {}
    for version in (first, worse, first, better):
        run = _run_dag(assets_env, dagbag, PROMOTE_DAG, run_conf={"version": version})
        _assert_succeeded(run)
        outcomes[run.run_id] = (version, run.xcoms[("promote", "decision")])
    assert list(outcomes.values()) == [
        (first, "promoted"),
        (worse, "kept_champion"),
        (first, "already_champion"),
        (better, "promoted"),
    ]
    events = _events(PROMOTE_DAG)
    # (version the run offered, version its event announces), for the runs that emitted
    assert [(outcomes[event["run_id"]][0], event["extra"]["version"]) for event in events] == [
        (first, first),
        (better, better),
    ]
    assert events[-1]["extra"]["run_id"] == client.get_model_version(name, better).run_id


def test_a_retry_announces_the_move_of_its_failed_try_once_and_a_rerun_not_again(assets_env, dagbag, client):
    _version(client, "akm_assets_retry", 0.9)
    run = _run_dag(assets_env, dagbag, FLAKY_DAG)
    _assert_succeeded(run)
    assert run.tries["promote"] == 2  # try 1 moved the alias and failed
    assert run.xcoms[("promote", "decision")] == "already_champion"  # try 2 found it moved
    events = _events(FLAKY_DAG, run.run_id)
    assert [(event["uri"], event["extra"]["version"]) for event in events] == [
        (_asset_uri(assets_env.server, "akm_assets_retry", "champion"), "1")
    ]

    rerun = subprocess.run(  # the task run again in the same DAG run, after it succeeded (as "Clear" would)
        [sys.executable, "-m", "airflow", "tasks", "test", FLAKY_DAG, "promote", run.run_id],
        env={**os.environ, **assets_env.env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stdout[-4000:] + rerun.stderr[-4000:]
    assert "already emitted" in rerun.stdout + rerun.stderr
    assert len(_events(FLAKY_DAG, run.run_id)) == 1


def test_an_event_added_through_the_alias_queues_the_dag_scheduled_on_the_plain_asset(first_run, assets_env):
    from airflow.models.asset import AssetDagRunQueue, AssetModel
    from airflow.utils.session import create_session

    _assert_succeeded(first_run)
    with create_session() as session:
        queued = (
            session.query(AssetModel.uri)
            .join(AssetDagRunQueue, AssetDagRunQueue.asset_id == AssetModel.id)
            .filter(AssetDagRunQueue.target_dag_id == CHAMPION_SCORING)
            .all()
        )
    assert [uri for (uri,) in queued] == [_asset_uri(assets_env.server, MODEL, "champion")]


def test_champion_scoring_scores_with_the_champion_version(first_run, assets_env, dagbag, tmp_path):
    import pyarrow.parquet as pq

    _assert_succeeded(first_run)
    conf = {"input_path": str(assets_env.input_csv), "output_dir": str(tmp_path / "scores")}
    run = _run_dag(assets_env, dagbag, CHAMPION_SCORING, run_conf=conf)
    _assert_succeeded(run)
    result = run.xcoms[("score", "return_value")]
    assert (result["model_uri"], result["version"], result["rows"]) == (f"models:/{MODEL}/1", "1", 20)
    (output,) = (tmp_path / "scores").glob("*.parquet")
    record = json.loads(pq.read_metadata(output).metadata[b"airflow_kedro_mlflow.scoring"])
    assert (record["model_uri"], record["version"]) == (f"models:/{MODEL}/1", "1")


@pytest.mark.parametrize(
    ("model_uri", "reason"),
    [
        ("models:/akm_assets_unregistered@champion", "Registered Model with name=akm_assets_unregistered not found"),
        (f"models:/{MODEL}@retired", "alias retired not found"),
    ],
    ids=["model", "alias"],
)
def test_scoring_an_asset_whose_model_or_alias_does_not_exist_fails_naming_it(
    assets_env, dagbag, first_run, model_uri, reason
):
    """The asset helper cannot know (no call to MLflow at parse time): resolving the model URI says so, at once."""
    run = _run_dag(assets_env, dagbag, MISSING_DAG, run_conf={"model_uri": model_uri})
    assert run.task_states["score"] == "failed"
    assert f"ModelUriError: model_uri {model_uri!r} resolves to no model on the tracking server" in run.output
    assert reason in run.output
    assert not Path(str(assets_env.input_csv) + ".scored.parquet").exists()
