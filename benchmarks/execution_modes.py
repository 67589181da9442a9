"""What training in the project's own virtualenv costs over training in the task process, and what building it costs.

Both variants run ``KedroTrainingOperator.execute()`` on the example project's ``training`` pipeline, each in a fresh
process (as an Airflow task is), interleaved, on a private copy of the project:

- in-process: ``execution=None``, the default: Kedro and MLflow are imported and run inside the task process;
- virtualenv: ``execution=VirtualenvExecution(requirements="requirements.txt")`` with a warm cache: the task checks
  the project's interpreter, runs the ``airflow-kedro-mlflow train`` CLI there, streams its log and reads its result.

Each process times ``execute()`` only: both have Airflow loaded before it starts, as a worker has. The project's
requirements pin the worker's own scikit-learn and pandas, so the ratio is the cost of the mode, not of another
library version. The cold build (``uv venv`` + install of the requirements, Kedro, MLflow and the core) is timed
once into an empty venv cache, with uv's package cache as this machine has it (warm after the first build here).
MLflow is a sqlite store created before timing (``--tracking-uri`` points both variants at a real server instead).
Writes ``docs/benchmarks/execution_modes.md``.

    python benchmarks/execution_modes.py [--repeat 5] [--tracking-uri http://127.0.0.1:5000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_PROJECT = REPO_ROOT / "dags_examples" / "kedro_classifier"
REPORT = REPO_ROOT / "docs" / "benchmarks" / "execution_modes.md"
TARGET_RATIO = 1.15

TASK = """
import json, sys, time
from airflow.sdk import BaseOperator  # what the worker has loaded before execute()
from airflow_kedro_mlflow.execution import VirtualenvExecution
from airflow_kedro_mlflow.operators.kedro import KedroTrainingOperator

class TaskInstance:
    dag_id, run_id, task_id, try_number, map_index = "bench", "bench_run", "train", 1, -1
    def xcom_push(self, key, value):
        pass

project, mode, cache = sys.argv[1:4]
execution = VirtualenvExecution(requirements="requirements.txt", cache_dir=cache) if mode == "virtualenv" else None
operator = KedroTrainingOperator(task_id="train", project_path=project, experiment_name="bench", execution=execution)
started = time.perf_counter()
operator.execute({"ti": TaskInstance()})
print(json.dumps({"execute": time.perf_counter() - started}))
"""

BUILD = """
import json, sys, time
from pathlib import Path
from airflow_kedro_mlflow.execution.venv import ensure_venv
started = time.perf_counter()
python = ensure_venv(Path(sys.argv[1]), cache_root=Path(sys.argv[2]))
built = time.perf_counter() - started
started = time.perf_counter()
ensure_venv(Path(sys.argv[1]), cache_root=Path(sys.argv[2]))
print(json.dumps({"cold": built, "warm_lookup": time.perf_counter() - started, "python": str(python)}))
"""


def _env(home: str, tracking_uri: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),  # this checkout, also what the venv gets as its core
        "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps({"conn_type": "mlflow", "extra": {"tracking_uri": tracking_uri}}),
        "KEDRO_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _run(code: str, *args: str, env: dict[str, str], cwd: Path) -> dict[str, float]:
    completed = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=1800, check=False
    )
    if completed.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per variant (default 5)")
    parser.add_argument("--tracking-uri", help="MLflow server for both variants (default: a temporary sqlite store)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="akm-execution-modes-") as tmp:
        root = Path(tmp)
        project = root / "kedro_classifier"
        shutil.copytree(EXAMPLE_PROJECT, project, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        requirements = project / "requirements.txt"
        requirements.write_text(
            f"scikit-learn=={version('scikit-learn')}\npandas=={version('pandas')}\n"
            "kedro-datasets[pandas-csvdataset,pickle-pickledataset,json-jsondataset]\n"
        )
        cache = root / "venv-cache"
        tracking_uri = args.tracking_uri or f"sqlite:///{root / 'mlflow.db'}"
        env = _env(str(root / "airflow-home"), tracking_uri)
        build = _run(BUILD, str(requirements), str(cache), env=env, cwd=root)
        for mode in ("in_process", "virtualenv"):  # warm-up, not measured: file cache, store tables
            _run(TASK, str(project), mode, str(cache), env=env, cwd=root)
        samples: dict[str, list[float]] = {"in_process": [], "virtualenv": []}
        for _ in range(args.repeat):
            for mode, times in samples.items():
                times.append(_run(TASK, str(project), mode, str(cache), env=env, cwd=root)["execute"])

    in_process = statistics.median(samples["in_process"])
    virtualenv = statistics.median(samples["virtualenv"])
    ratio = virtualenv / in_process
    verdict = "meets" if ratio <= TARGET_RATIO else "misses"
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    backend = "a real MLflow server" if args.tracking_uri else "a sqlite MLflow store"
    spread = {mode: f"{min(times):.2f} to {max(times):.2f}" for mode, times in samples.items()}
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        f"""# Execution modes: in-process vs virtualenv

Median of {args.repeat} interleaved runs of `KedroTrainingOperator.execute()` on the example project's `training`
pipeline, each in a fresh process with Airflow already imported (as on a worker), logging to {backend}.

| Variant | seconds (median) | range |
|---|---:|---:|
| in-process (`execution=None`) | {in_process:.2f} | {spread["in_process"]} |
| virtualenv, warm cache (`VirtualenvExecution(requirements=...)`) | {virtualenv:.2f} | {spread["virtualenv"]} |

**Ratio virtualenv / in-process: {ratio:.3f}** (target ≤ {TARGET_RATIO}: {verdict} it). The virtualenv task does not
import Kedro or MLflow itself; the child does, plus one Python start-up, the environment check (`python -c`, about
0.1 s) and the cache lookup.

**Cold virtualenv build: {build["cold"]:.1f} s** (`uv venv` + the requirements, Kedro, kedro-datasets, MLflow and the
core, all compiled to bytecode, with uv's package cache warm as on a worker that built a venv before; a first
build on a new machine also downloads the wheels). Finding the built venv in the cache afterwards:
{build["warm_lookup"] * 1000:.0f} ms.

Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, uv
{subprocess.run(["uv", "--version"], capture_output=True, text=True, check=False).stdout.split()[1]}, load
average during the run {load}. apache-airflow {version("apache-airflow")}, kedro {version("kedro")}, mlflow
{version("mlflow")}, scikit-learn {version("scikit-learn")} in both environments.
Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC with `python benchmarks/execution_modes.py --repeat {args.repeat}`.
"""
    )
    print(REPORT.read_text())


if __name__ == "__main__":
    main()
