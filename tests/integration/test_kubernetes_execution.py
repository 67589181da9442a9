"""KubernetesExecution, tested by rendering and by a fake API server: there is no cluster (nor docker) here.

- Rendering: the pod spec comes from the provider's own ``KubernetesPodOperator.build_pod_request_obj`` (image,
  command, env from the secret, resources, the XCom sidecar) and is searched for the connection's credentials, as are
  the pod operator's rendered template fields.
- The pod's end: only the Kubernetes API calls are faked (:mod:`tests.kubernetes_api`: create/read/list/delete the
  pod, its log stream, the ``exec`` into the XCom sidecar). KPO, its pod manager, our execution mode, the operators,
  MLflow (real sqlite stores) and Kedro run for real. The ``return.json`` and log lines the fake serves are produced
  by running the real CLI locally with the rendered pod's own command and variables.

Integration tier: importing the provider costs about 7 s of CPU, and the real CLI runs take seconds.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient

from airflow_kedro_mlflow.exceptions import (
    KedroRunError,
    MlflowConnectionError,
    ProjectEnvironmentError,
    ProjectProcessError,
)
from airflow_kedro_mlflow.execution import KubernetesExecution, kubernetes
from airflow_kedro_mlflow.execution.commands import run_started_line
from airflow_kedro_mlflow.kedro_project import KedroRunSpec
from airflow_kedro_mlflow.tracking import TrackingConfig
from airflow_kedro_mlflow.training_result import TrainingResult
from tests.kubernetes_api import ContainerScript, FakeCoreV1Api, FakeKubernetesHook
from tests.unit.airflow.conftest import RecordingTaskInstance

pytestmark = pytest.mark.integration

PASSWORD = "s3cr3t-Pa55word"  # a test value: it must show up nowhere
TRACKING = TrackingConfig("http://mlflow.internal:5000", username="alice", password=PASSWORD, max_retries=2)
IMAGE = "registry.example.com/kedro-classifier:1.0"
SPEC = KedroRunSpec("/workers/kedro_classifier", "training", env="local", runtime_params={"model": {"C": 0.5}})


@pytest.fixture(autouse=True)
def _kubernetes_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cluster connection as a deployment gives it (nothing here contacts a cluster)."""
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps({"conn_type": "kubernetes"}))


def _context(task_id: str = "train") -> dict[str, Any]:
    ti = RecordingTaskInstance(task_id=task_id)
    return {"ti": ti, "task_instance": ti, "run_id": ti.run_id, "dag": None}


def _execution(**kwargs: Any) -> KubernetesExecution:
    defaults: dict[str, Any] = {
        "image": IMAGE,
        "namespace": "ml",
        "project_path": "/app",
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
        "mlflow_secret": "mlflow-credentials",
    }
    return KubernetesExecution(**{**defaults, **kwargs})


def _rendered(pod_operator: Any, context: dict[str, Any]) -> dict[str, Any]:
    return ApiClient().sanitize_for_serialization(pod_operator.build_pod_request_obj(context, dry_run=True))


