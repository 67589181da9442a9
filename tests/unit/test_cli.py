"""``airflow-kedro-mlflow modelify`` and ``promote``: flags reach the core, ``--json`` is one JSON object, errors
are one readable line with the documented exit code (0 ok, 1 failure, 2 bad input)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import requests
from mlflow.exceptions import MlflowException

from airflow_kedro_mlflow.cli import CliUsageError, exit_code, main, parse_params, tracking_config
from airflow_kedro_mlflow.exceptions import (
    ArtifactIntegrityError,
    KedroRunError,
    MlflowConnectionError,
    MlflowServerUnavailableError,
    ModelRegistrationError,
    PromotionError,
)
from airflow_kedro_mlflow.tracking import DEFAULT_MAX_RETRIES
from tests.conftest import EXAMPLE_PROJECT


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from airflow_kedro_mlflow.kedro_project import open_session

    project = tmp_path_factory.mktemp("cli") / "kedro_classifier"
    shutil.copytree(EXAMPLE_PROJECT, project, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    with open_session(project) as session:
        session.run(pipeline_names=["training"])
    return project


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory: pytest.TempPathFactory, new_mlflow_store: Callable[..., str]) -> Iterator[str]:
    """One store for the module's modelify tests (each registers its own model name)."""
    root = tmp_path_factory.mktemp("cli-store")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # MLflow's default ./mlruns artifact root of a sqlite store
        yield new_mlflow_store(root)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["modelify", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow  # the CLI on a trained project (module fixture): integration tier
def test_modelify_registers_and_prints_json(trained_project, store_uri, capsys, tmp_path):
    example = tmp_path / "example.csv"
    pd.read_csv(trained_project / "data" / "05_model_input" / "instances.csv").head(2).to_csv(example, index=False)
    code, out, _ = run_cli(
        capsys,
        "--project-path", str(trained_project),
        "--pipeline", "training",
        "--tracking-uri", store_uri,
        "--experiment-name", "cli_json",
        "--run-name", "relog",
        "--registered-model-name", "cli_model",
        "--alias", "champion",
        "--alias", "challenger",
        "--model-name", "classifier_model",
        "--extra-pip-requirements", "scikit-learn",
        "--metadata", "team=ml",
        "--input-example", str(example),
        "--tag", "origin=cli",
        "--json",
    )  # fmt: skip

    assert code == 0
    result = json.loads(out)
    assert (result["registered_model_name"], result["version"]) == ("cli_model", "1")
    assert result["aliases"] == ["champion", "challenger"]
    client = mlflow.MlflowClient(store_uri)
    run = client.get_run(result["run_id"])
    assert run.info.run_name == "relog"
    assert run.data.tags["origin"] == "cli"
    mlflow.set_tracking_uri(store_uri)
    try:
        info = mlflow.models.get_model_info(f"runs:/{result['run_id']}/classifier_model")
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{info.model_id}"))
    finally:
        mlflow.set_tracking_uri(None)
    assert info.metadata == {"team": "ml"}
    assert "scikit-learn" in (local / "requirements.txt").read_text()
    assert (local / "serving_input_example.json").is_file()


@pytest.mark.slow  # the CLI on a trained project (module fixture): integration tier
def test_modelify_reads_tracking_uri_from_the_environment_and_prints_a_summary(
    trained_project, store_uri, capsys, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri)
    code, out, _ = run_cli(capsys, "--project-path", str(trained_project), "--pipeline", "training")

    assert code == 0
    assert out.startswith("Logged model models:/m-")


@pytest.mark.slow  # the CLI on a trained project (module fixture): integration tier
def test_params_reach_the_kedro_session(trained_project, store_uri, capsys):
    code, out, _ = run_cli(
        capsys,
        "--project-path", str(trained_project),
        "--pipeline", "training",
        "--tracking-uri", store_uri,
        "--params", "threshold=0.9",
        "--json",
    )  # fmt: skip

    assert code == 0
    model_uri = json.loads(out)["model_uri"]
    mlflow.set_tracking_uri(store_uri)
    try:
        params = mlflow.models.get_model_info(model_uri).signature.params
    finally:
        mlflow.set_tracking_uri(None)
    assert params.to_dict()[0]["default"] == 0.9


@pytest.mark.slow  # the CLI on a trained project (module fixture): integration tier
def test_no_tracking_uri_is_a_usage_error(trained_project, capsys):
    code, out, err = run_cli(capsys, "--project-path", str(trained_project), "--pipeline", "training")

    assert code == 2
    assert out == ""
    assert err.startswith("Error: MlflowConnectionError: no MLflow tracking server given: pass --tracking-uri")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow  # the CLI on a trained project (module fixture): integration tier
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--pipeline", "trainig"], "no pipeline named 'trainig'"),
        (["--pipeline", "training", "--env", "prod"], "Kedro env 'prod'"),
        (["--pipeline", "training", "--run-id", "deadbeef"], "MLflow run 'deadbeef' does not exist"),
        (["--pipeline", "training", "--registered-model-name", "a/b"], "'a/b' is not a valid"),
    ],
)
def test_bad_input_prints_one_line_and_exits_2(trained_project, store_uri, capsys, argv, message):
    code, _, err = run_cli(capsys, "--project-path", str(trained_project), "--tracking-uri", store_uri, *argv)

    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_untrained_project_names_the_artifact(tmp_path, store_uri, capsys):
    project = tmp_path / "kedro_classifier"
    shutil.copytree(EXAMPLE_PROJECT, project, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))

    code, _, err = run_cli(
        capsys, "--project-path", str(project), "--pipeline", "training", "--tracking-uri", store_uri
    )

    assert code == 2
    assert "ArtifactNotFoundError" in err
    assert "run the training pipeline first" in err


