"""``score_batch``: score a table with a registered (or logged) MLflow model, chunk by chunk or on Spark.

The order of the steps is the contract: every check that can fail on bad input (the URI, the formats, the output
policy, the input's columns) runs before a row is written, so a bad call leaves nothing behind; the model URI is
resolved once, and that concrete version is the one loaded, recorded and returned.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_kedro_mlflow.exceptions import ScoringInputError, ScoringOutputError
from airflow_kedro_mlflow.scoring.model_uri import ResolvedModel, resolve_model_uri
from airflow_kedro_mlflow.scoring.output import atomic_output, check_output, publish, temporary_sibling
from airflow_kedro_mlflow.scoring.result import ScoringResult
from airflow_kedro_mlflow.scoring.sources import (
    DatasetLocation,
    PathLocation,
    as_location,
    output_path,
    read_chunks,
)

if TYPE_CHECKING:
    from airflow_kedro_mlflow.tracking import TrackingConfig

logger = logging.getLogger(__name__)

ENGINES = ("pandas", "spark")
#: Rows per chunk of the pandas engine: a few tens of MiB for a table of some tens of numeric columns.
DEFAULT_CHUNK_SIZE = 100_000


def score_batch(
    model_uri: str,
    input: str | os.PathLike[str] | PathLocation | DatasetLocation,
    output: str | os.PathLike[str] | PathLocation | DatasetLocation,
    *,
    tracking: TrackingConfig,
    engine: str = "pandas",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    params: Mapping[str, Any] | None = None,
    task_identity: Mapping[str, str] | None = None,
    overwrite: bool = False,
    spark_master: str = "local[2]",
    spark_result_type: str | None = None,
    env_manager: str = "local",
) -> ScoringResult:
    """Score ``input`` with the model at ``model_uri`` and write the input columns plus the predictions to ``output``.

    :param model_uri: ``models:/<name>@<alias>``, ``models:/<name>/<version>``, ``models:/<name>/latest``,
        ``models:/<model_id>`` or ``runs:/<run_id>/<path>``; resolved once to a concrete model.
    :param input: a path (format from its suffix), a :class:`PathLocation` or a :class:`DatasetLocation`.
    :param output: where the scored table goes; a :class:`DatasetLocation` must be an unversioned pandas parquet or
        CSV dataset (its file is written).
    :param tracking: the MLflow server (and credentials) the model comes from.
    :param engine: ``pandas`` (this process, chunk by chunk) or ``spark`` (``mlflow.pyfunc.spark_udf``).
    :param chunk_size: rows per chunk of the pandas engine: memory is bounded by a chunk, not the input's size.
    :param params: model params for ``predict`` (e.g. ``{"threshold": 0.7}``), checked by the model's signature.
    :param task_identity: lineage tags of the calling task (``airflow.dag_id``, ``airflow.dag_run_id``,
        ``airflow.task_id``, ``airflow.map_index``...): the output's owner. A retry of the same task overwrites its
        own output; see :mod:`airflow_kedro_mlflow.scoring.output` for the policy.
    :param overwrite: replace an existing output whoever wrote it.
    :param spark_master: Spark master URL of the spark engine.
    :param spark_result_type: Spark type of the model's output (e.g. ``"probability double, prediction long"``),
        needed when the model's signature has no output schema.
    :param env_manager: ``spark_udf``'s environment manager: ``local`` (this interpreter) or ``virtualenv``/``uv``.
    :raises ModelUriError: the URI resolves to no model.
    :raises ScoringInputError: unknown engine or format, missing input, missing columns (named).
    :raises ScoringOutputError: the output exists and belongs to another task (see the policy), or cannot be written.
    """
    if engine not in ENGINES:
        raise ScoringInputError(f"engine {engine!r} is not supported; use one of {list(ENGINES)}.")
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ScoringInputError(f"chunk_size must be a positive number of rows, got {chunk_size!r}.")
    source, target = as_location(input), output_path(as_location(output))
    if engine == "spark" and not isinstance(source, PathLocation):
        raise ScoringInputError(
            f"engine='spark' reads paths itself; {source.describe()} is a Kedro dataset. Pass its file path and "
            "format, or use engine='pandas'."
        )
    if isinstance(source, PathLocation) and source.path.rstrip("/") == target.path.rstrip("/"):
        raise ScoringOutputError(f"output {target.path} is the input itself; write the scores to another path.")
    check_output(target, task_identity, overwrite=overwrite)
    with tracking.activate():
        model = resolve_model_uri(model_uri, tracking.client())
    logger.info("Scoring %s with %s (resolved from %s)", source.describe(), model.model_uri, model.requested_uri)
    record = _record(model, tracking, source=source, target=target, engine=engine, task_identity=task_identity)
    if engine == "pandas":
        rows = _score_with_pandas(
            model, tracking, source=source, target=target, record=record, chunk_size=chunk_size, params=params
        )
    else:
        assert isinstance(source, PathLocation)  # refused above otherwise
        rows = _score_with_spark(
            model,
            tracking,
            source=source,
            target=target,
            record=record,
            spark_master=spark_master,
            result_type=spark_result_type,
            env_manager=env_manager,
            params=params,
        )
    logger.info("Wrote %d scored rows to %s", rows, target.path)
    return ScoringResult(
        model_uri=model.model_uri,
        requested_model_uri=model.requested_uri,
        registered_model_name=model.registered_model_name,
        version=model.version,
        run_id=model.run_id,
        rows=rows,
        input=source.describe(),
        output=target.path,
        output_format=target.format or "",
        engine=engine,
        tracking_uri=tracking.public_uri,
        model_version_url=(
            tracking.model_version_url(model.registered_model_name, model.version)
            if model.registered_model_name and model.version
            else None
        ),
    )


def _score_with_pandas(
    model: ResolvedModel,
    tracking: TrackingConfig,
    *,
    source: PathLocation | DatasetLocation,
    target: PathLocation,
    record: dict[str, Any],
    chunk_size: int,
    params: Mapping[str, Any] | None,
) -> int:
    import mlflow

    from airflow_kedro_mlflow.scoring.pandas_engine import score_chunks

    with tracking.activate():
        loaded = mlflow.pyfunc.load_model(model.model_uri)
    with read_chunks(source, chunk_size) as chunks, atomic_output(target, record) as writer:
        return score_chunks(loaded, chunks, writer, model_uri=model.model_uri, source=source.describe(), params=params)


def _score_with_spark(
    model: ResolvedModel,
    tracking: TrackingConfig,
    *,
    source: PathLocation,
    target: PathLocation,
    record: dict[str, Any],
    spark_master: str,
    result_type: str | None,
    env_manager: str,
    params: Mapping[str, Any] | None,
) -> int:
    import fsspec
    import mlflow

    from airflow_kedro_mlflow.scoring.spark_engine import score_on_spark, spark_session

    fs, path = fsspec.core.url_to_fs(target.path, **target.storage_options)
    temporary = temporary_sibling(target.path)  # a URL, as Spark writes it; the same place in fs's terms below
    temporary_path = fsspec.core.url_to_fs(temporary, **target.storage_options)[1]
    with tempfile.TemporaryDirectory(prefix="batch-scoring-") as scratch:
        with tracking.activate():  # credentials end here: Spark's JVM and workers start after the download
            local_model = mlflow.artifacts.download_artifacts(artifact_uri=model.model_uri, dst_path=scratch)
        try:
            with spark_session(spark_master) as spark:
                rows = score_on_spark(
                    spark,
                    local_model,
                    input_path=source.path,
                    input_format=source.format or "",
                    temporary_output=temporary,
                    output_format=target.format or "",
                    model_uri=model.model_uri,
                    result_type=result_type,
                    env_manager=env_manager,
                    params=dict(params) if params else None,
                )
            record["rows"] = rows
            publish(fs, temporary_path, path, record)
        except BaseException:
            if fs.exists(temporary_path):
                fs.rm(temporary_path, recursive=True)
            raise
    return rows


def _record(
    model: ResolvedModel,
    tracking: TrackingConfig,
    *,
    source: PathLocation | DatasetLocation,
    target: PathLocation,
    engine: str,
    task_identity: Mapping[str, str] | None,
) -> dict[str, Any]:
    """What the output's sidecar (and parquet metadata) record; ``rows`` is added when the writing ends."""
    return {
        **model.to_dict(),
        "tracking_uri": tracking.public_uri,
        "input": source.describe(),
        "output_format": target.format,
        "engine": engine,
        "task_identity": {str(key): str(value) for key, value in (task_identity or {}).items()},
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