def _assert_no_credentials(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text
        assert "alice" not in text


# -- rendering --------------------------------------------------------------------------------------------------------


def test_train_pod_renders_image_cli_command_secret_env_resources_and_xcom_sidecar():
    pod_operator = _execution().train_pod(SPEC, tracking=TRACKING, task_id="train", run_name="weekly",
                                          mlflow_tags={"team": "ml"})  # fmt: skip
    pod = _rendered(pod_operator, _context())

    assert pod["metadata"]["namespace"] == "ml"
    base, sidecar = pod["spec"]["containers"]
    assert base["image"] == IMAGE
    assert base["command"] == [
        "python", "-m", "airflow_kedro_mlflow.cli", "train", "--project-path", "/app", "--pipeline", "training",
        "--env", "local", "--runtime-params-json", '{"model": {"C": 0.5}}', "--tracking-uri",
        "http://mlflow.internal:5000", "--output", "/airflow/xcom/return.json", "--run-name", "weekly",
        "--tag", "team=ml",
    ]  # fmt: skip
    assert base["envFrom"] == [{"secretRef": {"name": "mlflow-credentials"}}]
    env = {item["name"]: item["value"] for item in base["env"]}
    assert env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert not set(env) & set(kubernetes.CREDENTIAL_VARIABLES)
    assert base["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}
    assert {"mountPath": "/airflow/xcom", "name": "xcom"} in base["volumeMounts"]
    assert sidecar["name"] == "airflow-xcom-sidecar"
    assert pod["metadata"]["labels"]["task_id"] == "train"
    _assert_no_credentials(json.dumps(pod))


def test_rendered_template_fields_of_the_pod_hold_no_credentials():
    pod_operator = _execution().train_pod(SPEC, tracking=TRACKING, task_id="train")
    pod_operator.render_template_fields(_context())
    rendered = {name: repr(getattr(pod_operator, name)) for name in pod_operator.template_fields}
    assert "airflow_kedro_mlflow.cli" in rendered["cmds"]
    _assert_no_credentials(*rendered.values())


def test_secret_keys_become_secret_key_refs_not_values():
    execution = _execution(mlflow_secret_keys={"MLFLOW_TRACKING_USERNAME": "user", "MLFLOW_TRACKING_PASSWORD": "pw"})
    base = _rendered(execution.train_pod(SPEC, tracking=TRACKING, task_id="train"), _context())["spec"]["containers"][0]

    refs = {item["name"]: item["valueFrom"]["secretKeyRef"] for item in base["env"] if "valueFrom" in item}
    assert refs == {
        "MLFLOW_TRACKING_USERNAME": {"name": "mlflow-credentials", "key": "user"},
        "MLFLOW_TRACKING_PASSWORD": {"name": "mlflow-credentials", "key": "pw"},
    }
    assert not base.get("envFrom")
    _assert_no_credentials(json.dumps(base))


def test_modelify_pod_gets_the_training_result_as_a_variable_written_by_the_shell():
    training = TrainingResult(
        run_id="0" * 32,
        experiment_id="1",
        tracking_uri="http://mlflow.internal:5000",
        project_path="/app",
        env="local",
        conf_source=None,
        runtime_params={},
        pipeline_name="training",
        input_name="instances",
        artifacts={},
        signature=None,
    )
    pod_operator = _execution(project_path=None).modelify_pod(
        None,
        "training",
        tracking=TRACKING,
        task_id="modelify",
        training=training,
        registered_model_name="clf",
        aliases=["challenger"],
    )
    base = _rendered(pod_operator, _context("modelify"))["spec"]["containers"][0]

    shell, flag, script, name, *cli = base["command"]
    assert (shell, flag, name) == ("/bin/sh", "-c", "sh")
    assert script == (f'printf "%s" "${kubernetes.TRAINING_RESULT_ENV}" > {kubernetes.TRAINING_RESULT_FILE} '
                      '&& exec "$@"')  # fmt: skip
    assert cli[:4] == ["python", "-m", "airflow_kedro_mlflow.cli", "modelify"]
    assert cli[cli.index("--training-result") + 1] == kubernetes.TRAINING_RESULT_FILE
    assert "--project-path" not in cli  # the training result's: where training ran, in the image
    env = {item["name"]: item.get("value") for item in base["env"]}
    assert TrainingResult.from_xcom(env[kubernetes.TRAINING_RESULT_ENV]) == training
    _assert_no_credentials(json.dumps(base))


def test_connection_credentials_without_a_secret_are_refused_before_any_pod():
    with pytest.raises(MlflowConnectionError, match=re.escape("KubernetesExecution(mlflow_secret=")) as raised:
        _execution(mlflow_secret=None).train_pod(SPEC, tracking=TRACKING, task_id="train")
    _assert_no_credentials(str(raised.value))


def test_a_server_without_credentials_needs_no_secret():
    pod_operator = _execution(mlflow_secret=None).train_pod(
        SPEC, tracking=TrackingConfig("http://mlflow.internal:5000"), task_id="train"
    )
    assert not _rendered(pod_operator, _context())["spec"]["containers"][0].get("envFrom")


# -- the pod's end, played by a fake API server -----------------------------------------------------------------------


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch):
    """Point KPO at a fake Kubernetes API; return ``script(**ContainerScript fields) -> FakeCoreV1Api``."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    def script(**kwargs: Any) -> FakeCoreV1Api:
        api = FakeCoreV1Api(ContainerScript(**kwargs))
        hook = FakeKubernetesHook(api)
        monkeypatch.setattr(KubernetesPodOperator, "hook", property(lambda self: hook))
        return api

    return script


@pytest.fixture
def running_run(tracking_uri):
    """A real MLflow run, RUNNING as a training pod leaves it once it has announced it."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    run = client.create_run(client.create_experiment("pods"))
    return TrackingConfig(tracking_uri), client, run.info.run_id


def test_image_without_the_cli_fails_naming_the_image_and_the_recipe(cluster):
    cluster(logs=["/usr/local/bin/python: No module named airflow_kedro_mlflow"], exit_code=1, reason="Error")
    with pytest.raises(ProjectEnvironmentError) as raised:
        _execution(mlflow_secret=None).train(SPEC, tracking=TrackingConfig("http://m:5000"), context=_context())
    message = str(raised.value)
    assert f"image {IMAGE} cannot run the airflow-kedro-mlflow CLI (No module named airflow_kedro_mlflow)" in message
    assert "docs/kubernetes_image.md" in message


def test_image_without_python_fails_naming_the_image(cluster):
    cluster(exit_code=128, reason="StartError")
    with pytest.raises(ProjectEnvironmentError, match=re.escape(f"image {IMAGE} cannot run the airflow-kedro-mlflow")):
        _execution(mlflow_secret=None).train(SPEC, tracking=TrackingConfig("http://m:5000"), context=_context())


def test_image_that_cannot_be_pulled_says_so(cluster):
    cluster(waiting_reason="ErrImagePull")
    with pytest.raises(ProjectEnvironmentError, match=re.escape(f"the pod of image {IMAGE} did not run")):
        _execution(mlflow_secret=None).train(SPEC, tracking=TrackingConfig("http://m:5000"), context=_context())


def test_cli_error_is_reraised_as_its_class_and_the_run_ends_failed(cluster, running_run):
    tracking, client, run_id = running_run
    cluster(logs=[run_started_line(run_id, None), "Error: KedroRunError: node 'train_model' failed: boom"],
            exit_code=1, reason="Error")  # fmt: skip
    with pytest.raises(KedroRunError, match=re.escape(f"node 'train_model' failed: boom [image: {IMAGE}, pod: ml/")):
        _execution(mlflow_secret=None).train(SPEC, tracking=tracking, context=_context())
    assert client.get_run(run_id).info.status == "FAILED"


def test_out_of_memory_pod_says_to_raise_the_memory_limit(cluster, running_run):
    tracking, client, run_id = running_run
    cluster(logs=[run_started_line(run_id, None), "INFO fitting"], exit_code=137, reason="OOMKilled")
    with pytest.raises(ProjectProcessError, match=re.escape("raise resources={'limits': {'memory': ...}}")):
        _execution(mlflow_secret=None).train(SPEC, tracking=tracking, context=_context())
    assert client.get_run(run_id).info.status == "FAILED"


def test_killed_task_deletes_the_pod_and_ends_the_run_failed(cluster, running_run, monkeypatch):
    """Airflow's SIGTERM handler calls the operator's on_kill while the worker streams the pod's log."""
    from airflow.sdk.exceptions import AirflowTaskTerminated

    from airflow_kedro_mlflow.operators.kedro import KedroTrainingOperator

    tracking, client, run_id = running_run
    connection = {"conn_type": "mlflow", "extra": {"tracking_uri": tracking.tracking_uri}}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(connection))
    operator = KedroTrainingOperator(task_id="train", project_path="/workers/kedro_classifier",
                                     execution=_execution(mlflow_secret=None))  # fmt: skip

    def sigterm(index: int) -> None:
        if index == 1:
            operator.on_kill()

    api = cluster(logs=[run_started_line(run_id, None), "INFO fitting", "INFO never seen"], during_logs=sigterm)
    with pytest.raises(AirflowTaskTerminated):
        operator.execute(_context())

    assert len(api.deleted) == 1
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert "interrupted (AirflowTaskTerminated)" in json.dumps(run.data.tags)


