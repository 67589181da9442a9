"""``airflow-kedro-mlflow modelify``: flags reach modelify(), errors are one readable line with the right exit code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from airflow_kedro_mlflow.cli import CliUsageError, main, parse_params
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
def store_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("cli-store")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # MLflow's default ./mlruns artifact root of a sqlite store
        yield f"sqlite:///{root / 'mlflow.db'}"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["modelify", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


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


def test_modelify_reads_tracking_uri_from_the_environment_and_prints_a_summary(
    trained_project, store_uri, capsys, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri)
    code, out, _ = run_cli(capsys, "--project-path", str(trained_project), "--pipeline", "training")

    assert code == 0
    assert out.startswith("Logged model models:/m-")


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


def test_no_tracking_uri_is_a_usage_error(trained_project, capsys):
    code, out, err = run_cli(capsys, "--project-path", str(trained_project), "--pipeline", "training")

    assert code == 2
    assert out == ""
    assert err.startswith("Error: MlflowConnectionError: no MLflow tracking server given: pass --tracking-uri")
    assert len(err.strip().splitlines()) == 1


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


def test_missing_required_flag_is_argparse_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["modelify"])
    assert exit_info.value.code == 2
    assert "--pipeline" in capsys.readouterr().err


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


def test_console_script_is_installed_and_fails_cleanly(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    script = Path(sys.executable).with_name("airflow-kedro-mlflow")
    completed = subprocess.run(
        [str(script), "modelify", "--project-path", str(tmp_path), "--pipeline", "training", "--tracking-uri",
         f"sqlite:///{tmp_path / 'mlflow.db'}"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False,
    )  # fmt: skip

    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines()[-1].startswith("Error: KedroProjectError:")
    assert "is not a Kedro project" in completed.stderr
    assert "Traceback" not in completed.stderr
