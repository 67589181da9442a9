"""KedroTrainingOperator and KedroModelifyOperator: execute() with a dict context, a real Kedro project, real MLflow.

One training run of the example project (module fixture) feeds the modelify tests; the failure tests stop before
Kedro runs. The full DAGs, a real MLflow server and the no-shared-disk cases are in tests/integration/test_dags.py.
"""

from __future__ import annotations

import json
import re
import shutil
from typing import Any

import pytest

from airflow_kedro_mlflow.exceptions import (
    KedroProjectError,
    MlflowConnectionError,
    MlflowServerUnavailableError,
    ModelRegistrationError,
    TrainingXComError,
)
from airflow_kedro_mlflow.links.mlflow import (
    MLFLOW_MODEL_VERSION_URL_KEY,
    MLFLOW_RUN_URL_KEY,
    MlflowModelVersionLink,
    MlflowRunLink,
)
from airflow_kedro_mlflow.operators.kedro import (
    MODEL_URI_KEY,
    RUN_ID_KEY,
    KedroModelifyOperator,
    KedroTrainingOperator,
    lineage_tags,
)
from tests.conftest import EXAMPLE_PROJECT
from tests.servers import free_port
from tests.unit.airflow.conftest import RecordingTaskInstance, make_context

DAG_RUN_ID = "scheduled__2026-11-23T00:00:00+00:00"


def _conn_value(tracking_uri: str, **fields: Any) -> str:
    return json.dumps({"conn_type": "mlflow", "extra": {"tracking_uri": tracking_uri}, **fields})


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory, new_mlflow_store) -> str:
    return new_mlflow_store(tmp_path_factory.mktemp("kedro-operators"))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    target = tmp_path_factory.mktemp("project") / "kedro_classifier"
    shutil.copytree(EXAMPLE_PROJECT, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return target


@pytest.fixture(scope="module")
def trained(store_uri, project) -> tuple[dict[str, Any], RecordingTaskInstance]:
    """Execute the training operator once, as the task ``train`` of dag run ``DAG_RUN_ID``."""
    operator = KedroTrainingOperator(
        task_id="train",
        project_path=str(project),
        runtime_params={"C": 0.5},
        experiment_name="unit_operators",
        mlflow_tags={"team": "ml"},
    )
    ti = RecordingTaskInstance(task_id="train", dag_id="unit_dag", run_id=DAG_RUN_ID)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", _conn_value(store_uri))
        payload = operator.execute(make_context(ti))
    return payload, ti


@pytest.fixture
def mlflow_conn(monkeypatch, store_uri) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", _conn_value(store_uri))
    return store_uri


@pytest.fixture
def client(store_uri):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=store_uri, registry_uri=store_uri)


def _modelify_ti(trained, try_number: int = 1) -> RecordingTaskInstance:
    payload, _ = trained
    ti = RecordingTaskInstance(task_id="modelify", dag_id="unit_dag", run_id=DAG_RUN_ID, try_number=try_number)
    ti.xcoms[("train", "return_value")] = payload
    return ti


