"""Execution modes without building a virtualenv: the CLI contract, what the project's process gets in its
environment, the version check, the core shipped without Airflow, the venv cache key, and how a child's failure is
reported. Building venvs and running Kedro in them is the integration tier (tests/integration/test_virtualenv_mode.py).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from airflow_kedro_mlflow.cli import build_parser
from airflow_kedro_mlflow.exceptions import KedroProjectError, KedroRunError, MlflowServerUnavailableError
from airflow_kedro_mlflow.execution import (
    InProcessExecution,
    ProjectEnvironmentError,
    ProjectProcessError,
    VirtualenvExecution,
    core_package,
    resolve_execution,
)
from airflow_kedro_mlflow.execution.commands import (
    modelify_command,
    parse_run_started,
    run_started_line,
    train_command,
)
from airflow_kedro_mlflow.execution.environment import ProjectEnvironment, filtered_environ, tracking_environment
from airflow_kedro_mlflow.execution.subprocess_runner import _failure
from airflow_kedro_mlflow.execution.venv import cache_key, ensure_venv, pinned_dependencies
from airflow_kedro_mlflow.execution.versions import SUPPORTED, check_supported_versions, requirement
from airflow_kedro_mlflow.kedro_project import KedroRunSpec
from airflow_kedro_mlflow.tracking import TrackingConfig

#: Appended to a project copy's settings.py by :func:`install_probe_hook`.
PROBE_HOOK = '''

# --- test probe (tests/unit/test_execution.py) ---
import json as _json
import os as _os
import signal as _signal
import subprocess as _subprocess
import sys as _sys
import time as _time

from kedro.framework.hooks import hook_impl as _hook_impl


class _ExecutionProbe:
    """AKM_PROBE_FILE: when a Kedro context is created (training and modelify), write what the process running Kedro
    sees: its interpreter, scikit-learn, its environment and the environment of a process it starts.
    AKM_PROBE_ON_NODE=sigkill|sleep: at fit_classifier, die or hang."""

    @_hook_impl
    def after_context_created(self):
        target = _os.environ.get("AKM_PROBE_FILE")
        if not target:
            return
        import sklearn

        grandchild = _subprocess.run(
            [_sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"],
            capture_output=True, text=True, check=True,
        )
        report = {
            "pid": _os.getpid(),
            "executable": _sys.executable,
            "sklearn": sklearn.__version__,
            "env": dict(_os.environ),
            "grandchild_env": _json.loads(grandchild.stdout),
        }
        with open(target + ".tmp", "w") as handle:
            _json.dump(report, handle)
        _os.replace(target + ".tmp", target)

    @_hook_impl
    def before_node_run(self, node):
        action = _os.environ.get("AKM_PROBE_ON_NODE")
        if node.name != "fit_classifier" or not action:
            return
        if action == "sigkill":
            _os.kill(_os.getpid(), _signal.SIGKILL)
        if action == "sleep":
            _time.sleep(300)


HOOKS = (_ExecutionProbe(),)
'''

CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


def install_probe_hook(project: Path, package: str = "kedro_classifier") -> None:
    """Give a copy of the example project the probe hook (see :data:`PROBE_HOOK`); it does nothing unless its
    variables are set. ``package`` renames the project's package: Kedro keeps the settings of a package it has
    configured once in a process, so a test that runs Kedro in-process after others needs a package of its own."""
    if package != "kedro_classifier":
        (project / "src" / "kedro_classifier").rename(project / "src" / package)
        for path in [project / "pyproject.toml", *(project / "src").rglob("*.py")]:
            path.write_text(path.read_text(encoding="utf-8").replace("kedro_classifier", package), encoding="utf-8")
    settings = project / "src" / package / "settings.py"
    settings.write_text(settings.read_text(encoding="utf-8") + PROBE_HOOK, encoding="utf-8")


# --- the CLI contract -------------------------------------------------------------------------------------------


def test_train_command_carries_every_operator_argument_through_the_cli_parser():
    tracking = TrackingConfig("http://user:secret@mlflow.internal:5000", ui_url="https://mlflow.example.com")
    spec = KedroRunSpec("/proj", "training", env="prod", conf_source="/conf", runtime_params={"C": 0.5, "n": {"k": 1}})
    argv = train_command(
        spec,
        tracking=tracking,
        output="/tmp/out.json",
        experiment_name="exp",
        run_name="nightly",
        mlflow_tags={"airflow.dag_id": "d", "team": "a=b"},
        runner="ThreadRunner",
        tags="prep,fit",
        node_names=["fit_classifier"],
        from_nodes=["split_data"],
        to_nodes=["evaluate"],
        load_versions={"raw_data": "2026-01-01T00.00.00.000Z"},
        params_options={"shape": "kedro_mlflow", "long_params_strategy": "tag"},
        run_id="abc123",
        parent_run_tags={"airflow.dag_id": "d", "airflow.task_id": "train"},
    )
    assert "secret" not in " ".join(argv)
    args = build_parser().parse_args(argv)
    assert (args.command, args.project_path, args.pipeline_name, args.env, args.conf_source) == (
        "train", "/proj", "training", "prod", "/conf",
    )  # fmt: skip
    assert json.loads(args.runtime_params_json) == {"C": 0.5, "n": {"k": 1}}  # typed: 0.5 stays a float
    assert (args.tracking_uri, args.ui_url, args.output) == (
        "http://mlflow.internal:5000", "https://mlflow.example.com", "/tmp/out.json",
    )  # fmt: skip
    assert (args.experiment_name, args.run_name, args.runner) == ("exp", "nightly", "ThreadRunner")
    assert sorted(args.mlflow_tags) == ["airflow.dag_id=d", "team=a=b"]
    assert (args.tags, args.node_names, args.from_nodes, args.to_nodes) == (
        ["prep,fit"], ["fit_classifier"], ["split_data"], ["evaluate"],
    )  # fmt: skip
    assert json.loads(args.load_versions_json) == {"raw_data": "2026-01-01T00.00.00.000Z"}
    assert (args.params_shape, args.long_params_strategy) == ("kedro_mlflow", "tag")
    assert (args.run_id, sorted(args.parent_run_tags)) == ("abc123", ["airflow.dag_id=d", "airflow.task_id=train"])


def test_modelify_command_carries_the_operator_arguments_through_the_cli_parser():
    argv = modelify_command(
        tracking=TrackingConfig("http://mlflow.internal:5000", username="u", password="secret"),
        output="/tmp/out.json",
        training_result="/tmp/training.json",
        registered_model_name="churn",
        aliases=["challenger"],
        copy_mode={"scaler": "deepcopy"},
        log_model_kwargs={"signature": "auto", "metadata": {"team": "ml"}},
        runtime_params={"threshold": 0.7},
        idempotency_key={"airflow.task_id": "modelify"},
    )
    assert "secret" not in " ".join(argv)
    args = build_parser().parse_args(argv)
    assert (args.training_result, args.registered_model_name, args.aliases) == (
        "/tmp/training.json", "churn", ["challenger"],
    )  # fmt: skip
    assert json.loads(args.copy_mode) == {"scaler": "deepcopy"}
    assert json.loads(args.log_model_kwargs_json) == {"signature": "auto", "metadata": {"team": "ml"}}
    assert json.loads(args.runtime_params_json) == {"threshold": 0.7}
    assert args.idempotency_key == ["airflow.task_id=modelify"]


def test_values_that_cannot_cross_a_process_are_named():
    spec = KedroRunSpec("/proj", "training", runtime_params={"when": object()})
    with pytest.raises(KedroProjectError, match=re.escape("runtime_params cannot be sent")):
        train_command(spec, tracking=TrackingConfig("sqlite:////tmp/x.db"), output="/tmp/o.json")
    with pytest.raises(KedroProjectError, match="runner must be a runner name"):
        train_command(KedroRunSpec("/p"), tracking=TrackingConfig("sqlite:////x.db"), output="/o", runner=object())


def test_run_started_line_round_trips_and_other_lines_are_ignored():
    line = run_started_line("abc123", "http://ui/#/experiments/1/runs/abc123")
    assert parse_run_started(line) == ("abc123", "http://ui/#/experiments/1/runs/abc123")
    assert parse_run_started("INFO some.logger: MLflow run started") is None
    assert parse_run_started(line.split("{")[0] + "{not json") is None


# --- what the project's process gets -----------------------------------------------------------------------------


def test_project_processes_get_no_airflow_secrets_and_no_worker_python_paths():
    worker = {
        "AIRFLOW_CONN_MLFLOW_DEFAULT": "mlflow://admin:pw@host",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://airflow:pw@db/airflow",
        "AIRFLOW_VAR_TOKEN": "x",
        "AIRFLOW_CTX_DAG_ID": "retraining",
        "MLFLOW_TRACKING_PASSWORD": "old",
        "MLFLOW_TRACKING_URI": "http://elsewhere",
        "MLFLOW_RUN_ID": "stale",
        "PYTHONPATH": "/opt/airflow/site-packages",
        "VIRTUAL_ENV": "/opt/airflow",
        "AWS_PROFILE": "data",
        "PATH": "/usr/bin",
    }
    assert filtered_environ(worker) == {"AIRFLOW_CTX_DAG_ID": "retraining", "AWS_PROFILE": "data", "PATH": "/usr/bin"}
    environment = ProjectEnvironment("/venvs/p/bin/python", "the test env", extra_env={"PYTHONPATH": "/core"})
    tracking = TrackingConfig("http://mlflow:5000", username="u", password="s3cret", timeout=2.5, max_retries=1)
    environ = environment.environ(tracking, base=worker)
    assert environ["PATH"] == "/venvs/p/bin:/usr/bin"  # the project's tools first, as when activated
    assert environ["PYTHONPATH"] == "/core"
    assert (environ["MLFLOW_TRACKING_USERNAME"], environ["MLFLOW_TRACKING_PASSWORD"]) == ("u", "s3cret")
    assert (environ["MLFLOW_HTTP_REQUEST_TIMEOUT"], environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) == ("3", "1")
    assert "MLFLOW_TRACKING_URI" not in environ  # a flag, not a variable


def test_tracking_environment_round_trips_through_from_env():
    for tracking in (
        TrackingConfig("http://mlflow:5000", username="u", password="p", insecure_tls=True),
        TrackingConfig("http://mlflow:5000", password="token-only"),
        TrackingConfig("http://mlflow:5000"),
    ):
        environ = {"MLFLOW_TRACKING_URI": tracking.tracking_uri, **tracking_environment(tracking)}
        assert TrackingConfig.from_env(environ, default_max_retries=None) == tracking


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing" / "bin" / "python", "does not exist on this worker"),
        (lambda tmp: tmp, "is not an executable file"),
        (lambda tmp: (tmp / "python").write_text("") or tmp / "python", "is not an executable file"),
    ],
    ids=["missing", "directory", "not-executable"],
)
def test_an_unusable_interpreter_is_a_clear_error_naming_it(tmp_path, make, message):
    python = make(tmp_path)
    with pytest.raises(ProjectEnvironmentError, match=re.escape(message)) as error:
        ProjectEnvironment(str(python), f"the Python environment of {python}").check()
    assert str(python) in str(error.value)
    assert "VirtualenvExecution(python=...)" in str(error.value)


def test_a_program_that_is_not_python_is_a_clear_error(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'I am not python' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(ProjectEnvironmentError, match=r"not a working Python interpreter .*exited 3.*not python"):
        ProjectEnvironment(str(fake), f"the Python environment of {fake}").check()


def test_the_worker_interpreter_with_the_core_overlay_passes_the_check(tmp_path):
    environment = ProjectEnvironment(
        sys.executable, "this worker", extra_env={"PYTHONPATH": str(core_package.overlay(tmp_path))}
    )
    report = environment.check()
    assert report["kedro"] == metadata.version("kedro")
    assert report["airflow_kedro_mlflow"] == core_package.airflow_kedro_mlflow.__version__


# --- versions --------------------------------------------------------------------------------------------------


def test_supported_ranges_are_the_install_requires_ones():
    def specifiers(line: str) -> tuple[str, set[str]]:
        name = re.split(r"[<>=!\[ ;]", line, maxsplit=1)[0]
        return name, set(line[len(name) :].replace(" ", "").split(","))

    lines = [line for line in metadata.requires("airflow-kedro-mlflow") or [] if "extra ==" not in line]
    required = dict(specifiers(line) for line in lines)
    for name in SUPPORTED:
        assert required[name] == specifiers(requirement(name))[1], name


@pytest.mark.parametrize(
    ("found", "problem"),
    [
        ({"kedro": "0.19.14", "mlflow": "3.17.2"}, "kedro 0.19.14 is installed"),
        ({"kedro": "1.7.0", "mlflow": "2.22.1"}, "mlflow 2.22.1 is installed"),
        ({"kedro": "1.7.0", "mlflow": "3.18.0rc1"}, "mlflow 3.18.0rc1 is installed"),
        ({"kedro": "2.0.0", "mlflow": "3.17.2"}, "kedro 2.0.0 is installed"),
        ({"kedro": None, "mlflow": "3.17.2"}, "kedro is not installed"),
    ],
)
def test_unsupported_or_missing_kedro_and_mlflow_are_named_with_the_fix(found, problem):
    with pytest.raises(ProjectEnvironmentError) as error:
        check_supported_versions(found, where="the Python environment of /opt/venvs/p/bin/python")
    message = str(error.value)
    assert message.startswith("the Python environment of /opt/venvs/p/bin/python cannot run airflow-kedro-mlflow")
    assert problem in message
    assert "'kedro>=1.0,<2' 'mlflow>=3.1,<3.18'" in message


def test_supported_versions_pass():
    check_supported_versions({"kedro": "1.0.0", "mlflow": "3.1.0"})
    check_supported_versions({"kedro": "1.7.0", "mlflow": "3.17.2"})
    check_supported_versions()  # this environment


# --- the core, shipped without Airflow ---------------------------------------------------------------------------


def test_core_entry_points_are_the_distribution_ones_minus_airflow():
    installed = {
        (entry.group, entry.name, entry.value) for entry in metadata.distribution("airflow-kedro-mlflow").entry_points
    }
    shipped = {
        (group, name, value) for group, entries in core_package.ENTRY_POINTS.items() for name, value in entries.items()
    }
    assert installed - shipped == {
        ("apache_airflow_provider", "provider_info", "airflow_kedro_mlflow.get_provider_info:get_provider_info")
    }
    assert shipped <= installed


def test_core_wheel_holds_the_running_package_and_a_valid_record(tmp_path):
    wheel = core_package.build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        record = archive.read(f"airflow_kedro_mlflow-{core_package.airflow_kedro_mlflow.__version__}.dist-info/RECORD")
    assert {"airflow_kedro_mlflow/cli.py", "airflow_kedro_mlflow/kedro_logging.yml"} <= names
    assert not any("__pycache__" in name for name in names)
    recorded = {line.split(",")[0] for line in record.decode().splitlines()}
    assert recorded == names


def test_core_overlay_imports_without_airflow_in_a_bare_interpreter(tmp_path):
    overlay = core_package.overlay(tmp_path)
    assert core_package.overlay(tmp_path) == overlay  # made once
    probe = (
        "import sys, airflow_kedro_mlflow.execution.versions as v; print(v.__file__); print('airflow' in sys.modules)"
    )
    completed = subprocess.run(
        [sys.executable, "-S", "-c", probe],  # -S: no site-packages, so no Airflow (nor Kedro) to import
        env={"PYTHONPATH": str(overlay)},
        cwd=tmp_path,  # not the checkout, which `python -c` would put first on sys.path
        capture_output=True,
        text=True,
        check=True,
    )
    assert completed.stdout.split() == [str(overlay / "airflow_kedro_mlflow" / "execution" / "versions.py"), "False"]


# --- the venv cache --------------------------------------------------------------------------------------------


def test_kedro_mlflow_and_kedro_datasets_are_pinned_unless_the_requirements_name_them(tmp_path):
    (tmp_path / "base.txt").write_text("Kedro_Datasets[pandas]>=9\n")
    (tmp_path / "constraints.txt").write_text("mlflow<4\n")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# comment\nscikit-learn==1.7.2  # pinned\n-r base.txt\n-c constraints.txt\n")
    assert pinned_dependencies(requirements) == [
        f"kedro=={metadata.version('kedro')}",
        f"mlflow=={metadata.version('mlflow')}",  # a constraint installs nothing: still pinned
    ]


def test_cache_key_follows_the_requirements_and_the_files_they_include(tmp_path):
    (tmp_path / "base.txt").write_text("pandas>=2\n")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("-r base.txt\nscikit-learn==1.7.2\n")

    def key(uv_args: tuple[str, ...] = ()) -> str:
        return cache_key(requirements, base=sys.executable, pins=pinned_dependencies(requirements), uv_args=uv_args)

    first = key()
    assert key() == first
    assert key(("--offline",)) != first
    (tmp_path / "base.txt").write_text("pandas>=2.2\n")
    assert key() != first


def test_missing_requirements_file_or_uv_is_a_clear_error(tmp_path):
    with pytest.raises(ProjectEnvironmentError, match=re.escape(f"requirements file {tmp_path / 'nope.txt'} does not")):
        ensure_venv(tmp_path / "nope.txt", cache_root=tmp_path)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pandas\n")
    with pytest.raises(ProjectEnvironmentError, match="`no-such-uv` is not on this worker's PATH"):
        ensure_venv(requirements, cache_root=tmp_path, uv="no-such-uv")
    assert not (tmp_path / "venvs").exists() or not any((tmp_path / "venvs").iterdir())


# --- modes -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of python="),
        ({"python": "/p/bin/python", "requirements": "r.txt"}, "exactly one of python="),
        ({"python": "/p/bin/python", "python_version": "3.11"}, "drop python_version"),
        ({"requirements": "r.txt", "uv_args": "--offline"}, "uv_args must be a list of strings"),
        ({"python": 3}, "must be a path string"),
    ],
)
def test_virtualenv_execution_checks_its_arguments_when_the_dag_is_parsed(kwargs, message):
    with pytest.raises(ProjectEnvironmentError, match=re.escape(message)):
        VirtualenvExecution(**kwargs)


def test_resolve_execution_defaults_to_in_process_and_refuses_other_things():
    assert resolve_execution(None) == InProcessExecution()
    mode = VirtualenvExecution(requirements="requirements.txt", uv_args=["--offline"])
    assert resolve_execution(mode) is mode
    assert mode.uv_args == ("--offline",)
    with pytest.raises(ProjectEnvironmentError, match="execution must be an execution mode, got 'virtualenv'"):
        resolve_execution("virtualenv")


def test_operators_take_the_execution_mode_without_any_io():
    from airflow_kedro_mlflow.operators.kedro import KedroModelifyOperator, KedroTrainingOperator

    mode = VirtualenvExecution(python="/does/not/exist/yet/bin/python")  # checked at execute, on the worker
    assert KedroTrainingOperator(task_id="t", project_path="/p", execution=mode).execution is mode
    assert KedroModelifyOperator(task_id="m", training_task_id="t", execution=mode).execution is mode
    assert isinstance(KedroTrainingOperator(task_id="t2", project_path="/p").execution, InProcessExecution)
    with pytest.raises(ProjectEnvironmentError):
        KedroTrainingOperator(task_id="t3", project_path="/p", execution="in_process")


# --- a failed child, reported -----------------------------------------------------------------------------------


ENV = ProjectEnvironment("/venvs/p/bin/python", "the Python environment of /venvs/p/bin/python")


def test_the_error_class_the_child_reported_is_raised_naming_the_environment():
    error = _failure(ENV, 1, ["INFO x: y", "Error: KedroRunError: Kedro node 'fit' failed: boom."], "r1")
    assert isinstance(error, KedroRunError)
    assert str(error) == (
        "Kedro node 'fit' failed: boom. [project environment: the Python environment of /venvs/p/bin/python]"
    )
    error = _failure(ENV, 1, ["Error: MlflowServerUnavailableError: Cannot reach http://x."], None)
    assert isinstance(error, MlflowServerUnavailableError)
    error = _failure(ENV, 2, ["Error: ProjectEnvironmentError: kedro is not installed"], None)
    assert isinstance(error, ProjectEnvironmentError)


def test_foreign_errors_and_signals_become_project_process_errors():
    error = _failure(ENV, 1, ["Error: MLflow: RESOURCE_EXHAUSTED (MLflow tracking server: http://x)"], None)
    assert isinstance(error, ProjectProcessError)
    assert str(error).startswith("MLflow: RESOURCE_EXHAUSTED")
    error = _failure(ENV, -signal.SIGKILL, ["INFO Node fit_classifier started"], "r1")
    assert isinstance(error, ProjectProcessError)
    assert "killed by SIGKILL" in str(error)
    assert "MLflow run r1 is marked FAILED" in str(error)
    assert "Node fit_classifier started" in str(error)
    usage = _failure(ENV, 2, ["airflow-kedro-mlflow train: error: unrecognized arguments: --new-flag"], None)
    assert isinstance(usage, ProjectEnvironmentError)
    assert "unrecognized arguments: --new-flag" in str(usage)


def test_credential_variables_are_not_in_this_test_process():
    # The autouse fixture of tests/conftest.py clears them; the tests above rely on it to mean something.
    assert not set(CREDENTIALS) & set(os.environ)
