"""The demo's closing "browse both UIs" commands work as printed, and the links its tasks push point at that UI.

A newcomer copies the printed commands into a normal shell, where the tox env that holds ``mlflow`` and ``airflow``
is not on ``PATH``; the commands are therefore run here with a ``PATH`` of the system directories only. The demo's
``mlflow_default`` connection is read by the real :class:`MlflowHook`, which must turn its ``ui_url`` into run and
model-version links on the address the demo tells the user to serve MLflow on.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

import pytest

from tests.conftest import REPO_ROOT
from tests.servers import free_port, stop_process_group, wait_for_http

pytestmark = pytest.mark.integration

DEMO = REPO_ROOT / "dags_examples" / "demo.py"
#: A shell without the tox env: the system's directories only.
SYSTEM_PATH = os.pathsep.join(p for p in ("/usr/local/bin", "/usr/bin", "/bin") if Path(p).is_dir())


def _load_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("akm_demo", DEMO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _printed_commands(demo: ModuleType, demo_dir: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """The command lines the demo prints for MLflow and Airflow, exactly as a user would copy them."""
    demo.print_browse_commands(demo_dir)
    output = capsys.readouterr().out
    commands = dict(re.findall(r"^\s+(MLflow|Airflow):\s+(.+)$", output, flags=re.MULTILINE))
    assert set(commands) == {"MLflow", "Airflow"}, output
    return commands


def _split(command: str) -> tuple[dict[str, str], list[str]]:
    """Split a printed command into its leading ``NAME=value`` assignments and its argv, as a shell does."""
    words = shlex.split(command)
    assignments: dict[str, str] = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        name, value = words.pop(0).split("=", 1)
        assignments[name] = value
    return assignments, words


def _shell_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__", "MLFLOW_", "VIRTUAL_ENV"))}
    return {**env, "PATH": SYSTEM_PATH, **extra}


def _option(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


@pytest.mark.parametrize(("tool", "subcommand"), [("MLflow", "ui"), ("Airflow", "api-server")])
def test_printed_browse_command_runs_from_a_shell_without_the_tox_env_on_path(
    tool: str, subcommand: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    commands = _printed_commands(_load_demo(), tmp_path / "demo", capsys)
    assignments, argv = _split(commands[tool])

    assert Path(argv[0]).is_absolute() and Path(argv[0]).exists(), f"{argv[0]!r} is not found outside the tox env"
    assert _option(argv, "--host") == "127.0.0.1", commands[tool]
    head = argv[: argv.index(subcommand) + 1]
    result = subprocess.run(
        [*head, "--help"], env=_shell_env(**assignments), capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--port" in result.stdout, result.stdout


def test_printed_mlflow_command_serves_the_demo_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commands = _printed_commands(_load_demo(), tmp_path / "demo", capsys)
    _, argv = _split(commands["MLflow"])
    port = free_port()  # the printed 5000 may be taken on a test machine; everything else runs as printed
    argv[argv.index("--port") + 1] = str(port)
    (tmp_path / "demo").mkdir()
    log = tmp_path / "mlflow-ui.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            argv, env=_shell_env(), cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", timeout=240, process=process, log=log)
    finally:
        stop_process_group(process)
    assert (tmp_path / "demo" / "mlflow.db").is_file()  # the store the printed --backend-store-uri names


def test_demo_connection_links_runs_and_versions_to_the_printed_mlflow_ui(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_kedro_mlflow.hooks.mlflow import MlflowHook

    demo = _load_demo()
    demo_dir = tmp_path / "demo"
    env = demo.demo_environment(demo_dir, tmp_path / "kedro_classifier")
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", env["AIRFLOW_CONN_MLFLOW_DEFAULT"])
    tracking = MlflowHook().get_tracking_config()

    _, argv = _split(_printed_commands(demo, demo_dir, capsys)["MLflow"])
    served = f"http://{_option(argv, '--host')}:{_option(argv, '--port')}"
    assert tracking.tracking_uri == f"sqlite:///{demo_dir / 'mlflow.db'}"
    assert _option(argv, "--backend-store-uri") == tracking.tracking_uri
    assert tracking.ui_url == served
    assert tracking.run_url("1", "abc") == f"{served}/#/experiments/1/runs/abc"
    assert tracking.model_version_url("kedro_classifier", 1) == f"{served}/#/models/kedro_classifier/versions/1"
    assert urlsplit(json.loads(env["AIRFLOW_CONN_MLFLOW_DEFAULT"])["extra"]["ui_url"]).hostname == "127.0.0.1"