@pytest.mark.slow  # the CLI on a trained project (module fixture): integration tier
def test_bad_flag_values_are_usage_errors(trained_project, store_uri, capsys):
    code, _, err = run_cli(
        capsys, "--project-path", str(trained_project), "--pipeline", "training", "--tracking-uri", store_uri,
        "--params", "threshold",
    )  # fmt: skip
    assert code == 2
    assert "--params item 'threshold' is not KEY=VALUE" in err

    code, _, err = run_cli(
        capsys, "--project-path", str(trained_project), "--pipeline", "training", "--tracking-uri", store_uri,
        "--copy-mode", "{not json",
    )  # fmt: skip
    assert code == 2
    assert "--copy-mode" in err


def test_modelify_without_pipeline_or_training_result_is_a_usage_error(capsys):
    assert main(["modelify"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("airflow-kedro-mlflow modelify: error: the following arguments are required: --pipeline")
    assert "--training-result" in err


@pytest.mark.slow
def test_train_writes_the_training_xcom_and_modelify_reads_it(example_project, tracking_uri, capsys, monkeypatch):
    """``train`` is what every isolated execution mode runs: its output is the operator's XCom, atomically written;
    the credentials it got in MLflow's variables reach neither the Kedro process's environment nor its children."""
    from dataclasses import fields

    from airflow_kedro_mlflow.execution.commands import run_started_line
    from airflow_kedro_mlflow.training_result import TrainingResult
    from tests.unit.test_execution import CREDENTIALS, install_probe_hook

    install_probe_hook(example_project, package="kedro_probe_cli")
    probe = example_project.parent / "probe.json"
    monkeypatch.setenv("AKM_PROBE_FILE", str(probe))
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "trainer")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw-never-inherited")
    output = example_project.parent / "out" / "training.json"
    code = main([
        "train", "--project-path", str(example_project), "--tracking-uri", tracking_uri,
        "--runtime-params-json", '{"C": 0.5, "max_iter": 300}', "--params", "max_iter=200",
        "--tag", "team=ml", "--experiment-name", "cli_train", "--output", str(output), "--json",
    ])  # fmt: skip
    out, err = capsys.readouterr()

    assert code == 0, err
    payload = json.loads(output.read_text())
    assert json.loads(out) == payload
    assert set(payload) == {field.name for field in fields(TrainingResult)}
    assert TrainingResult.from_xcom(payload).to_xcom() == payload
    assert payload["runtime_params"] == {"C": 0.5, "max_iter": 200}  # typed JSON, --params on top
    assert sorted(payload["artifacts"]) == ["classifier", "params:threshold", "scaler"]
    assert [p.name for p in output.parent.iterdir()] == ["training.json"]  # no temporary file left behind
    assert run_started_line(payload["run_id"], None) in err.splitlines()
    run = mlflow.MlflowClient(tracking_uri).get_run(payload["run_id"])
    assert (run.info.status, run.data.params["C"], run.data.tags["team"]) == ("FINISHED", "0.5", "ml")
    seen = json.loads(probe.read_text())
    assert not set(CREDENTIALS) & set(seen["env"]), "the Kedro process still had the credentials in its environment"
    assert not set(CREDENTIALS) & set(seen["grandchild_env"]), "a process started by a node inherited credentials"
    assert not set(CREDENTIALS) & set(os.environ)

    result = example_project.parent / "modelify.json"
    monkeypatch.setenv("AKM_PROBE_FILE", str(probe.with_name("modelify-probe.json")))
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "trainer")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw-never-inherited")
    code = main([
        "modelify", "--training-result", str(output), "--tracking-uri", tracking_uri,
        "--registered-model-name", "cli_trained", "--idempotency-key", "task=modelify", "--output", str(result), "-q",
    ])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    logged = json.loads(result.read_text())
    assert (logged["run_id"], logged["model_uri"]) == (payload["run_id"], "models:/cli_trained/1")
    assert out.startswith("Logged model models:/cli_trained/1 in MLflow run " + payload["run_id"])
    seen = json.loads(probe.with_name("modelify-probe.json").read_text())  # modelify opens Kedro before MLflow
    assert not set(CREDENTIALS) & (set(seen["env"]) | set(seen["grandchild_env"]))


