"""Run the example retraining DAG end to end on a throw-away Airflow and MLflow, then show what it produced.

    python dags_examples/demo.py [--demo-dir DIR]        (the README's `tox -e demo`)

Everything lives in one demo directory (a new temp dir unless ``--demo-dir`` is given), kept afterwards so you can
browse it: an Airflow home on sqlite (``airflow/``), an MLflow store on sqlite with its artifacts (``mlflow.db``,
``mlruns/``), and a copy of the example Kedro project the DAG trains (``kedro_classifier/``), so the checkout stays
clean. The DAG ``kedro_classifier_retraining`` (train -> modelify -> promote) runs through ``airflow dags test``,
i.e. Airflow's real task runner in one process; no server is left running when the demo ends.

This file sits in the DAG folder but defines no DAG and imports only the standard library at module level.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

DAGS_FOLDER = Path(__file__).resolve().parent
EXAMPLE_PROJECT = DAGS_FOLDER / "kedro_classifier"
DAG_ID = "kedro_classifier_retraining"
REGISTERED_MODEL_NAME = "kedro_classifier"
ALIAS = "champion"
#: Where the closing message tells the user to serve the MLflow UI; the demo's connection links tasks to it.
MLFLOW_UI_HOST = "127.0.0.1"
MLFLOW_UI_PORT = 5000
MLFLOW_UI_URL = f"http://{MLFLOW_UI_HOST}:{MLFLOW_UI_PORT}"
AIRFLOW_UI_PORT = 8080
STEPS = 5
_TASK_EVENT = re.compile(r"\[DAG TEST\] (starting|end task) task_id=(\w+)")


class DemoError(RuntimeError):
    """A demo step failed; the message says which, and where its full log is."""


def _step(number: int, text: str) -> None:
    print(f"\n[{number}/{STEPS}] {text}", flush=True)


def console_script(name: str) -> list[str]:
    """How to start this environment's ``name`` command from any shell, not only from inside the tox env.

    ``mlflow`` and ``airflow`` are installed only in the demo's virtualenv, whose ``bin/`` is not on the user's
    ``PATH``: use the script next to this interpreter by its absolute path (not resolved: a venv's ``python`` is a
    symlink to the base interpreter, whose directory has no such script), else ``<this python> -m <name>``.
    """
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return [str(beside)]
    return [sys.executable, "-m", name]


def _airflow_command() -> list[str]:
    if importlib.util.find_spec("airflow") is None:
        raise DemoError(
            "`airflow` is not installed in this environment: pip install -e '.[test]' (or use tox -e demo)."
        )
    return console_script("airflow")


def copy_example_project(target: Path) -> Path:
    """Copy the example project without what earlier local runs left under ``data/`` (only ``.gitkeep`` files)."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        in_data = Path(folder).parent.name == "data" and Path(folder).parent.parent == EXAMPLE_PROJECT
        dropped = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
        return dropped | ({n for n in names if n != ".gitkeep"} if in_data else set())

    shutil.copytree(EXAMPLE_PROJECT, target, ignore=ignore)
    return target


def demo_environment(demo_dir: Path, project: Path) -> dict[str, str]:
    """Environment of the Airflow commands: the demo's config, the ``mlflow_default`` connection, telemetry off.

    Ambient ``AIRFLOW_*``/``MLFLOW_*`` settings of the caller are dropped so the demo never touches a real deployment.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__", "MLFLOW_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(demo_dir / "airflow"),
            "AIRFLOW_KEDRO_MLFLOW_EXAMPLE_PROJECT": str(project),
            # The connection in JSON form: an MLflow store on sqlite has no host, only a tracking URI. A sqlite
            # store has no web UI of its own, so `ui_url` names the one the closing message tells the user to
            # serve: the tasks' "MLflow run" / "MLflow model version" links point there.
            "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(
                {
                    "conn_type": "mlflow",
                    "extra": {"tracking_uri": f"sqlite:///{demo_dir / 'mlflow.db'}", "ui_url": MLFLOW_UI_URL},
                }
            ),
            "KEDRO_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
            "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
            "PYTHONUNBUFFERED": "1",  # task events must reach the progress lines as they happen
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        }
    )
    return env


def write_airflow_config(airflow_home: Path) -> None:
    """Write the demo's ``airflow.cfg``, so `AIRFLOW_HOME=… airflow api-server` later needs nothing else."""
    airflow_home.mkdir(parents=True, exist_ok=True)
    (airflow_home / "airflow.cfg").write_text(
        textwrap.dedent(
            f"""\
            [core]
            dags_folder = {DAGS_FOLDER}
            load_examples = False
            executor = LocalExecutor
            # Local demo only: everyone who reaches 127.0.0.1 is admin, no login.
            simple_auth_manager_all_admins = True

            [database]
            sql_alchemy_conn = sqlite:///{airflow_home / "airflow.db"}

            [api]
            host = 127.0.0.1
            port = {AIRFLOW_UI_PORT}

            [logging]
            colored_console_log = False
            """
        )
    )


