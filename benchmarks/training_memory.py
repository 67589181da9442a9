"""Peak memory of training through airflow-kedro-mlflow vs a plain ``kedro run``, on a training input of >= 1 GiB.

The training run keeps a sample of the training input (``input_name``) to infer the model signature. Keeping the
input itself would hold it in memory for the whole pipeline, so the peak would be the input *plus* whatever the later
nodes allocate. This script measures that, on a Kedro project it writes at run time (nothing big is committed):

- ``make_features`` builds ``features``, a wide float DataFrame of ``--gib`` GiB (the model's input);
- ``fit_means`` fits the "model" (the column means) from it: the last node that reads ``features``, so Kedro frees
  it there;
- ``make_holdout`` then builds a holdout table of the same size, and ``evaluate`` scores the model on it.

A ``kedro run`` needs about one input's worth of memory at a time. Variants, each a fresh process, interleaved:

- ``kedro run``: ``python -m kedro run --pipelines training`` in the project folder (no MLflow);
- ``run_training``: a process that calls :func:`airflow_kedro_mlflow.training.run_training` on the same project,
  what ``KedroTrainingOperator.execute`` runs in the task process, against a real ``mlflow server`` on 127.0.0.1
  (as deployed), and against a sqlite store (MLflow then also loads its database layer);
- operator: ``KedroTrainingOperator.execute()`` with a dict context, Airflow imported first (mlflow server);
- ``--compare-with DIR``: ``run_training`` of another checkout (e.g. an older commit, ``git archive`` into DIR).

The parent reads each child's peak resident set size from ``wait4``. The ratio is ``run_training`` (mlflow server) /
``kedro run``: the Airflow task process exists whichever way a DAG runs Kedro, so Airflow's own memory is not
training's. Writes ``docs/benchmarks/training_memory.md``.

    python benchmarks/training_memory.py [--gib 1] [--repeat 3] [--compare-with /tmp/old --compare-label de6e095]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import textwrap
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

from _processes import Sample, child_env, local_mlflow_server, measure

REPO_ROOT = Path(__file__).resolve().parents[1]
REPORT = REPO_ROOT / "docs" / "benchmarks" / "training_memory.md"
TARGET_RATIO = 1.05
COLUMNS = 1024
PACKAGE = "memory_bench"
KEDRO_RUN = "kedro run"
RUN_TRAINING = "run_training, mlflow server"

NODES = '''
"""Nodes of the memory benchmark: a wide float table, a tiny model, a holdout table of the same size."""

import numpy as np
import pandas as pd


def make_features(rows: int, columns: int, seed: int) -> pd.DataFrame:
    values = np.random.default_rng(seed).random((rows, columns))
    return pd.DataFrame(values, columns=[f"f{i}" for i in range(columns)], copy=False)


def fit_means(features: pd.DataFrame) -> pd.Series:
    return features.mean()


def make_holdout(model: pd.Series, rows: int, seed: int) -> pd.DataFrame:
    values = np.random.default_rng(seed + 1).random((rows, len(model)))
    return pd.DataFrame(values, columns=model.index, copy=False)


def evaluate(holdout: pd.DataFrame, model: pd.Series) -> dict:
    return {"max_mean_gap": float((holdout.mean() - model).abs().max())}


def predict(features: pd.DataFrame, model: pd.Series) -> pd.DataFrame:
    return features.sub(model, axis=1).sum(axis=1).to_frame("score")
'''

REGISTRY = '''
"""``training``: a PipelineML whose input is ``features``; ``inference`` scores features with the model."""

from kedro.pipeline import Pipeline, node

from airflow_kedro_mlflow.pipeline import pipeline_ml_factory
from memory_bench.nodes import evaluate, fit_means, make_features, make_holdout, predict


def register_pipelines():
    training = Pipeline(
        [
            node(make_features, ["params:rows", "params:columns", "params:seed"], "features", name="make_features"),
            node(fit_means, "features", "model", name="fit_means"),
            node(make_holdout, ["model", "params:rows", "params:seed"], "holdout", name="make_holdout"),
            node(evaluate, ["holdout", "model"], "metrics", name="evaluate"),
        ]
    )
    inference = Pipeline([node(predict, ["features", "model"], "scores", name="predict")])
    pipeline = pipeline_ml_factory(training=training, inference=inference, input_name="features")
    return {"training": pipeline, "inference": inference, "__default__": pipeline}
'''

CATALOG = """
features:  # in memory only; `assign` so Kedro itself holds one copy, not two
  type: MemoryDataset
  copy_mode: assign
holdout:
  type: MemoryDataset
  copy_mode: assign
model:
  type: pickle.PickleDataset
  filepath: data/model.pkl
  versioned: true
metrics:
  type: json.JSONDataset
  filepath: data/metrics.json
"""

PYPROJECT = f"""
[tool.kedro]
package_name = "{PACKAGE}"
project_name = "{PACKAGE}"
kedro_init_version = "{version("kedro")}"
source_dir = "src"
"""

RUN_TRAINING_CHILD = """
import sys
from airflow_kedro_mlflow.tracking import TrackingConfig
from airflow_kedro_mlflow.training import run_training

run_training(sys.argv[1], "training", tracking=TrackingConfig(sys.argv[2]), experiment_name="bench")
"""

OPERATOR_CHILD = """
import sys
from airflow.sdk import BaseOperator  # what the worker has loaded before execute()
from airflow_kedro_mlflow.operators.kedro import KedroTrainingOperator

class TaskInstance:
    dag_id, run_id, task_id, try_number, map_index = "bench", "bench_run", "train", 1, -1
    def xcom_push(self, key, value):
        pass