def test_training_returns_the_xcom_payload_and_tags_the_run(trained, client, project):
    payload, ti = trained
    assert payload["pipeline_name"] == "training"
    assert payload["input_name"] == "instances"
    assert payload["project_path"] == str(project)
    assert payload["runtime_params"] == {"C": 0.5}
    assert sorted(payload["artifacts"]) == ["classifier", "params:threshold", "scaler"]
    assert ti.xcoms[("train", RUN_ID_KEY)] == payload["run_id"]
    assert ("train", MLFLOW_RUN_URL_KEY) not in ti.xcoms  # sqlite: no UI, so no link
    run = client.get_run(payload["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["C"] == "0.5"
    assert {
        "airflow.dag_id": "unit_dag",
        "airflow.dag_run_id": DAG_RUN_ID,
        "airflow.task_id": "train",
        "airflow.try_number": "1",
        "team": "ml",
    }.items() <= run.data.tags.items()
    assert "accuracy" in run.data.metrics


@pytest.mark.slow
def test_modelify_registers_once_per_dag_run_across_retries(trained, mlflow_conn, client):
    operator = KedroModelifyOperator(
        task_id="modelify",
        training_task_id="train",
        registered_model_name="unit_classifier",
        aliases=["challenger"],
    )
    first_ti = _modelify_ti(trained, try_number=1)
    first = operator.execute(make_context(first_ti))
    retry = operator.execute(make_context(_modelify_ti(trained, try_number=2)))

    assert first["registered_model_name"] == "unit_classifier"
    assert retry["version"] == first["version"]
    assert retry["reused"] is True
    versions = client.search_model_versions("name = 'unit_classifier'")
    assert [str(v.version) for v in versions] == [str(first["version"])]
    version = client.get_model_version("unit_classifier", first["version"])
    assert version.run_id == trained[0]["run_id"]
    assert version.tags["airflow.dag_run_id"] == DAG_RUN_ID
    assert version.tags["kedro.pipeline_name"] == "training"
    assert str(client.get_model_version_by_alias("unit_classifier", "challenger").version) == str(first["version"])
    assert first_ti.xcoms[("modelify", MODEL_URI_KEY)] == first["model_uri"]
    assert first_ti.xcoms[("modelify", RUN_ID_KEY)] == trained[0]["run_id"]
    assert ("modelify", MLFLOW_MODEL_VERSION_URL_KEY) not in first_ti.xcoms


def test_modelify_without_registered_model_name_only_logs(trained, mlflow_conn):
    # A second modelify of the same training run: its model needs a name of its own in that run.
    operator = KedroModelifyOperator(
        task_id="log_only", training_task_id="train", log_model_kwargs={"name": "log_only"}
    )
    ti = _modelify_ti(trained)
    ti.task_id = "log_only"
    result = operator.execute(make_context(ti))
    assert result["registered_model_name"] is None
    assert result["version"] is None
    assert result["model_uri"].startswith("models:/")


def test_modelify_without_training_xcom_says_to_run_training_first(mlflow_conn):
    operator = KedroModelifyOperator(task_id="modelify", training_task_id="train")
    with pytest.raises(TrainingXComError, match=re.escape("training task 'train' published no XCom")):
        operator.execute(make_context(RecordingTaskInstance(task_id="modelify")))


def test_modelify_with_malformed_training_xcom_names_the_key(mlflow_conn):
    ti = RecordingTaskInstance(task_id="modelify")
    ti.xcoms[("train", "return_value")] = {"run_id": "abc"}
    operator = KedroModelifyOperator(task_id="modelify", training_task_id="train")
    with pytest.raises(TrainingXComError, match="experiment_id"):
        operator.execute(make_context(ti))


def test_forged_xcom_cannot_point_modelify_at_other_code(trained, mlflow_conn, project, tmp_path):
    """The XCom may choose a training run, never which project's code this worker imports: a project_path other
    than the one the training task is declared with (the DAG file is trusted, the XCom is not) is refused."""
    from airflow.sdk import DAG

    other = tmp_path / "other_project"
    shutil.copytree(project, other)
    marker = tmp_path / "imported.txt"
    registry = other / "src" / "kedro_classifier" / "pipeline_registry.py"
    registry.write_text(registry.read_text() + f"\nopen({str(marker)!r}, 'w').close()\n")
    with DAG("unit_dag", schedule=None):
        KedroTrainingOperator(task_id="train", project_path=str(project))
        operator = KedroModelifyOperator(task_id="modelify", training_task_id="train")
    ti = _modelify_ti(trained)
    ti.xcoms[("train", "return_value")] = {**trained[0], "project_path": str(other)}

    with pytest.raises(TrainingXComError, match=re.escape(f"project_path {str(other)!r}")) as info:
        operator.execute(make_context(ti))

    assert str(project) in str(info.value)
    assert not marker.exists()


def test_xcom_project_path_is_trusted_when_the_training_task_declares_a_template(trained, mlflow_conn, project):
    """A templated project_path is only known once rendered in the training task: nothing to compare with here."""
    from airflow.sdk import DAG

    with DAG("unit_dag", schedule=None):
        KedroTrainingOperator(task_id="train", project_path="{{ params.project }}")
        operator = KedroModelifyOperator(task_id="modelify_templated", training_task_id="train")
    ti = _modelify_ti(trained)
    ti.task_id = "modelify_templated"

    assert operator._training_result(make_context(ti)).project_path == str(project)


def test_modelify_with_invalid_registered_model_name_fails_before_logging(trained, mlflow_conn):
    operator = KedroModelifyOperator(task_id="modelify", training_task_id="train", registered_model_name="a/b")
    with pytest.raises(ModelRegistrationError, match=re.escape("registered_model_name='a/b'")):
        operator.execute(make_context(_modelify_ti(trained)))


def test_modelify_against_another_tracking_server_than_training_is_an_error(trained, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", _conn_value(f"sqlite:///{tmp_path / 'other.db'}"))
    operator = KedroModelifyOperator(task_id="modelify", training_task_id="train")
    with pytest.raises(MlflowConnectionError, match="the training result was logged to"):
        operator.execute(make_context(_modelify_ti(trained)))


def test_training_on_a_folder_that_is_no_kedro_project_is_a_clear_error(mlflow_conn, tmp_path):
    operator = KedroTrainingOperator(task_id="train", project_path=str(tmp_path))
    with pytest.raises(KedroProjectError, match=re.escape(f"{tmp_path} is not a Kedro project")):
        operator.execute(make_context(RecordingTaskInstance(task_id="train")))


def test_training_with_unknown_pipeline_suggests_close_matches(mlflow_conn, project):
    operator = KedroTrainingOperator(task_id="train", project_path=str(project), pipeline_name="trainig")
    with pytest.raises(KedroProjectError, match=re.escape("Did you mean 'training'?")):
        operator.execute(make_context(RecordingTaskInstance(task_id="train")))


def test_training_with_unknown_env_lists_the_envs(mlflow_conn, project):
    operator = KedroTrainingOperator(task_id="train", project_path=str(project), env="prod")
    with pytest.raises(KedroProjectError, match=re.escape("Kedro env 'prod'")):
        operator.execute(make_context(RecordingTaskInstance(task_id="train")))


def test_training_against_an_unreachable_server_names_it_without_credentials(monkeypatch, project):
    port = free_port()
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT",
        json.dumps({"conn_type": "mlflow", "host": "127.0.0.1", "port": port, "login": "admin",
                    "password": "hunter2-secret", "extra": {"max_retries": 0, "timeout": 2}}),
    )  # fmt: skip
    operator = KedroTrainingOperator(task_id="train", project_path=str(project))
    with pytest.raises(MlflowServerUnavailableError, match=re.escape(f"http://127.0.0.1:{port}")) as raised:
        operator.execute(make_context(RecordingTaskInstance(task_id="train")))
    assert "hunter2-secret" not in str(raised.value)


def test_dict_argument_rendered_as_text_explains_native_rendering(mlflow_conn, project):
    operator = KedroTrainingOperator(task_id="train", project_path=str(project), runtime_params="{'C': 0.5}")
    with pytest.raises(ValueError, match=re.escape("runtime_params must be a dict, got str")) as raised:
        operator.execute(make_context(RecordingTaskInstance(task_id="train")))
    assert "render_template_as_native_obj=True" in str(raised.value)


def test_modelify_needs_a_training_task_or_a_project():
    with pytest.raises(ValueError, match="pass training_task_id"):
        KedroModelifyOperator(task_id="modelify")


def test_every_user_string_and_dict_is_templated():
    assert set(KedroTrainingOperator.template_fields) == {
        "project_path", "pipeline_name", "env", "conf_source", "runtime_params", "experiment_name", "run_name",
        "run_id", "mlflow_tags", "runner", "tags", "node_names", "from_nodes", "to_nodes", "load_versions",
        "params_options",
    }  # fmt: skip
    assert {
        "project_path", "runtime_params", "registered_model_name", "aliases", "log_model_kwargs", "select_best_by",
    } <= set(KedroModelifyOperator.template_fields)  # fmt: skip
    assert "mlflow_conn_id" not in KedroTrainingOperator.template_fields


def test_links_are_attached_to_the_operators():
    assert [type(link) for link in KedroTrainingOperator.operator_extra_links] == [MlflowRunLink]
    assert [type(link) for link in KedroModelifyOperator.operator_extra_links] == [
        MlflowRunLink,
        MlflowModelVersionLink,
    ]


def test_lineage_tags_identify_the_task_try():
    ti = RecordingTaskInstance(task_id="train", dag_id="d", run_id="r", try_number=3)
    assert lineage_tags(make_context(ti)) == {
        "airflow.dag_id": "d",
        "airflow.dag_run_id": "r",
        "airflow.task_id": "train",
        "airflow.map_index": "-1",
        "airflow.try_number": "3",
    }


def test_on_kill_interrupts_only_a_running_execute():
    from airflow.sdk.exceptions import AirflowTaskTerminated

    operator = KedroTrainingOperator(task_id="train", project_path="/nowhere")
    operator.on_kill()  # not executing: nothing to interrupt (e.g. after a timeout already unwound execute)
    with pytest.raises(AirflowTaskTerminated, match="killed while running Kedro"), operator._interruptible():
        operator.on_kill()
    operator.on_kill()