@pytest.mark.slow
def test_train_params_shape_flag_logs_kedro_mlflows_shape(example_project, tracking_uri, capsys):
    """``--params-shape kedro_mlflow``: one param per ``params:`` input a node reads, as kedro-mlflow logs them;
    the flags not given leave the project's own setting (here: none, so the default strategy) in force."""
    argv = ["train", "--project-path", str(example_project), "--tracking-uri", tracking_uri,
            "--runtime-params-json", '{"unread": {"a": 1}}', "--json"]  # fmt: skip
    client = mlflow.MlflowClient(tracking_uri)

    assert main(argv) == 0
    flattened = client.get_run(json.loads(capsys.readouterr().out)["run_id"]).data.params
    assert main([*argv, "--params-shape", "kedro_mlflow"]) == 0
    shaped = client.get_run(json.loads(capsys.readouterr().out)["run_id"]).data.params

    assert flattened["unread.a"] == "1"  # the default logs every parameter, flattened
    assert "threshold" in shaped and not any(name.startswith("unread") for name in shaped), shaped


def test_train_bad_input_is_one_line_exit_2_and_no_run(example_project, tracking_uri, capsys):
    argv = ["train", "--project-path", str(example_project), "--tracking-uri", tracking_uri]
    assert main([*argv, "--pipeline", "trainig"]) == 2
    assert "no pipeline named 'trainig'" in capsys.readouterr().err
    assert main([*argv, "--load-versions-json", "[1]"]) == 2
    assert "--load-versions-json must be a JSON object" in capsys.readouterr().err
    assert main([*argv, "--runtime-params-json", "{C: 1}"]) == 2
    assert "--runtime-params-json '{C: 1}' is not valid JSON" in capsys.readouterr().err
    assert mlflow.MlflowClient(tracking_uri).search_runs(["0"]) == []


def test_parse_params_types_and_nesting():
    assert parse_params(["C=0.5,max_iter=10", "model.kind=lr,flag=true,name=abc"]) == {
        "C": 0.5,
        "max_iter": 10,
        "model": {"kind": "lr"},
        "flag": True,
        "name": "abc",
    }
    with pytest.raises(CliUsageError, match="nests under 'C'"):
        parse_params(["C=1,C.x=2"])


def test_not_a_kedro_project_is_bad_input(tmp_path, capsys):
    code, out, err = run_cli(
        capsys, "--project-path", str(tmp_path), "--pipeline", "training",
        "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
    )  # fmt: skip

    assert code == 2
    assert out == ""
    assert err.startswith("Error: KedroProjectError:")
    assert "is not a Kedro project" in err
    assert len(err.strip().splitlines()) == 1


