"""Batch scoring: ``score_batch`` (pandas engine, chunked) vs a hand-written load-predict-write loop.

Same model (the example project's classifier, trained and registered once in a sqlite store by this script), same
parquet input (rows sampled from the example's instances with noise added, 30 float columns), same parquet output
(input columns plus ``probability`` and ``prediction``). Two measurements:

- throughput on ``--rows`` rows (default 1,000,000): each round times both variants in this process, one after the
  other, the order alternating round by round; each variant loads the model, reads, predicts and writes. The ratio is
  the median over rounds of (hand-written seconds / ``score_batch`` seconds), i.e. ``score_batch``'s throughput
  relative to the loop's (target >= 0.95);
- peak resident memory of each variant in a fresh process (``wait4``), for two input sizes (``--rows`` and
  ``--large-rows``, default 4,000,000): the chunked engine's peak must not grow with the input.

The hand-written loop is what a user writes without this package::

    model = mlflow.pyfunc.load_model(model_uri)
    frame = pd.read_parquet(input_path)
    pd.concat([frame, model.predict(frame)], axis=1).to_parquet(output_path, index=False)

Writes ``docs/benchmarks/batch_scoring.md``. Needs about 6 GiB of free memory (the hand-written loop on the large
input) and 3 GiB of disk in the temporary directory::

    python benchmarks/batch_scoring.py [--rows 1000000] [--large-rows 4000000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

from _processes import Sample, child_env, measure

REPO_ROOT = Path(__file__).resolve().parents[1]
REPORT = REPO_ROOT / "docs" / "benchmarks" / "batch_scoring.md"
EXAMPLE_PROJECT = REPO_ROOT / "dags_examples" / "kedro_classifier"
MODEL = "bench_batch_scoring"
MODEL_URI = f"models:/{MODEL}@champion"
TARGET_RATIO = 0.95
CHUNK_SIZE = 100_000
OURS, HAND = "score_batch (pandas, chunked)", "hand-written loop"

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
sys.path.insert(0, str(REPO_ROOT))


def prepare_model(root: Path) -> str:
    """Train the example project and register its model (``champion``) in a sqlite store; return the store URI."""
    from airflow_kedro_mlflow.kedro_project import open_session, prepare_kedro_environment

    prepare_kedro_environment()
    from airflow_kedro_mlflow.modelify import modelify
    from airflow_kedro_mlflow.tracking import TrackingConfig

    project = root / "kedro_classifier"
    shutil.copytree(EXAMPLE_PROJECT, project, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    with open_session(project) as session:
        session.run(pipeline_names=["training"])
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    modelify(project, "training", tracking=TrackingConfig(tracking_uri), registered_model_name=MODEL,
             aliases=["champion"])  # fmt: skip
    return tracking_uri


def write_input(project_instances: Path, path: Path, rows: int, seed: int = 0) -> None:
    """``rows`` rows of the example's features (sampled, with 1 % noise), written 1,000,000 rows at a time."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = pd.read_csv(project_instances)
    rng = np.random.default_rng(seed)
    writer = None
    for start in range(0, rows, 1_000_000):
        count = min(1_000_000, rows - start)
        values = base.to_numpy()[rng.integers(0, len(base), count)]
        values = values * (1 + 0.01 * rng.standard_normal(values.shape))
        table = pa.Table.from_pandas(pd.DataFrame(values, columns=base.columns), preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()


def run_ours(tracking_uri: str, input_path: str, output_path: str) -> int:
    from airflow_kedro_mlflow.scoring import score_batch
    from airflow_kedro_mlflow.tracking import TrackingConfig

    result = score_batch(MODEL_URI, input_path, output_path, tracking=TrackingConfig(tracking_uri),
                         chunk_size=CHUNK_SIZE, overwrite=True)  # fmt: skip
    return result.rows


def run_hand(tracking_uri: str, input_path: str, output_path: str) -> int:
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(MODEL_URI)
    frame = pd.read_parquet(input_path)
    pd.concat([frame, model.predict(frame)], axis=1).to_parquet(output_path, index=False)
    return len(frame)


VARIANTS = {OURS: run_ours, HAND: run_hand}


def throughput(tracking_uri: str, input_path: Path, root: Path, rounds: int) -> dict[str, list[float]]:
    """Seconds per run of each variant, interleaved (order alternating), after one warm-up run of each.

    Each variant writes its own output, deleted before its run, and dirty pages are flushed (``sync``) before every
    timed run: otherwise the second run of a round pays for the write-back of the first one's output.
    """
    import gc

    seconds: dict[str, list[float]] = {label: [] for label in VARIANTS}
    for index in range(rounds + 1):
        order = list(VARIANTS) if index % 2 == 0 else list(reversed(VARIANTS))
        for label in order:
            output = root / f"out-{label.split()[0]}.parquet"
            output.unlink(missing_ok=True)
            (root / f".{output.name}.scoring.json").unlink(missing_ok=True)
            gc.collect()
            os.sync()  # the previous run's output is on disk: its write-back does not slow this run down
            started = time.perf_counter()
            VARIANTS[label](tracking_uri, str(input_path), str(output))
            elapsed = time.perf_counter() - started
            if index > 0:  # the first round warms caches (imports, the model's files, the page cache)
                seconds[label].append(elapsed)
            print(f"round {index}: {label}: {elapsed:.2f} s", file=sys.stderr, flush=True)
    return seconds


def peak_memory(tracking_uri: str, inputs: dict[int, Path], root: Path) -> dict[tuple[str, int], Sample]:
    """Peak RSS of each variant on each input, in fresh processes."""
    env = child_env(root, tracking_uri, REPO_ROOT)
    samples = {}
    for rows, path in inputs.items():
        for label in VARIANTS:
            command = [sys.executable, __file__, "--child", label, "--tracking-uri", tracking_uri,
                       "--input", str(path), "--output", str(root / "child-out.parquet")]  # fmt: skip
            samples[(label, rows)] = measure(command, REPO_ROOT, env, root / "child.log")
            print(f"{label}, {rows:,} rows: peak {samples[(label, rows)].peak_mib:.0f} MiB", flush=True)
    return samples


def write_report(
    seconds: dict[str, list[float]], memory: dict[tuple[str, int], Sample], rows: int, large_rows: int, command: str
) -> float:
    ratios = [hand / ours for hand, ours in zip(seconds[HAND], seconds[OURS], strict=True)]
    ratio = statistics.median(ratios)
    verdict = "meets it" if ratio >= TARGET_RATIO else "misses it"
    of_medians = statistics.median(seconds[HAND]) / statistics.median(seconds[OURS])
    lines = [
        "# Batch scoring",
        "",
        f"`score_batch` (pandas engine, chunks of {CHUNK_SIZE:,} rows) vs a hand-written load-predict-write loop,",
        f"same registered model (the example classifier), same parquet input of {rows:,} rows x 30 float columns,",
        "same parquet output (input columns + `probability` + `prediction`). Each run loads the model, reads,",
        f"predicts and writes. Median of {len(ratios)} interleaved rounds (order alternating) after a warm-up round.",
        "",
        "| Variant | seconds (median) | rows/s |",
        "|---|---:|---:|",
    ]
    for label in VARIANTS:
        median = statistics.median(seconds[label])
        lines.append(f"| {label} | {median:.2f} | {rows / median:,.0f} |")
    lines += [
        "",
        f"**Throughput ratio `score_batch` / hand-written: {ratio:.3f}** (median of per-round ratios; target ≥ "
        f"{TARGET_RATIO}: {verdict}). Ratio of the medians: {of_medians:.3f}; per-round ratios: "
        f"{', '.join(f'{value:.2f}' for value in ratios)}. On a busy machine single rounds vary by tens of percent; "
        "the per-round ratio pairs runs made seconds apart.",
        "",
        "Where the difference comes from: the model predicts a 100,000-row chunk several times faster per row than a",
        "1,000,000-row table (its intermediate arrays stay small), and the chunked writer encodes float columns",
        "plain (dictionary-encoding them, parquet's default, costs about 4x per chunk-sized row group); reading and",
        "writing parquet are otherwise the same pyarrow calls.",
        "",
        "## Peak memory",
        "",
        "Peak resident set size of one fresh process per variant and input size (the interpreter, mlflow and the",
        "model included):",
        "",
        f"| Variant | {rows:,} rows | {large_rows:,} rows |",
        "|---|---:|---:|",
    ]
    for label in VARIANTS:
        small, large = memory[(label, rows)], memory[(label, large_rows)]
        lines.append(f"| {label} | {small.peak_mib:.0f} MiB | {large.peak_mib:.0f} MiB |")
    ours_growth = memory[(OURS, large_rows)].peak_mib / memory[(OURS, rows)].peak_mib
    hand_growth = memory[(HAND, large_rows)].peak_mib / memory[(HAND, rows)].peak_mib
    lines += [
        "",
        f"With {large_rows // rows}x the rows, the chunked engine's peak grows {ours_growth:.2f}x (the hand-written "
        f"loop's {hand_growth:.2f}x): it holds one parquet row group (the input is written in groups of 1,000,000 "
        f"rows) and one chunk of {CHUNK_SIZE:,} rows with its predictions at a time, whatever the input's size.",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, load average "
        f"at the end of the run {', '.join(f'{load:.1f}' for load in os.getloadavg())}. kedro {version('kedro')}, "
        f"mlflow {version('mlflow')}, pandas {version('pandas')}, pyarrow {version('pyarrow')}.",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC with `{command}`.",
    ]
    REPORT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--large-rows", type=int, default=4_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stage", choices=("prepare", "throughput"), help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--tracking-uri", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if os.path.exists(args.output):
            os.remove(args.output)
        print(json.dumps({"rows": VARIANTS[args.child](args.tracking_uri, args.input, args.output)}))
        return 0
    if args.stage == "prepare":
        root = Path(args.root)
        tracking_uri = prepare_model(root)
        instances = root / "kedro_classifier" / "data" / "05_model_input" / "instances.csv"
        for rows in (args.rows, args.large_rows):
            write_input(instances, root / f"in-{rows}.parquet", rows)
        print(json.dumps({"tracking_uri": tracking_uri}))
        return 0
    if args.stage == "throughput":
        root = Path(args.root)
        seconds = throughput(args.tracking_uri, root / f"in-{args.rows}.parquet", root, args.rounds)
        print(json.dumps(seconds))
        return 0

    # This process only starts the others: Linux hands a child the parent's peak RSS (vfork + exec), so a parent that
    # loaded data itself would hide the children's own peaks.
    with tempfile.TemporaryDirectory(prefix="bench-batch-scoring-") as scratch:
        root = Path(scratch)
        tracking_uri = json.loads(_stage(root, "prepare", args))["tracking_uri"]
        inputs = {rows: root / f"in-{rows}.parquet" for rows in (args.rows, args.large_rows)}
        memory = peak_memory(tracking_uri, inputs, root)
        seconds = json.loads(_stage(root, "throughput", args, "--tracking-uri", tracking_uri))
    command = "python benchmarks/batch_scoring.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    ratio = write_report(seconds, memory, args.rows, args.large_rows, command.strip())
    print(f"throughput ratio {ratio:.3f} (target >= {TARGET_RATIO}); report: {REPORT}")
    return 0


def _stage(root: Path, stage: str, args: argparse.Namespace, *extra: str) -> str:
    """Run a stage of the benchmark in a child process; return its last stdout line (JSON)."""
    import subprocess

    command = [sys.executable, __file__, "--stage", stage, "--root", str(root), "--rows", str(args.rows),
               "--large-rows", str(args.large_rows), "--rounds", str(args.rounds), *extra]  # fmt: skip
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return completed.stdout.strip().splitlines()[-1]


if __name__ == "__main__":
    sys.exit(main())
