"""Predict latency and load time: our KedroPipelineModel vs a hand-written pyfunc vs kedro-mlflow 2.0.3.

The same pipeline (scale -> logistic regression -> threshold, on scikit-learn's breast-cancer data), the same
signature (inputs + ``threshold`` param) and the same node functions are logged three times in one MLflow store and
loaded back with ``mlflow.pyfunc.load_model``; every call goes through MLflow's ``PyFuncModel.predict`` (schema
enforcement included), as in serving. Measurements are interleaved model by model, so a slower moment of a shared
machine hits all three alike, and only ratios are compared against the targets:

- 1-row predict: ours <= 1.15x the hand-written pyfunc, and >= 5x faster than kedro-mlflow;
- 100,000-row predict: ours <= 1.05x the hand-written pyfunc;
- ``load_model``: ours no slower than kedro-mlflow.

kedro-mlflow registers Kedro hooks through entry points, so it never goes into the project's venv. Run this script
from a separate one (a few seconds with uv's cache)::

    uv venv /tmp/bench-venv --python 3.11
    uv pip install -p /tmp/bench-venv/bin/python -e . kedro-mlflow==2.0.3 kedro==1.7.0 mlflow==3.17.2 \\
        "kedro-datasets[pickle-pickledataset]" scikit-learn matplotlib threadpoolctl
    KEDRO_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 /tmp/bench-venv/bin/python benchmarks/predict_latency.py

Results go to ``docs/benchmarks/predict_latency.md`` and ``docs/benchmarks/predict_latency.png``. The OpenBLAS
environment of the machine is left as it is (it is recorded in the results); BLAS runs single-threaded for all three
models alike, since the benchmark measures per-call overhead, not BLAS scaling.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import itertools
import logging
import os
import pickle
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

import mlflow
import numpy as np
import pandas as pd
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node
from kedro.runner import SequentialRunner
from kedro_datasets.pickle import PickleDataset
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from airflow_kedro_mlflow.model import KedroPipelineModel, default_pip_requirements, infer_model_signature
from airflow_kedro_mlflow.pipeline import pipeline_ml_factory

REPO_ROOT = Path(__file__).resolve().parents[1]
THRESHOLD = 0.5
OURS, HAND, KEDRO_MLFLOW = "airflow-kedro-mlflow", "hand-written pyfunc", "kedro-mlflow 2.0.3"


# -- the pipeline: the same node functions for all three models ------------------------------------------------------


def fit_scaler(features: pd.DataFrame) -> StandardScaler:
    return StandardScaler().fit(features)


def scale(features: pd.DataFrame, scaler: StandardScaler) -> pd.DataFrame:
    return pd.DataFrame(scaler.transform(features), columns=features.columns, index=features.index)


def fit_classifier(features: pd.DataFrame, target: pd.Series) -> LogisticRegression:
    return LogisticRegression(max_iter=1000).fit(np.asarray(features), target)


def predict_proba(features: pd.DataFrame, classifier: LogisticRegression) -> np.ndarray:
    return classifier.predict_proba(np.asarray(features))[:, 1]


def apply_threshold(proba: np.ndarray, threshold: float) -> pd.DataFrame:
    return pd.DataFrame({"proba": proba, "label": (proba >= threshold).astype("int64")})


class HandWrittenModel(mlflow.pyfunc.PythonModel):
    """What a careful user would write by hand: load two pickles once, call the three functions per request."""

    def load_context(self, context):
        with open(context.artifacts["scaler"], "rb") as stream:
            self.scaler = pickle.load(stream)
        with open(context.artifacts["classifier"], "rb") as stream:
            self.classifier = pickle.load(stream)

    def predict(self, context, model_input, params=None):
        threshold = (params or {}).get("threshold", THRESHOLD)
        return apply_threshold(predict_proba(scale(model_input, self.scaler), self.classifier), threshold)


def build_project(root: Path) -> tuple[Any, DataCatalog, pd.DataFrame]:
    """Train once; the artifacts are plain (unversioned) pickles, which kedro-mlflow can log too."""
    features, target = load_breast_cancer(return_X_y=True, as_frame=True)
    training = Pipeline(
        [
            node(fit_scaler, "train_features", "scaler", name="fit_scaler"),
            node(scale, ["train_features", "scaler"], "train_scaled", name="scale_train"),
            node(fit_classifier, ["train_scaled", "train_target"], "classifier", name="fit_classifier"),
        ]
    )
    inference = Pipeline(
        [
            node(scale, ["instances", "scaler"], "instances_scaled", name="scale"),
            node(predict_proba, ["instances_scaled", "classifier"], "proba", name="predict_proba"),
            node(apply_threshold, ["proba", "params:threshold"], "predictions", name="apply_threshold"),
        ]
    )
    catalog = DataCatalog(
        {
            "train_features": MemoryDataset(features),
            "train_target": MemoryDataset(target),
            "scaler": PickleDataset(filepath=str(root / "data" / "scaler.pkl")),
            "classifier": PickleDataset(filepath=str(root / "data" / "classifier.pkl")),
            "params:threshold": MemoryDataset(THRESHOLD),
        }
    )
    pipeline_ml = pipeline_ml_factory(training, inference, input_name="instances")
    SequentialRunner().run(pipeline_ml, catalog)
    return pipeline_ml, catalog, features


def log_models(root: Path, pipeline_ml: Any, catalog: DataCatalog, features: pd.DataFrame) -> dict[str, Path]:
    """Log the three models with one signature into a sqlite store; return their local model directories."""
    from kedro_mlflow.mlflow import KedroPipelineModel as KedroMlflowPipelineModel

    signature = infer_model_signature(features, pipeline_ml.inference, catalog)
    ours = KedroPipelineModel(pipeline_ml, catalog)
    theirs = KedroMlflowPipelineModel(pipeline_ml.inference, catalog, input_name="instances")
    (root / "kedro_mlflow_params").mkdir()
    candidates = {
        OURS: (ours, ours.extract_pipeline_artifacts(root / "params")),
        HAND: (HandWrittenModel(), {name: str(root / "data" / f"{name}.pkl") for name in ("scaler", "classifier")}),
        KEDRO_MLFLOW: (theirs, theirs.extract_pipeline_artifacts(root / "kedro_mlflow_params")),
    }
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    mlflow.set_experiment("predict_latency")
    directories = {}
    with mlflow.start_run():
        for label, (python_model, artifacts) in candidates.items():
            info = mlflow.pyfunc.log_model(
                name=label.split()[0].replace("-", "_"),
                python_model=python_model,
                artifacts=artifacts,
                signature=signature,
                pip_requirements=default_pip_requirements(),
            )
            directories[label] = Path(
                mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(root / "downloaded" / label))
            )
    return directories


# -- measuring -----------------------------------------------------------------------------------------------------


@dataclass
class Timings:
    """Seconds per call, by model; ``*_rounds`` hold one value per interleaving round, paired across models."""

    load: dict[str, list[float]] = field(default_factory=dict)
    one_row: dict[str, list[float]] = field(default_factory=dict)
    one_row_rounds: dict[str, list[float]] = field(default_factory=dict)
    batch: dict[str, list[float]] = field(default_factory=dict)

    def paired_ratio(self, kind: str, numerator: str, denominator: str) -> float:
        """Median over rounds of ``numerator / denominator`` measured in the same round: a slow moment of the
        (shared) machine lasting a round then cancels out instead of landing on one model."""
        rounds = getattr(self, kind)
        return statistics.median(a / b for a, b in zip(rounds[numerator], rounds[denominator], strict=True))


def interleaved(labels: list[str], rounds: int) -> list[tuple[str, ...]]:
    """Cycle through every order of the models, so each one runs first, and right after each other one, equally
    often: a model leaving garbage or log output behind (kedro-mlflow logs every node at INFO) then slows the others
    alike. Use a multiple of ``len(labels)!`` rounds."""
    orders = list(itertools.permutations(labels))
    return [orders[index % len(orders)] for index in range(rounds)]


def settle() -> None:
    """Collect garbage and flush log handlers between timed blocks, so no model pays for the previous one."""
    gc.collect()
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()


def measure(directories: dict[str, Path], args: argparse.Namespace) -> tuple[Timings, dict[str, Any]]:
    labels = list(directories)
    timings = Timings()
    models = {label: mlflow.pyfunc.load_model(str(path)) for label, path in directories.items()}  # warm imports
    for order in interleaved(labels, args.load_repeats):
        for label in order:
            settle()
            start = time.perf_counter()
            models[label] = mlflow.pyfunc.load_model(str(directories[label]))
            timings.load.setdefault(label, []).append(time.perf_counter() - start)

    features, _ = load_breast_cancer(return_X_y=True, as_frame=True)
    rng = np.random.default_rng(0)
    batch = features.iloc[rng.integers(0, len(features), size=args.batch_rows)].reset_index(drop=True)
    batch = batch * rng.normal(1.0, 0.01, size=batch.shape)
    one_row = batch.head(1)

    check = batch.head(1000)
    reference = models[HAND].predict(check)
    for label in labels:  # same answers, or the timings would mean nothing
        pd.testing.assert_frame_equal(models[label].predict(check), reference)
        pd.testing.assert_frame_equal(
            models[label].predict(check, params={"threshold": 0.9}),
            models[HAND].predict(check, params={"threshold": 0.9}),
        )

    for label in labels:
        for _ in range(args.warmup):
            models[label].predict(one_row)
    block = max(1, args.one_row_calls // args.blocks)
    for order in interleaved(labels, args.blocks):
        for label in order:
            settle()
            model, samples = models[label], []
            for _ in range(block):
                start = time.perf_counter()
                model.predict(one_row)
                samples.append(time.perf_counter() - start)
            timings.one_row.setdefault(label, []).extend(samples)
            timings.one_row_rounds.setdefault(label, []).append(statistics.median(samples))

    for order in interleaved(labels, args.batch_repeats):
        for label in order:
            settle()
            start = time.perf_counter()
            models[label].predict(batch)
            timings.batch.setdefault(label, []).append(time.perf_counter() - start)
    return timings, {"batch_rows": args.batch_rows, "one_row_calls": block * args.blocks}


# -- reporting -----------------------------------------------------------------------------------------------------


def p95(samples: list[float]) -> float:
    return float(np.percentile(samples, 95))


def environment() -> list[str]:
    from threadpoolctl import threadpool_info

    blas = [
        f"{info.get('internal_api')} {info.get('version')} ({info.get('architecture')}, {info.get('num_threads')} "
        f"threads at rest)"
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("kedro", "kedro-datasets", "kedro-mlflow", "mlflow", "scikit-learn", "pandas", "numpy")
    )
    openblas_env = {name: os.environ.get(name, "unset") for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    return [
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; Python {platform.python_version()}"
        f" on {platform.machine()}, {os.cpu_count()} cores (shared with other jobs while measured).",
        f"- Versions: {versions}.",
        f"- BLAS: {'; '.join(blas) or 'none found'}; limited to 1 thread while measuring. OpenBLAS environment "
        f"left as found: {openblas_env}.",
    ]


def targets(timings: Timings, batch_rows: int) -> list[tuple[str, float, str, bool]]:
    ratio = timings.paired_ratio
    ratios = [
        ("1-row predict, ours / hand-written", ratio("one_row_rounds", OURS, HAND), "<= 1.15", 1.15),
        ("1-row predict, kedro-mlflow / ours", ratio("one_row_rounds", KEDRO_MLFLOW, OURS), ">= 5", None),
        (f"{batch_rows:,}-row predict, ours / hand-written", ratio("batch", OURS, HAND), "<= 1.05", 1.05),
        ("load_model, ours / kedro-mlflow", ratio("load", OURS, KEDRO_MLFLOW), "<= 1.0", 1.0),
    ]
    return [
        (name, ratio, target, ratio >= 5 if limit is None else ratio <= limit) for name, ratio, target, limit in ratios
    ]


def write_markdown(path: Path, timings: Timings, counts: dict[str, Any], image: str) -> None:
    rows = []
    for label in timings.one_row:
        one, batch, load = timings.one_row[label], timings.batch[label], timings.load[label]
        rows.append(
            f"| {label} | {statistics.median(one) * 1e3:.2f} | {p95(one) * 1e3:.2f} | "
            f"{statistics.median(batch) * 1e3:.0f} | {counts['batch_rows'] / statistics.median(batch):,.0f} | "
            f"{statistics.median(load) * 1e3:.0f} |"
        )
    checks = [
        f"| {name} | {ratio:.2f} | {target} | {'met' if met else 'NOT met'} |"
        for name, ratio, target, met in targets(timings, counts["batch_rows"])
    ]
    text = "\n".join(
        [
            "# Predict latency and load time",
            "",
            "Generated by `benchmarks/predict_latency.py` (do not edit by hand). One pipeline (scale -> logistic "
            "regression -> threshold on scikit-learn's breast-cancer data), one signature with a `threshold` param, "
            "logged three times and loaded with `mlflow.pyfunc.load_model`; every call goes through MLflow's "
            "`PyFuncModel.predict`, as in serving. Timed blocks cycle through every order of the three models, with "
            "garbage collected and logs flushed between blocks; each model is loaded once untimed first.",
            "",
            f"| model | 1-row median (ms) | 1-row p95 (ms) | {counts['batch_rows']:,}-row predict (ms) | "
            "rows/s | load_model (ms) |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            f"Medians of {counts['one_row_calls']} one-row calls, {len(next(iter(timings.batch.values())))} batch "
            f"calls and {len(next(iter(timings.load.values())))} loads per model. The ratios below are medians of "
            f"ratios between models measured in the same interleaving round (the 1-row ones over "
            f"{len(next(iter(timings.one_row_rounds.values())))} rounds), which cancels the load of other jobs on "
            "the machine better than a ratio of overall medians.",
            "",
            "| ratio | value | target | |",
            "| --- | ---: | ---: | --- |",
            *checks,
            "",
            f"![1-row latency distribution and batch throughput]({image})",
            "",
            "## Environment",
            "",
            *environment(),
            "",
        ]
    )
    path.write_text(text, encoding="utf-8")


def write_plot(path: Path, timings: Timings, counts: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(timings.one_row)
    colors = ["#1b9e77", "#7570b3", "#d95f02"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    data = [np.asarray(timings.one_row[label]) * 1e3 for label in labels]
    parts = left.boxplot(data, orientation="horizontal", showfliers=False, patch_artist=True, widths=0.6)
    for patch, color in zip(parts["boxes"], colors, strict=False):
        patch.set_facecolor(color)
        patch.set_alpha(0.6)
    left.set_yticks(range(1, len(labels) + 1), labels)
    left.set_xscale("log")
    left.set_xlabel("1-row predict latency (ms, log scale; whiskers 1.5 IQR)")
    left.set_title(f"1-row latency ({counts['one_row_calls']} calls per model)")
    throughput = [counts["batch_rows"] / statistics.median(timings.batch[label]) for label in labels]
    right.barh(labels, throughput, color=colors[: len(labels)], alpha=0.8)
    right.set_xlabel("rows per second (median)")
    right.set_title(f"{counts['batch_rows']:,}-row predict throughput")
    right.invert_yaxis()
    left.invert_yaxis()
    for index, value in enumerate(throughput):
        right.text(value, index, f" {value:,.0f}", va="center")
    right.set_xlim(0, max(throughput) * 1.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "docs" / "benchmarks")
    parser.add_argument("--batch-rows", type=int, default=100_000)
    parser.add_argument("--one-row-calls", type=int, default=480)
    parser.add_argument("--blocks", type=int, default=24, help="interleaving rounds of the one-row calls")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batch-repeats", type=int, default=18)
    parser.add_argument("--load-repeats", type=int, default=12)
    args = parser.parse_args(argv)
    try:
        import kedro_mlflow  # noqa: F401 - only checks the separate venv
    except ImportError:
        print("kedro-mlflow is not installed here: run this from its own venv (see the module docstring).")
        return 2
    from threadpoolctl import threadpool_limits

    with tempfile.TemporaryDirectory(prefix="predict-latency-") as scratch:
        root = Path(scratch)
        pipeline_ml, catalog, features = build_project(root)
        directories = log_models(root, pipeline_ml, catalog, features)
        with threadpool_limits(limits=1, user_api="blas"):
            timings, counts = measure(directories, args)
        mlflow.set_tracking_uri(None)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    write_plot(args.output_dir / "predict_latency.png", timings, counts)
    write_markdown(args.output_dir / "predict_latency.md", timings, counts, "predict_latency.png")
    print((args.output_dir / "predict_latency.md").read_text(encoding="utf-8"))
    return 0 if all(met for *_, met in targets(timings, counts["batch_rows"])) else 1


if __name__ == "__main__":
    sys.exit(main())