def run_logged(command: list[str], env: dict[str, str], cwd: Path, log: Path, on_line: Any = None) -> None:
    """Run ``command`` (own process group), its output into ``log``; ``on_line`` sees each line as it comes.

    On Ctrl-C the whole process group is stopped before the interrupt goes on: the demo leaves nothing running.
    """
    with log.open("w") as out:
        process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            assert process.stdout is not None
            for line in process.stdout:
                out.write(line)
                if on_line is not None:
                    on_line(line)
            code = process.wait()
        except BaseException:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
            raise
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise DemoError(f"`{' '.join(command[1:])}` failed with exit code {code}. Last lines of {log}:\n{tail}")


class _TaskProgress:
    """Print one line per task of the DAG run, with its duration, from the ``[DAG TEST]`` events."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}

    def __call__(self, line: str) -> None:
        match = _TASK_EVENT.search(line)
        if match is None:
            return
        event, task_id = match.groups()
        if event == "starting":
            self.started[task_id] = time.monotonic()
            print(f"      {task_id:<10} running…", flush=True)
        else:
            took = time.monotonic() - self.started.get(task_id, time.monotonic())
            print(f"      {task_id:<10} finished in {took:.1f} s", flush=True)


def _quiet_libraries() -> None:
    """Keep the summary readable: MLflow's and Kedro's INFO logs and warnings are in the task logs already."""
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.ERROR)
    for name in ("mlflow", "kedro", "alembic", "py4j"):
        logging.getLogger(name).setLevel(logging.ERROR)


def summarize(demo_dir: Path, dag_started: float) -> dict[str, Any]:
    """Read what the DAG run produced from the MLflow store; print it; return it (the tests check these values)."""
    _quiet_libraries()
    import mlflow
    from mlflow import MlflowClient

    store = f"sqlite:///{demo_dir / 'mlflow.db'}"
    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    versions = [
        v
        for v in client.search_model_versions(f"name='{REGISTERED_MODEL_NAME}'")
        if v.tags.get("airflow.dag_id") == DAG_ID and v.creation_timestamp >= dag_started * 1000 - 60_000
    ]
    if not versions:
        raise DemoError(f"the DAG run registered no version of {REGISTERED_MODEL_NAME!r} in {store}.")
    version = max(versions, key=lambda v: int(v.version))
    run = client.get_run(version.run_id)
    aliases = sorted(client.get_registered_model(REGISTERED_MODEL_NAME).aliases)
    model_aliases = [
        a for a in aliases if client.get_model_version_by_alias(REGISTERED_MODEL_NAME, a).version == version.version
    ]
    experiment = client.get_experiment(run.info.experiment_id)
    print(f"      MLflow run          {run.info.run_id} (experiment {experiment.name!r}, status {run.info.status})")
    metrics = ", ".join(f"{k}={v:.4f}" for k, v in sorted(run.data.metrics.items()))
    print(f"      metrics             {metrics}")
    print(f"      registered model    {REGISTERED_MODEL_NAME!r} version {version.version}")
    print(f"      aliases             {', '.join(model_aliases) or '(none)'}")
    return {
        "run_id": run.info.run_id,
        "experiment": experiment.name,
        "metrics": dict(run.data.metrics),
        "registered_model_name": REGISTERED_MODEL_NAME,
        "version": version.version,
        "aliases": model_aliases,
    }


def predict_by_alias(rows: int = 5) -> list[dict[str, Any]]:
    """Load ``models:/kedro_classifier@champion`` and predict a few rows of the example data; print a table."""
    import mlflow
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame.sample(rows, random_state=7)
    frame.columns = [str(column).replace(" ", "_") for column in frame.columns]
    truth = frame.pop("target")
    model_uri = f"models:/{REGISTERED_MODEL_NAME}@{ALIAS}"
    predictions = mlflow.pyfunc.load_model(model_uri).predict(frame)
    print(f"      model               {model_uri}")
    print("      row   probability   prediction   true label")
    result = []
    for index, (_, row) in zip(frame.index, predictions.iterrows(), strict=True):
        print(
            f"      {index:>3}   {row['probability']:>11.4f}   {int(row['prediction']):>10}   {int(truth[index]):>10}"
        )
        result.append(
            {"row": int(index), "probability": float(row["probability"]), "prediction": int(row["prediction"])}
        )
    return result


def browse_commands(demo_dir: Path) -> dict[str, str]:
    """The shell commands serving the demo's MLflow and Airflow UIs on 127.0.0.1, runnable as printed from any shell."""
    mlflow = [
        *console_script("mlflow"), "ui", "--backend-store-uri", f"sqlite:///{demo_dir / 'mlflow.db'}",
        "--host", MLFLOW_UI_HOST, "--port", str(MLFLOW_UI_PORT), "--workers", "1",  # one user: starts faster
    ]  # fmt: skip
    airflow = [*console_script("airflow"), "api-server", "--host", "127.0.0.1", "--port", str(AIRFLOW_UI_PORT)]
    return {
        "MLflow": shlex.join(mlflow),
        "Airflow": f"AIRFLOW_HOME={shlex.quote(str(demo_dir / 'airflow'))} {shlex.join(airflow)}",
    }


