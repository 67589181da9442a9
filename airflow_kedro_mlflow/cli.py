"""``airflow-kedro-mlflow``: train a Kedro pipeline in an MLflow run, log (and register) its inference pipeline, and
promote versions, in a shell.

Argument parsing only: ``train`` maps its flags onto :func:`airflow_kedro_mlflow.training.run_training`,
``modelify`` onto :func:`airflow_kedro_mlflow.modelify.modelify` and ``promote`` onto
:func:`airflow_kedro_mlflow.promotion.promote`, which do the work. ``train`` and ``modelify`` are also the contract
every isolated execution mode runs in the project's own environment (:mod:`airflow_kedro_mlflow.execution`): their
``--output FILE`` is the operator's XCom payload, written atomically.

Exit codes (docs/cli.md documents the same table; scripts and Airflow's ``BashOperator`` rely on them):

- 0: done. For ``promote`` every decision is a success: promoted, kept the champion, already the champion.
- 1: the work failed: the MLflow server cannot be reached, a node failed, an artifact changed since training,
  MLflow or the file system refused a request. Retrying later may succeed.
- 2: bad input: a wrong flag, an unknown pipeline/env/run/version, an invalid name, alias or params, credentials the
  server rejected. Retrying the same command will fail the same way.

Errors print one line on stderr, ``Error: <ErrorClass>: <what is wrong and how to fix it>``, with no traceback. With
``--json`` stdout carries exactly one JSON object and nothing else: MLflow's "View run" lines are switched off, and
anything else written to stdout while the command works (project code, libraries) goes to stderr. SIGTERM is raised
into the work (an MLflow run the command started ends FAILED) and exits 143.

Credentials come from MLflow's variables (``MLFLOW_TRACKING_USERNAME``/``PASSWORD``/``TOKEN``), never from flags;
they are read once and removed from this process's environment, so nothing it starts (``git``, a node's
subprocess) inherits them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_kedro_mlflow import __version__
from airflow_kedro_mlflow.exceptions import AirflowKedroMlflowError, MlflowConnectionError
from airflow_kedro_mlflow.tracking.params import LONG_PARAMS_STRATEGIES, SHAPES

if TYPE_CHECKING:
    from airflow_kedro_mlflow.tracking import TrackingConfig
    from airflow_kedro_mlflow.training_result import TrainingResult

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM


#: What a command returns: the JSON payload (``--json``) and the human summary (one or more lines).
CommandResult = tuple[dict[str, Any], str]


class CliUsageError(ValueError):
    """A flag value that cannot be understood (reported like argparse's own errors, exit code 2)."""


class Terminated(BaseException):
    """SIGTERM arrived: raised into the running command so an MLflow run it started ends FAILED.

    A ``BaseException``, so Kedro's node error handling and ``except Exception`` blocks let it through.
    """


def build_parser() -> argparse.ArgumentParser:
    """Return the ``airflow-kedro-mlflow`` parser (exposed so the docs and tests read the same flags)."""
    parser = argparse.ArgumentParser(
        prog="airflow-kedro-mlflow",
        description="Train-and-serve helpers for Kedro projects tracked in MLflow.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    train = commands.add_parser(
        "train",
        help="run a Kedro training pipeline in an MLflow run and record what its inference pipeline needs",
        description=(
            "Run a registered Kedro pipeline (normally a PipelineML) in a new MLflow run: Kedro params logged, "
            "nodes may log metrics, and every artifact the inference pipeline needs uploaded to the run and hashed. "
            "The result (--output, --json) is KedroTrainingOperator's XCom, which modelify --training-result reads."
        ),
    )
    project = _add_project_flags(
        train,
        pipeline_default="training",
        pipeline_help="registered pipeline to run, normally a PipelineML (default: training)",
    )
    project.add_argument("--runner", help="Kedro runner: SequentialRunner (default), ThreadRunner or an import path")
    project.add_argument(
        "--tags", action="append", metavar="TAG[,TAG]", help="run only nodes with any of these Kedro tags; repeatable"
    )
    project.add_argument("--node-names", action="append", metavar="NODE[,NODE]", help="run only these nodes")
    project.add_argument("--from-nodes", action="append", metavar="NODE[,NODE]", help="run from these nodes on")
    project.add_argument("--to-nodes", action="append", metavar="NODE[,NODE]", help="run up to these nodes")
    project.add_argument(
        "--load-versions-json", metavar="JSON", help='{"dataset": "version"} to load instead of the latest versions'
    )
    tracking = _add_tracking_flags(train)
    tracking.add_argument("--run-id", help="train inside this existing MLflow run instead of a new one")
    tracking.add_argument("--run-name", help="name of the new MLflow run (default: the pipeline name)")
    tracking.add_argument("--experiment-name", help="experiment of the new run (default: the project's package name)")
    tracking.add_argument(
        "--tag", dest="mlflow_tags", action="append", default=[], metavar="KEY=VALUE", help="MLflow tag; repeatable"
    )
    tracking.add_argument(
        "--parent-run-tag",
        dest="parent_run_tags",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="make the run one trial of a sweep: nested under the one parent run with these tags (created when "
        "missing); repeatable",
    )
    tracking.add_argument(
        "--params-shape",
        choices=SHAPES,
        help="how Kedro params are logged: flatten (one param per leaf, default) or kedro_mlflow (one per params: "
        "input, a nested dict as one param); default: the project's conf/<env>/airflow_kedro_mlflow.yml",
    )
    tracking.add_argument(
        "--long-params-strategy",
        choices=LONG_PARAMS_STRATEGIES,
        help="a param value longer than MLflow's limit: fail, tag (log it as a tag) or truncate (default)",
    )
    _add_output_flags(train)

    modelify = commands.add_parser(
        "modelify",
        help="log a Kedro pipeline's inference part as an MLflow model (and register it)",
        description=(
            "Log the inference pipeline of a Kedro pipeline, with the artifacts training produced, as an MLflow "
            "pyfunc model; optionally register it and set aliases. Run the training pipeline first: every artifact "
            "the inference pipeline needs must exist."
        ),
    )
    project = _add_project_flags(
        modelify,
        pipeline_default=None,
        pipeline_help="registered pipeline: a PipelineML (its inference part is logged), or an inference pipeline "
        "with --input-name (default with --training-result: the training's)",
    )
    project.add_argument(
        "--training-result",
        metavar="FILE",
        help="the training result as JSON (train --output, or a training task's XCom): its run, artifacts (checked "
        "by sha256) and Kedro settings are used, as KedroModelifyOperator does",
    )
    project.add_argument("--input-name", help="dataset receiving the data to predict on (default: the PipelineML's)")
    project.add_argument(
        "--copy-mode",
        help="copy mode of the model's datasets: assign, copy, deepcopy, or a JSON object {dataset: mode}",
    )

    tracking = _add_tracking_flags(modelify)
    tracking.add_argument("--run-id", help="log into this existing MLflow run instead of a new one")
    tracking.add_argument("--run-name", help="name of the new MLflow run")
    tracking.add_argument("--experiment-name", help="experiment of the new run (default: the project's package name)")
    tracking.add_argument("--registered-model-name", help="register a version of this model (default: log only)")
    tracking.add_argument(
        "--alias", dest="aliases", action="append", default=[], help="alias to set on the version; repeatable"
    )
    tracking.add_argument(
        "--tag", dest="mlflow_tags", action="append", default=[], metavar="KEY=VALUE", help="MLflow tag; repeatable"
    )
    tracking.add_argument(
        "--idempotency-key",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="reuse the model an earlier call with the same key (and training run) logged, instead of a second one; "
        "repeatable (the operator passes the Airflow task's identity)",
    )

    log_model = modelify.add_argument_group("mlflow.pyfunc.log_model arguments")
    log_model.add_argument(
        "--log-model-kwargs-json",
        metavar="JSON",
        help="log_model arguments as one JSON object (as KedroModelifyOperator's log_model_kwargs); the flags below "
        "override its keys",
    )
    log_model.add_argument(
        "--model-name", "--artifact-path", dest="model_name", help="name of the model in its run (default: model)"
    )
    log_model.add_argument(
        "--pip-requirements",
        action="append",
        metavar="REQ|FILE",
        help="pip requirement or requirements file, replacing the pinned defaults; repeatable",
    )
    log_model.add_argument(
        "--extra-pip-requirements",
        action="append",
        metavar="REQ|FILE",
        help="pip requirement or requirements file added to the defaults; repeatable",
    )
    log_model.add_argument(
        "--code-path",
        dest="code_paths",
        action="append",
        metavar="PATH",
        help="code shipped with the model, replacing the project's package; repeatable",
    )
    log_model.add_argument("--conda-env", metavar="FILE", help="conda environment YAML (instead of pip requirements)")
    log_model.add_argument("--input-example", metavar="FILE", help="input example: a .csv, .json or .parquet file")
    log_model.add_argument(
        "--metadata",
        action="append",
        default=[],
        metavar="KEY=VALUE|JSON",
        help="model metadata: KEY=VALUE (repeatable) or one JSON object",
    )
    log_model.add_argument(
        "--signature",
        choices=("auto", "none"),
        default="auto",
        help="auto: infer from the training input data and params (default); none: no signature",
    )
    _add_output_flags(modelify)

    promote = commands.add_parser(
        "promote",
        help="move an alias (default: champion) to a model version if its metric beats the current holder's",
        description=(
            "Compare a metric of a registered model version's training run with the one of the version holding the "
            "alias, and move the alias if the new version is strictly better (a tie keeps the holder; no holder yet, "
            "or a holder without the metric, loses). The decision and its reason are also written as tags on the "
            "version. Every decision exits 0."
        ),
    )
    target = promote.add_argument_group("model version")
    target.add_argument("--registered-model-name", required=True, help="registered model of the version")
    target.add_argument("--version", required=True, help="version to compare, e.g. the one modelify registered")
    target.add_argument("--metric", required=True, help="metric of the versions' training runs, e.g. accuracy")
    target.add_argument("--alias", default="champion", help="alias to move (default: champion)")
    direction = target.add_mutually_exclusive_group()
    direction.add_argument(
        "--greater-is-better",
        dest="greater_is_better",
        action="store_true",
        default=True,
        help="a higher metric wins (default)",
    )
    direction.add_argument(
        "--lower-is-better", dest="greater_is_better", action="store_false", help="a lower metric wins (e.g. rmse)"
    )
    _add_tracking_flags(promote)
    _add_output_flags(promote)
    _add_score_command(commands)
    return parser


def _add_score_command(commands: Any) -> None:
    """Add ``score``: the flags of :func:`airflow_kedro_mlflow.scoring.score_batch`, named as the operator's."""
    score = commands.add_parser(
        "score",
        help="score a table with a registered MLflow model, chunk by chunk (or on Spark)",
        description=(
            "Resolve --model-uri once to a concrete version, score the input (a path with a format, or a Kedro "
            "catalog dataset) in chunks, and write its columns plus the predictions to the output: through a "
            "temporary sibling moved into place, with the model version, its run and the row count recorded next to "
            "it. An existing output written by another caller (another --task-identity) is refused without "
            "--overwrite. This is what MlflowBatchPredictOperator runs."
        ),
    )
    data = score.add_argument_group("data")
    data.add_argument("--model-uri", required=True, help="models:/<name>@<alias>, models:/<name>/<version>, runs:/…")
    source = data.add_mutually_exclusive_group(required=True)
    source.add_argument("--input-path", help="fsspec path or URL of the table to score")
    source.add_argument("--input-dataset", help="catalog dataset of --project-path to score")
    data.add_argument("--input-format", help="parquet, csv or jsonl (default: from the suffix)")
    target = data.add_mutually_exclusive_group(required=True)
    target.add_argument("--output-path", help="fsspec path or URL of the scored table")
    target.add_argument("--output-dataset", help="catalog dataset (unversioned pandas parquet or CSV) to write")
    data.add_argument("--output-format", help="parquet, csv or jsonl (default: from the suffix)")
    data.add_argument("--project-path", help="Kedro project whose catalog defines the datasets")
    data.add_argument("--env", help="Kedro configuration environment of that catalog")
    data.add_argument("--conf-source", help="Kedro configuration directory or archive (default: conf/)")
    run = score.add_argument_group("scoring")
    run.add_argument("--engine", choices=("pandas", "spark"), default="pandas", help="default: pandas")
    run.add_argument("--chunk-size", type=int, default=100_000, help="rows per chunk (default: 100000)")
    run.add_argument("--predict-params-json", metavar="JSON", help='model params, e.g. {"threshold": 0.7}')
    run.add_argument(
        "--task-identity",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="who owns the output (e.g. airflow.dag_id=…); a call with the same identity overwrites it; repeatable",
    )
    run.add_argument("--overwrite", action="store_true", help="replace an existing output whoever wrote it")
    run.add_argument("--spark-master", default="local[2]", help="Spark master URL (default: local[2])")
    run.add_argument("--spark-result-type", help="Spark type of the model's output, e.g. 'probability double'")
    _add_tracking_flags(score)
    _add_output_flags(score)


def _add_project_flags(
    command: argparse.ArgumentParser, *, pipeline_default: str | None, pipeline_help: str
) -> argparse._ArgumentGroup:
    """Add the flags that say which Kedro project run (a ``KedroRunSpec``); return their group."""
    project = command.add_argument_group("Kedro project")
    project.add_argument("--project-path", help="Kedro project root (default: current directory)")
    project.add_argument("--pipeline", dest="pipeline_name", default=pipeline_default, help=pipeline_help)
    project.add_argument("--env", help="Kedro configuration environment (default: KEDRO_ENV or the project's)")
    project.add_argument("--conf-source", help="Kedro configuration directory or archive (default: conf/)")
    project.add_argument(
        "--params",
        dest="runtime_params",
        action="append",
        default=[],
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="runtime params as for `kedro run --params` (dotted keys nest; values parsed as YAML); repeatable",
    )
    project.add_argument(
        "--runtime-params-json",
        metavar="JSON",
        help="runtime params as one JSON object, types kept (--params items go on top)",
    )
    return project


def _add_tracking_flags(command: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Add the MLflow server flags every subcommand shares; return their group for command-specific flags."""
    tracking = command.add_argument_group("MLflow")
    tracking.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI; required, MLflow's implicit ./mlflow.db is refused)",
    )
    tracking.add_argument(
        "--registry-uri", help="MLflow registry URI (default: MLFLOW_REGISTRY_URI, else the tracking URI)"
    )
    tracking.add_argument(
        "--ui-url", help="browser-facing MLflow URL for the run and model links (default: the tracking URI)"
    )
    return tracking


def _add_output_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--json", action="store_true", help="print the result as one JSON object, and nothing else, on stdout"
    )
    command.add_argument("-q", "--quiet", action="store_true", help="only print the result and errors")
    command.add_argument(
        "--output", metavar="FILE", help="also write the JSON result to FILE (atomically: complete or absent)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console script exits with it)."""
    # MLflow prints "View run / View experiment" lines on stdout for HTTP stores: noise for a summary, and invalid
    # JSON for --json. MLflow reads the variable when it prints; set it before anything imports mlflow anyway.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(quiet=args.quiet)
    command = _COMMANDS[args.command]
    try:
        with _sigterm_raises(), _stdout_reserved_for_json(args.json):
            payload, summary = command(args)
            if args.output:
                write_atomically(Path(args.output), json.dumps(payload, sort_keys=True) + "\n")
    except CliUsageError as exc:
        sys.stderr.write(f"{parser.prog} {args.command}: error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("Error: interrupted.\n")
        return EXIT_INTERRUPTED
    except Terminated:
        sys.stderr.write("Error: Terminated: received SIGTERM; an MLflow run this command started is marked FAILED.\n")
        return EXIT_TERMINATED
    except Exception as exc:
        code = exit_code(exc)
        if code is None:
            raise
        sys.stderr.write(f"Error: {_describe(exc, _public_tracking_uri(args))}\n")
        return code
    if args.json:
        sys.stdout.write(json.dumps(payload, sort_keys=True) + "\n")
    else:
        sys.stdout.write(summary + "\n")
    return EXIT_OK


def exit_code(exc: BaseException) -> int | None:
    """The exit code for an error the CLI reports in one line, or None for a bug (left to raise, with its traceback).

    Only the package's own ``ValueError`` subclasses are bad input (2): they are raised after the input was checked
    and found wrong. Everything else is a failure of the work (1): the package's other errors (e.g.
    :class:`~airflow_kedro_mlflow.exceptions.MlflowServerUnavailableError`), MLflow's errors, any ``OSError`` --
    which includes ``ConnectionError`` and ``requests``' connection errors -- and stray ``ValueError``s from below.
    """
    if isinstance(exc, CliUsageError):
        return EXIT_USAGE
    if isinstance(exc, AirflowKedroMlflowError):
        return EXIT_USAGE if isinstance(exc, ValueError) else EXIT_FAILED
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException | OSError | ValueError):
        return EXIT_FAILED
    return None


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename: a reader (the worker
    waiting for a result) sees the whole file or none, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while a command runs (main thread only, where Python delivers it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: object) -> None:
        raise Terminated(f"received signal {signum}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _stdout_reserved_for_json(json_output: bool) -> Iterator[None]:
    """With ``--json``, send whatever the work prints (project code, libraries) to stderr: stdout is the JSON only."""
    if not json_output:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _train(args: argparse.Namespace) -> CommandResult:
    from airflow_kedro_mlflow.execution.commands import run_started_line
    from airflow_kedro_mlflow.execution.versions import check_supported_versions
    from airflow_kedro_mlflow.kedro_project import KedroRunSpec
    from airflow_kedro_mlflow.training import run_training

    check_supported_versions()
    tracking = tracking_config(args.tracking_uri, args.registry_uri, ui_url=args.ui_url)
    spec = KedroRunSpec(
        args.project_path or ".",
        args.pipeline_name,
        env=args.env,
        conf_source=args.conf_source,
        runtime_params=_runtime_params(args),
    )

    def announce(run_id: str, run_url: str | None) -> None:
        # One machine-readable line as soon as the run exists: the worker running this command links to the run,
        # and marks it FAILED should this process die without ending it.
        sys.stderr.write(run_started_line(run_id, run_url) + "\n")
        sys.stderr.flush()

    result = run_training(
        spec,
        tracking=tracking,
        experiment_name=args.experiment_name,
        run_name=args.run_name,
        run_id=args.run_id,
        mlflow_tags=_parse_key_values(args.mlflow_tags, "--tag") or None,
        parent_run_tags=_parse_key_values(args.parent_run_tags, "--parent-run-tag") or None,
        runner=args.runner,
        tags=_joined(args.tags),
        node_names=_joined(args.node_names),
        from_nodes=_joined(args.from_nodes),
        to_nodes=_joined(args.to_nodes),
        load_versions=_json_object(args.load_versions_json, "--load-versions-json"),
        params_options=_params_options(args),
        on_run_start=announce,
    )
    lines = [
        f"Trained pipeline {result.pipeline_name!r} in MLflow run {result.run_id} (experiment {result.experiment_id}); "
        f"{len(result.artifacts)} inference artifact(s) recorded"
    ]
    if result.run_url:
        lines.append(f"Run: {result.run_url}")
    return result.to_xcom(), "\n".join(lines)


def _modelify(args: argparse.Namespace) -> CommandResult:
    from airflow_kedro_mlflow.execution.versions import check_supported_versions
    from airflow_kedro_mlflow.modelify import modelify

    training = _training_result(args.training_result)
    if args.pipeline_name is None and training is None:
        raise CliUsageError(
            "the following arguments are required: --pipeline (or --training-result, a training result file)"
        )
    check_supported_versions()
    tracking = tracking_config(args.tracking_uri, args.registry_uri, ui_url=args.ui_url)
    result = modelify(
        args.project_path or (None if training is not None else "."),
        args.pipeline_name,
        tracking=tracking,
        env=args.env,
        conf_source=args.conf_source,
        runtime_params=_runtime_params(args) or None,
        training=training,
        idempotency_key=_parse_key_values(args.idempotency_key, "--idempotency-key") or None,
        input_name=args.input_name,
        run_id=args.run_id,
        run_name=args.run_name,
        experiment_name=args.experiment_name,
        registered_model_name=args.registered_model_name,
        aliases=args.aliases,
        copy_mode=_parse_copy_mode(args.copy_mode),
        log_model_kwargs=_log_model_kwargs(args),
        mlflow_tags=_parse_key_values(args.mlflow_tags, "--tag") or None,
    )
    lines = [f"Logged model {result.model_uri} in MLflow run {result.run_id}"]
    if result.registered_model_name:
        aliases = f" (aliases: {', '.join(result.aliases)})" if result.aliases else ""
        lines.append(f"Registered {result.registered_model_name!r} version {result.version}{aliases}")
    if result.run_url:
        lines.append(f"Run: {result.run_url}")
    if result.model_version_url:
        lines.append(f"Model version: {result.model_version_url}")
    return result.to_xcom(), "\n".join(lines)


def _promote(args: argparse.Namespace) -> CommandResult:
    from airflow_kedro_mlflow.promotion import promote

    decision = promote(
        args.registered_model_name,
        args.version,
        metric=args.metric,
        tracking=tracking_config(args.tracking_uri, args.registry_uri, ui_url=args.ui_url),
        alias=args.alias,
        greater_is_better=args.greater_is_better,
    )
    summary = (
        f"{decision.decision}: {decision.registered_model_name!r} version {decision.version}, "
        f"alias {decision.alias!r}: {decision.reason}"
    )
    return decision.to_xcom(), summary


def _score(args: argparse.Namespace) -> CommandResult:
    from airflow_kedro_mlflow.scoring import DatasetLocation, PathLocation, score_batch

    def location(path: str | None, dataset: str | None, format: str | None) -> PathLocation | DatasetLocation:
        if path is not None:
            return PathLocation(path, format)
        if not args.project_path:
            raise CliUsageError("--input-dataset/--output-dataset need --project-path (the Kedro project)")
        return DatasetLocation(str(dataset), args.project_path, env=args.env, conf_source=args.conf_source)

    result = score_batch(
        args.model_uri,
        location(args.input_path, args.input_dataset, args.input_format),
        location(args.output_path, args.output_dataset, args.output_format),
        tracking=tracking_config(args.tracking_uri, args.registry_uri, ui_url=args.ui_url),
        engine=args.engine,
        chunk_size=args.chunk_size,
        params=_json_object(args.predict_params_json, "--predict-params-json"),
        task_identity=_parse_key_values(args.task_identity, "--task-identity") or None,
        overwrite=args.overwrite,
        spark_master=args.spark_master,
        spark_result_type=args.spark_result_type,
    )
    summary = (
        f"Scored {result.rows} rows with {result.model_uri} (from {result.requested_model_uri}) into {result.output}"
    )
    return result.to_xcom(), summary


_COMMANDS: dict[str, Callable[[argparse.Namespace], CommandResult]] = {
    "train": _train,
    "modelify": _modelify,
    "promote": _promote,
    "score": _score,
}


def tracking_config(tracking_uri: str | None, registry_uri: str | None, ui_url: str | None = None) -> TrackingConfig:
    """Build a command's :class:`~airflow_kedro_mlflow.tracking.TrackingConfig` from its flags and MLflow's env.

    The flags override ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI``; the rest (credentials, TLS, HTTP timeout
    and retries) is read by ``TrackingConfig.from_env``, the one reader of MLflow's variables, which also applies
    the package's fail-fast :data:`~airflow_kedro_mlflow.tracking.DEFAULT_MAX_RETRIES` unless
    ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` is set: with MLflow's own default a server that is down would keep the
    command waiting for about four minutes.

    The credential variables are removed from the environment once read: the config holds them in memory, and
    nothing this process starts afterwards (``git``, a node's subprocess, a model's environment check) inherits them.

    :raises MlflowConnectionError: neither ``--tracking-uri`` nor ``MLFLOW_TRACKING_URI`` is given.
    """
    from airflow_kedro_mlflow.tracking import TrackingConfig

    if not (tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")).strip():
        raise MlflowConnectionError(
            "no MLflow tracking server given: pass --tracking-uri (e.g. http://127.0.0.1:5000 or "
            "sqlite:////abs/path/mlflow.db) or set MLFLOW_TRACKING_URI. MLflow's implicit ./mlflow.db is not used."
        )
    config = TrackingConfig.from_env(tracking_uri=tracking_uri, registry_uri=registry_uri)
    for name in _CREDENTIAL_VARIABLES:
        os.environ.pop(name, None)
    return dataclasses.replace(config, ui_url=ui_url) if ui_url else config


#: MLflow's credential variables: read into the command's TrackingConfig, then removed from its environment.
_CREDENTIAL_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


def _runtime_params(args: argparse.Namespace) -> dict[str, Any]:
    """``--runtime-params-json`` (typed) with the ``--params`` items on top, nested keys merged."""
    params = _json_object(args.runtime_params_json, "--runtime-params-json") or {}
    return _merged(params, parse_params(args.runtime_params))


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def _params_options(args: argparse.Namespace) -> dict[str, str] | None:
    """``--params-shape``/``--long-params-strategy`` as ``run_training``'s ``params_options``; the ones not given are
    left out, so the project's ``conf/<env>/airflow_kedro_mlflow.yml`` still applies to them."""
    given = {"shape": args.params_shape, "long_params_strategy": args.long_params_strategy}
    return {key: value for key, value in given.items() if value is not None} or None


def _json_object(value: str | None, flag: str) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise CliUsageError(f"{flag} {value!r} is not valid JSON: {exc.msg}") from exc
    if not isinstance(parsed, dict):
        raise CliUsageError(f"{flag} must be a JSON object, got {type(parsed).__name__}: {value!r}")
    return parsed


def _joined(values: Sequence[str] | None) -> list[str] | None:
    """Repeated and comma-separated names (``--tags a,b --tags c``) as one list, None when not given."""
    if not values:
        return None
    return [name.strip() for value in values for name in value.split(",") if name.strip()] or None


def _training_result(path: str | None) -> TrainingResult | None:
    """The training result file of ``--training-result``, checked key by key as an XCom is."""
    if path is None:
        return None
    from airflow_kedro_mlflow.training_result import TrainingResult

    file = Path(path)
    if not file.is_file():
        raise CliUsageError(f"--training-result {path} does not exist; pass the file `train --output` wrote")
    return TrainingResult.from_xcom(file.read_text(encoding="utf-8"))


def parse_params(values: Sequence[str]) -> dict[str, Any]:
    """Parse ``--params`` as ``kedro run --params`` does: ``a=1,b.c=x`` -> ``{"a": 1, "b": {"c": "x"}}``.

    Values are YAML scalars (``1`` is an int, ``0.5`` a float, ``true`` a bool, anything else a string), so the
    pipeline receives the same types as from ``kedro run``.
    """
    import yaml

    params: dict[str, Any] = {}
    for value in values:
        for item in filter(None, (part.strip() for part in value.split(","))):
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise CliUsageError(f"--params item {item!r} is not KEY=VALUE; write e.g. --params C=0.5,threshold=0.7")
            try:
                parsed = yaml.safe_load(raw.strip()) if raw.strip() else ""
            except yaml.YAMLError:
                parsed = raw.strip()
            target = params
            *parents, leaf = key.split(".")
            for parent in parents:
                target = target.setdefault(parent, {})
                if not isinstance(target, dict):
                    raise CliUsageError(f"--params key {key!r} nests under {parent!r}, which is already a value")
            target[leaf] = parsed
    return params


def _parse_key_values(values: Sequence[str], flag: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliUsageError(f"{flag} {item!r} is not KEY=VALUE; write e.g. {flag} team=fraud")
        result[key.strip()] = value
    return result


def _parse_copy_mode(value: str | None) -> str | dict[str, str] | None:
    if value is None or not value.lstrip().startswith("{"):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise CliUsageError(f"--copy-mode {value!r} is not valid JSON: {exc.msg}") from exc
    if not isinstance(parsed, dict):
        raise CliUsageError("--copy-mode JSON must be an object {dataset: mode}")
    return parsed


def _requirements(values: list[str] | None, flag: str) -> str | list[str] | None:
    """A single existing file is passed as a path (MLflow reads it); anything else is a list of requirements."""
    if not values:
        return None
    if len(values) == 1 and Path(values[0]).is_file():
        return str(Path(values[0]).resolve())
    files = [value for value in values if Path(value).is_file()]
    if files:
        raise CliUsageError(f"{flag} takes either one requirements file or requirement strings, not both: {files}")
    return list(values)


def _metadata(values: Sequence[str]) -> dict[str, Any] | None:
    if not values:
        return None
    if len(values) == 1 and values[0].lstrip().startswith("{"):
        try:
            parsed = json.loads(values[0])
        except json.JSONDecodeError as exc:
            raise CliUsageError(f"--metadata {values[0]!r} is not valid JSON: {exc.msg}") from exc
        if not isinstance(parsed, dict):
            raise CliUsageError("--metadata JSON must be an object")
        return parsed
    return dict(_parse_key_values(values, "--metadata"))


def _input_example(path: str | None) -> Any:
    if path is None:
        return None
    file = Path(path)
    if not file.is_file():
        raise CliUsageError(f"--input-example {path} does not exist; pass a .csv, .json or .parquet file")
    import pandas as pd

    suffix = file.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(file)
    if suffix == ".parquet":
        return pd.read_parquet(file)
    if suffix == ".json":
        data = json.loads(file.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "dataframe_split" in data:
            return pd.DataFrame(**data["dataframe_split"])
        if isinstance(data, dict) and "dataframe_records" in data:
            return pd.DataFrame(data["dataframe_records"])
        return pd.DataFrame(data) if isinstance(data, list) else data
    raise CliUsageError(f"--input-example {path}: unsupported file type {suffix!r}; use .csv, .json or .parquet")


def _log_model_kwargs(args: argparse.Namespace) -> dict[str, Any] | None:
    """Only the flags the user gave: an empty result keeps the PipelineML's own ``log_model_kwargs``."""
    given = [flag for flag, value in (("--conda-env", args.conda_env), ("--pip-requirements", args.pip_requirements),
                                      ("--extra-pip-requirements", args.extra_pip_requirements)) if value]  # fmt: skip
    if len(given) > 1:
        raise CliUsageError(
            f"{' and '.join(given)} exclude each other: --extra-pip-requirements adds to the pinned defaults, "
            "--pip-requirements or --conda-env replace them"
        )
    base = _json_object(args.log_model_kwargs_json, "--log-model-kwargs-json") or {}
    kwargs: dict[str, Any] = {
        "name": args.model_name,
        "pip_requirements": _requirements(args.pip_requirements, "--pip-requirements"),
        "extra_pip_requirements": _requirements(args.extra_pip_requirements, "--extra-pip-requirements"),
        "code_paths": [str(Path(p).resolve()) for p in args.code_paths] if args.code_paths else None,
        "conda_env": str(Path(args.conda_env).resolve()) if args.conda_env else None,
        "input_example": _input_example(args.input_example),
        "metadata": _metadata(args.metadata),
    }
    if args.signature == "none":
        kwargs["signature"] = None
    kwargs = {key: value for key, value in kwargs.items() if value is not None or key == "signature"}
    return {**base, **kwargs} or None


def _configure_logging(quiet: bool) -> None:
    """Progress lines of this package on stderr; quiet keeps warnings only."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    package_logger = logging.getLogger("airflow_kedro_mlflow")
    if not package_logger.handlers:
        package_logger.addHandler(handler)
    package_logger.setLevel(logging.WARNING if quiet else logging.INFO)


def _describe(exc: BaseException, tracking_uri: str | None) -> str:
    """One line: the error class (or "MLflow") and its message, plus the server's URI when a raw MLflow or network
    error does not say which server it was talking to (the package's own errors always do)."""
    if isinstance(exc, AirflowKedroMlflowError):
        return f"{type(exc).__name__}: {_one_line(exc)}"
    from mlflow.exceptions import MlflowException
    from requests import RequestException

    origin = "MLflow" if isinstance(exc, MlflowException) else type(exc).__name__
    talking_to_server = isinstance(exc, MlflowException | ConnectionError | RequestException)
    server = ""
    if talking_to_server and tracking_uri and tracking_uri not in str(exc):
        server = f" (MLflow tracking server: {tracking_uri})"
    return f"{origin}: {_one_line(exc)}{server}"


def _public_tracking_uri(args: argparse.Namespace) -> str | None:
    """The tracking URI the command used, without ``user:password@`` (it goes into an error message)."""
    from airflow_kedro_mlflow.tracking import strip_userinfo

    uri = getattr(args, "tracking_uri", None) or os.environ.get("MLFLOW_TRACKING_URI")
    return strip_userinfo(uri) if uri else None


def _one_line(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return " ".join(str(message).split())


if __name__ == "__main__":
    sys.exit(main())
