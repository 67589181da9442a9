"""Slow paths of the CLI and of importing Kedro, in real processes: the installed console script, a server that is
down (seconds of HTTP backoff), and what importing Kedro does to the caller's logging (a fresh interpreter each).

They live in the integration tier because each costs seconds (interpreter start-up with Airflow, Kedro and MLflow
imports, or backoff sleeps); the unit tier keeps the same behaviour covered in-process where it can.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from airflow_kedro_mlflow.cli import main
from airflow_kedro_mlflow.kedro_project import PLAIN_LOGGING_CONFIG, open_session
from tests.conftest import REPO_ROOT
from tests.servers import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def chatty_project(example_project: Path) -> Path:
    """The trained example project, whose pipeline registry prints to stdout when imported, as project code may."""
    with open_session(example_project) as session:
        session.run(pipeline_names=["training"])
    project = example_project
    registry = project / "src" / "kedro_classifier" / "pipeline_registry.py"
    registry.write_text(registry.read_text() + '\nprint("registering the pipelines")\n')
    return project


def test_console_script_json_is_exactly_one_object_on_stdout(chatty_project, tracking_uri):
    """The installed entry point, as users call it: stdout parses as JSON although the caller did not switch MLflow's
    URL lines off and project code prints."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    # The checkout under test first, as pytest's own pythonpath does (under tox the wheel is the same code).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    script = Path(sys.executable).with_name("airflow-kedro-mlflow")
    completed = subprocess.run(
        [str(script), "modelify", "--project-path", str(chatty_project), "--pipeline", "training",
         "--tracking-uri", tracking_uri, "--registered-model-name", "cli_script", "--json"],
        capture_output=True, text=True, env=env, cwd=Path.cwd(), timeout=300, check=False,
    )  # fmt: skip

    assert completed.returncode == 0, completed.stderr
    assert len(completed.stdout.splitlines()) == 1, completed.stdout
    assert json.loads(completed.stdout)["model_uri"] == "models:/cli_script/1"
    assert "registering the pipelines" in completed.stderr
    assert "Traceback" not in completed.stderr


# --------------------------------------------------------------------------------------------------------------------
# A server that is down: exit 1, fast, one line naming the server
# --------------------------------------------------------------------------------------------------------------------


def test_server_down_fails_fast_with_exit_1_naming_the_uri(capsys):
    """With MLflow's default of 7 retries a closed port kept the CLI waiting ~256 s, then exited 2 (bad input).

    The package's 2 retries sleep about 4 s of backoff (MLflow's factor 2, plus up to 1 s of jitter), as users see it.
    """
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    started = time.monotonic()
    code = main(["promote", "--registered-model-name", "clf", "--metric", "accuracy", "--tracking-uri", uri,
                 "--version", "1"])  # fmt: skip
    out, err = capsys.readouterr()
    elapsed = time.monotonic() - started

    assert elapsed < 15
    assert (code, out) == (1, "")
    assert err.startswith(f"Error: MlflowServerUnavailableError: Cannot reach the MLflow tracking server at {uri}")
    assert len(err.strip().splitlines()) == 1


def test_importing_kedro_keeps_the_callers_log_handlers_and_turns_telemetry_off() -> None:
    script = textwrap.dedent(
        """
        import logging, os
        os.environ.pop("KEDRO_LOGGING_CONFIG", None)
        os.environ.pop("KEDRO_DISABLE_TELEMETRY", None)
        handler = logging.StreamHandler()
        logging.getLogger().addHandler(handler)
        from airflow_kedro_mlflow.kedro_project import prepare_kedro_environment
        prepare_kedro_environment()
        import kedro.framework.project
        kedro.framework.project.configure_project("anything")
        print(logging.getLogger().handlers == [handler], logging.getLogger("kedro").level,
              os.environ["KEDRO_LOGGING_CONFIG"], os.environ["KEDRO_DISABLE_TELEMETRY"])
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()

    assert out == ["True", "30", str(PLAIN_LOGGING_CONFIG), "true"]


def test_a_logging_config_chosen_by_the_caller_is_respected(tmp_path: Path) -> None:
    own = tmp_path / "logging.yml"
    own.write_text("version: 1\ndisable_existing_loggers: false\nloggers:\n  kedro:\n    level: DEBUG\n")
    script = (
        "import logging\nfrom airflow_kedro_mlflow.kedro_project import prepare_kedro_environment\n"
        "prepare_kedro_environment()\nimport kedro.framework.project\nprint(logging.getLogger('kedro').level)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "KEDRO_LOGGING_CONFIG": str(own)},
    ).stdout.split()

    assert out == ["10"]