def print_browse_commands(demo_dir: Path) -> None:
    """Tell how to look at the demo's stores in the MLflow and Airflow UIs."""
    commands = browse_commands(demo_dir)
    print("\nBrowse what the demo produced (each command serves a UI on 127.0.0.1; stop it with Ctrl-C):")
    print(f"  MLflow:  {commands['MLflow']}")
    print(f"           then open {MLFLOW_UI_URL} (experiment 'kedro_classifier', model 'kedro_classifier')")
    print(f"  Airflow: {commands['Airflow']}")
    print(f"           then open http://127.0.0.1:{AIRFLOW_UI_PORT}/dags/{DAG_ID} (no login: the demo's config makes")
    print("           you admin); the tasks' 'MLflow run' and 'MLflow model version' links open the MLflow UI above")
    print(f"  Files:   {demo_dir}  (delete it when done)")


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-dir", type=Path, help="directory for the demo's stores (default: a new temp dir)")
    args = parser.parse_args(argv)
    demo_dir = (args.demo_dir or Path(tempfile.mkdtemp(prefix="airflow-kedro-mlflow-demo-"))).resolve()
    demo_dir.mkdir(parents=True, exist_ok=True)
    if any(demo_dir.iterdir()):
        print(f"error: {demo_dir} is not empty; give an empty or new --demo-dir.", file=sys.stderr)
        return 2
    began = time.monotonic()
    print(f"airflow-kedro-mlflow demo in {demo_dir}")
    try:
        _step(1, "Copying the example Kedro project and writing the demo's Airflow config")
        project = copy_example_project(demo_dir / "kedro_classifier")
        write_airflow_config(demo_dir / "airflow")
        env = demo_environment(demo_dir, project)
        (demo_dir / "logs").mkdir()
        airflow = _airflow_command()

        _step(2, "Creating the Airflow metadata database (airflow db migrate, sqlite)")
        run_logged([*airflow, "db", "migrate"], env, demo_dir, demo_dir / "logs" / "airflow-db-migrate.log")

        _step(3, f"Running DAG {DAG_ID!r}: train -> modelify -> promote (airflow dags test)")
        dag_started = time.time()
        run_logged(
            [*airflow, "dags", "test", DAG_ID], env, demo_dir, demo_dir / "logs" / "dag-run.log", _TaskProgress()
        )

        _step(4, "What MLflow recorded")
        summarize(demo_dir, dag_started)

        _step(5, f"Predicting with the model loaded by alias {ALIAS!r}")
        predict_by_alias()
    except DemoError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    print(f"\nDone in {time.monotonic() - began:.0f} s. Logs: {demo_dir / 'logs'}")
    print_browse_commands(demo_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