def test_training_operator_runs_in_a_pod_by_changing_only_execution(cluster, monkeypatch):
    from airflow_kedro_mlflow.operators.kedro import RUN_ID_KEY, KedroTrainingOperator

    connection = {"conn_type": "mlflow", "host": "mlflow.internal", "schema": "http", "port": 5000}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(connection))
    payload = TrainingResult(
        run_id="c" * 32,
        experiment_id="1",
        tracking_uri="http://mlflow.internal:5000",
        project_path="/app",
        env="local",
        conf_source=None,
        runtime_params={},
        pipeline_name="training",
        input_name="instances",
        artifacts={},
        signature=None,
    ).to_xcom()
    announce = run_started_line("c" * 32, "http://mlflow.internal:5000/#/runs/c")
    api = cluster(logs=[announce], return_json=json.dumps(payload))
    operator = KedroTrainingOperator(
        task_id="train", project_path="/workers/kedro_classifier", execution=_execution(mlflow_secret=None)
    )
    context = _context()

    assert operator.execute(context) == payload  # the same XCom in every mode
    assert context["ti"].xcoms[("train", RUN_ID_KEY)] == "c" * 32  # published as soon as the pod announced it
    assert context["ti"].xcoms[("train", "pod_namespace")] == "ml"
    command = api.created[0]["spec"]["containers"][0]["command"]
    assert command[command.index("--project-path") + 1] == "/app"  # the project's path in the image
    assert "airflow.task_id=train" in command  # the lineage tags, as in-process
    assert api.deleted  # KPO's on_finish_action: the finished pod is deleted