def test_main_switches_mlflow_url_lines_off(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT")
    main(["promote", "--registered-model-name", "m", "--version", "1", "--metric", "accuracy"])
    capsys.readouterr()

    assert os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"


# --------------------------------------------------------------------------------------------------------------------
# promote
# --------------------------------------------------------------------------------------------------------------------


def register_versions(tracking_uri: str, name: str, accuracies: list[float | None]) -> None:
    """Register one version per value, each from its own finished run logging ``accuracy`` (None: no metric)."""
    client = mlflow.MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("training")
    client.create_registered_model(name)
    for accuracy in accuracies:
        run_id = client.create_run(experiment_id).info.run_id
        if accuracy is not None:
            client.log_metric(run_id, "accuracy", accuracy)
        client.set_terminated(run_id)
        client.create_model_version(name, source=client.get_run(run_id).info.artifact_uri, run_id=run_id)


def promote_cli(capsys: pytest.CaptureFixture[str], tracking_uri: str, *argv: str) -> tuple[int, str, str]:
    code = main(["promote", "--registered-model-name", "clf", "--metric", "accuracy", "--tracking-uri", tracking_uri,
                 *argv])  # fmt: skip
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def champion(tracking_uri: str, alias: str = "champion") -> str | None:
    holder = mlflow.MlflowClient(tracking_uri).get_registered_model("clf").aliases.get(alias)
    return None if holder is None else str(holder)


def test_promote_moves_the_alias_only_to_a_better_version(tracking_uri, capsys):
    register_versions(tracking_uri, "clf", [0.8, 0.9, 0.85])

    code, out, _ = promote_cli(capsys, tracking_uri, "--version", "1")
    assert (code, champion(tracking_uri)) == (0, "1")
    assert out == "promoted: 'clf' version 1, alias 'champion': no version held alias 'champion'\n"

    code, out, _ = promote_cli(capsys, tracking_uri, "--version", "2", "-q")
    assert (code, champion(tracking_uri)) == (0, "2")
    assert out == "promoted: 'clf' version 2, alias 'champion': accuracy=0.9 beats champion version 1's accuracy=0.8\n"

    code, out, _ = promote_cli(capsys, tracking_uri, "--version", "3")
    assert (code, champion(tracking_uri)) == (0, "2")
    assert out.startswith("kept_champion: 'clf' version 3, alias 'champion': accuracy=0.85 does not beat")

    code, out, _ = promote_cli(capsys, tracking_uri, "--version", "2", "--json")
    assert (code, champion(tracking_uri)) == (0, "2")
    assert len(out.splitlines()) == 1
    assert json.loads(out) == {
        "decision": "already_champion",
        "reason": "version 2 already holds alias 'champion'",
        "registered_model_name": "clf",
        "version": "2",
        "alias": "champion",
        "metric": "accuracy",
        "value": 0.9,
        "champion_version": "2",
        "champion_value": 0.9,
    }


def test_promote_lower_is_better_and_another_alias(tracking_uri, capsys, monkeypatch):
    register_versions(tracking_uri, "clf", [0.3, 0.2])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)  # --tracking-uri is optional when the env says it
    for version in ("1", "2"):
        assert main(["promote", "--registered-model-name", "clf", "--version", version, "--metric", "accuracy",
                     "--alias", "best", "--lower-is-better", "--json"]) == 0  # fmt: skip
    decision = json.loads(capsys.readouterr().out.splitlines()[-1])

    assert decision["decision"] == "promoted"
    assert champion(tracking_uri, "best") == "2"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--version", "7"], "PromotionError: registered model 'clf' has no version '7'"),
        (["--version", "1", "--metric", "rmse"], "PromotionError: metric 'rmse' is absent from run"),
        (["--version", "1", "--alias", "best model"], "ModelRegistrationError: alias 'best model' is not a valid"),
    ],
)
def test_promote_bad_input_exits_2_with_one_line(tracking_uri, capsys, argv, message):
    register_versions(tracking_uri, "clf", [0.8])

    code, out, err = promote_cli(capsys, tracking_uri, *argv)

    assert (code, out) == (2, "")
    assert err.startswith(f"Error: {message}")
    assert len(err.strip().splitlines()) == 1
    client = mlflow.MlflowClient(tracking_uri)
    assert client.get_registered_model("clf").aliases == {}
    assert client.get_model_version("clf", "1").tags == {}  # refused before anything was written


def test_promote_flags_are_checked_by_argparse(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["promote", "--registered-model-name", "clf", "--version", "1", "--metric", "accuracy",
              "--greater-is-better", "--lower-is-better"])  # fmt: skip
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_tracking_config_fails_fast_unless_the_user_sets_http_limits(monkeypatch, tracking_uri):
    default = tracking_config(tracking_uri, None)
    assert (default.max_retries, default.timeout) == (DEFAULT_MAX_RETRIES, None)

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "sqlite:////tmp/registry.db")
    configured = tracking_config(tracking_uri, None)
    assert (configured.max_retries, configured.timeout) == (5, 7.0)
    assert configured.registry_uri == "sqlite:////tmp/registry.db"
    assert tracking_config(tracking_uri, "sqlite:////tmp/other.db").registry_uri == "sqlite:////tmp/other.db"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (MlflowServerUnavailableError("server down"), 1),
        (ConnectionError("refused"), 1),
        (requests.exceptions.ConnectionError("refused"), 1),
        (requests.exceptions.Timeout("slow"), 1),
        (MlflowException("registry refused"), 1),
        (OSError("disk full"), 1),
        (ArtifactIntegrityError("changed"), 1),
        (KedroRunError("node failed"), 1),
        (ValueError("raised deep inside a library"), 1),
        (MlflowConnectionError("credentials rejected"), 2),
        (ModelRegistrationError("invalid alias"), 2),
        (PromotionError("unknown version"), 2),
        (CliUsageError("bad flag"), 2),
        (RuntimeError("a bug"), None),
    ],
)
def test_exit_codes(error, code):
    assert exit_code(error) == code