operator = KedroTrainingOperator(task_id="train", project_path=sys.argv[1], experiment_name="bench")
operator.execute({"ti": TaskInstance()})
"""


def write_project(root: Path, rows: int) -> Path:
    """Write the benchmark's Kedro project (code and configuration only: its data is generated when it runs)."""
    project = root / PACKAGE
    package = project / "src" / PACKAGE
    package.mkdir(parents=True)
    (project / "conf" / "base").mkdir(parents=True)
    (project / "conf" / "local").mkdir()
    (project / "data").mkdir()
    (project / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (package / "__init__.py").write_text('__version__ = "0.1"\n')
    (package / "settings.py").write_text("")
    (package / "nodes.py").write_text(textwrap.dedent(NODES))
    (package / "pipeline_registry.py").write_text(textwrap.dedent(REGISTRY))
    (project / "conf" / "base" / "catalog.yml").write_text(textwrap.dedent(CATALOG))
    parameters = {"rows": rows, "columns": COLUMNS, "seed": 0}
    (project / "conf" / "base" / "parameters.yml").write_text(json.dumps(parameters) + "\n")
    return project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="size of the training input in GiB (default 1)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant (default 3)")
    parser.add_argument("--compare-with", type=Path, help="another checkout whose run_training is measured too")
    parser.add_argument("--compare-label", default=None, help="name of that checkout in the report")
    args = parser.parse_args()
    rows = int(args.gib * 2**30 / (8 * COLUMNS))

    with tempfile.TemporaryDirectory(prefix="akm-training-memory-") as tmp:
        root = Path(tmp)
        project = write_project(root, rows)
        with local_mlflow_server(root / "server") as server_uri:
            sqlite_uri = f"sqlite:///{root / 'mlflow.db'}"
            env = child_env(root, server_uri, REPO_ROOT)
            python = sys.executable
            variants: dict[str, tuple[list[str], dict[str, str]]] = {
                KEDRO_RUN: ([python, "-m", "kedro", "run", "--pipelines", "training"], env),
                RUN_TRAINING: ([python, "-c", RUN_TRAINING_CHILD, str(project), server_uri], env),
                "run_training, sqlite store": ([python, "-c", RUN_TRAINING_CHILD, str(project), sqlite_uri], env),
                "operator (Airflow imported), mlflow server": ([python, "-c", OPERATOR_CHILD, str(project)], env),
            }
            if args.compare_with is not None:
                label = f"run_training at {args.compare_label or args.compare_with}, mlflow server"
                other = child_env(root, server_uri, args.compare_with.resolve())
                variants[label] = ([python, "-c", RUN_TRAINING_CHILD, str(project), server_uri], other)
            log = root / "child.log"
            for command, variant_env in variants.values():  # warm-up, not measured: bytecode, sqlite tables
                measure(command, project, variant_env, log)
            samples: dict[str, list[Sample]] = {name: [] for name in variants}
            for _ in range(args.repeat):
                for name, (command, variant_env) in variants.items():
                    samples[name].append(measure(command, project, variant_env, log))
                    print(f"{name}: {samples[name][-1].peak_mib:.0f} MiB, {samples[name][-1].wall:.1f} s", flush=True)

    peaks = {name: statistics.median(s.peak_mib for s in runs) for name, runs in samples.items()}
    walls = {name: statistics.median(s.wall for s in runs) for name, runs in samples.items()}
    baseline = peaks[KEDRO_RUN]
    ratio = peaks[RUN_TRAINING] / baseline
    verdict = "meets" if ratio <= TARGET_RATIO else "misses"
    input_mib = rows * COLUMNS * 8 / 2**20
    table = "\n".join(
        f"| {name} | {peak:.0f} | {peak / baseline:.3f} | {walls[name]:.1f} |" for name, peak in peaks.items()
    )
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    compare, compared = "", ""
    if args.compare_with is not None:
        label = f" --compare-label {shlex.quote(args.compare_label)}" if args.compare_label else ""
        compare = f" --compare-with {args.compare_with}{label}"
        compared = (
            f"The `run_training at {args.compare_label or args.compare_with}` row is the same call of another checkout "
            "of this repository, measured in the same run.\n\n"
        )
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        f"""# Peak memory of training

Median peak resident set size of {args.repeat} interleaved runs per variant, each a fresh process, of a
generated Kedro project whose training input is a {rows:,}-row, {COLUMNS}-column float64 DataFrame
({input_mib:,.0f} MiB in memory). The last node reading it is followed by one that allocates a holdout table of the
same size, so a training that held the input to the end would need both at once.

| Variant | peak RSS (MiB) | / `kedro run` | seconds |
|---|---:|---:|---:|
{table}

**Ratio `run_training` / `kedro run`: {ratio:.3f}** (target ≤ {TARGET_RATIO}: {verdict} it). What remains is
fixed, not proportional to the data: {peaks[RUN_TRAINING] - baseline:.0f} MiB of MLflow (its import and the run)
on top of `kedro run`, {peaks["run_training, sqlite store"] - baseline:.0f} MiB with a sqlite store (MLflow's
database layer); the training input itself is kept only as a 100-row sample, for the signature. The operator row
adds Airflow's own memory, which the task process of any Airflow task has, however it runs Kedro.

{compared}Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, load average
during the run {load}. apache-airflow {version("apache-airflow")}, kedro {version("kedro")}, mlflow
{version("mlflow")}, pandas {version("pandas")}. Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC with
`python benchmarks/training_memory.py --gib {args.gib:g} --repeat {args.repeat}{compare}`.
"""
    )
    print(REPORT.read_text())


if __name__ == "__main__":
    main()