# -- the real CLI's result, served as the pod's -----------------------------------------------------------------------


def _run_pod_command_locally(pod_operator: Any, context: dict[str, Any], workdir: Path) -> tuple[list[str], int, str]:
    """Run the rendered pod's command and variables here, as the container would; return its log lines, exit code
    and ``return.json``. Only the in-pod paths are remapped into ``workdir``, and ``python`` is this interpreter."""
    base = _rendered(pod_operator, context)["spec"]["containers"][0]
    pod_paths = {kubernetes.XCOM_RETURN_FILE: str(workdir / "return.json"),
                 kubernetes.TRAINING_RESULT_FILE: str(workdir / "training.json")}  # fmt: skip
    command = []
    for part in base["command"]:
        local_part = part
        for pod_path, local in pod_paths.items():
            local_part = local_part.replace(pod_path, local)
        command.append(sys.executable if local_part == "python" else local_part)
    env = {**os.environ, **{item["name"]: item["value"] for item in base["env"]}}
    completed = subprocess.run(command, env=env, cwd=workdir, capture_output=True, text=True, timeout=300, check=False)
    lines = (completed.stderr + completed.stdout).splitlines()
    output = workdir / "return.json"
    assert completed.returncode == 0, "\n".join(lines[-20:])
    return lines, completed.returncode, output.read_text(encoding="utf-8")


def test_real_cli_result_comes_back_as_the_same_xcom_and_modelify_runs_in_a_pod_too(
    cluster, tracking_uri, example_project, tmp_path
):
    from mlflow import MlflowClient

    tracking = TrackingConfig(tracking_uri)
    execution = _execution(project_path=str(example_project), mlflow_secret=None)
    spec = KedroRunSpec("/workers/kedro_classifier", "training")
    train_context = _context("train")

    train_pod = execution.train_pod(spec, tracking=tracking, task_id="train", mlflow_tags={"airflow.task_id": "train"})
    lines, exit_code, return_json = _run_pod_command_locally(train_pod, train_context, tmp_path)
    api = cluster(logs=lines, exit_code=exit_code, return_json=return_json)
    announced: list[str] = []
    training = execution.train(spec, tracking=tracking, context=train_context, mlflow_tags={"airflow.task_id": "train"},
                               on_run_start=lambda run_id, url: announced.append(run_id))  # fmt: skip

    assert training == TrainingResult.from_xcom(return_json)
    assert training.to_xcom() == json.loads(return_json)  # the payload the in-process and virtualenv modes push
    assert announced == [training.run_id]
    assert training.project_path == str(example_project)
    assert api.created[0]["spec"]["containers"][0]["command"][:4] == ["python", "-m", "airflow_kedro_mlflow.cli",
                                                                      "train"]  # fmt: skip

    modelify_context = _context("modelify")
    modelify_pod = execution.modelify_pod(None, None, tracking=tracking, task_id="modelify", training=training,
                                          registered_model_name="k8s_classifier", aliases=["challenger"])  # fmt: skip
    (tmp_path / "modelify").mkdir()
    lines, exit_code, return_json = _run_pod_command_locally(modelify_pod, modelify_context, tmp_path / "modelify")
    cluster(logs=lines, exit_code=exit_code, return_json=return_json)
    result = execution.modelify(None, None, tracking=tracking, context=modelify_context, training=training,
                                registered_model_name="k8s_classifier", aliases=["challenger"])  # fmt: skip

    assert result.to_xcom() == json.loads(return_json)
    assert result.run_id == training.run_id
    version = MlflowClient(tracking_uri).get_model_version_by_alias("k8s_classifier", "challenger")
    assert int(version.version) == int(result.version)
