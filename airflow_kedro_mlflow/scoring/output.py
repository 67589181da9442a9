"""Write a scored table so that it appears whole or not at all, once per task, with what produced it recorded.

An output path belongs to the task that wrote it. Next to the output, a small JSON sidecar ``.<name>.scoring.json``
(hidden: pyarrow, pandas and Spark skip dot-files when they read a folder) records the model URI, its concrete
version and source run, the row count and the task identity (``airflow.dag_id``, ``airflow.dag_run_id``,
``airflow.task_id``, ``airflow.map_index``); a parquet output carries the same record in its key-value metadata.

The policy, checked before anything is read or written:

- no output yet: write it;
- an output whose sidecar names the same task identity, try number aside (a retry, or the task cleared and run
  again): overwrite it;
- an output of another identity (an older DAG run, another task), or one without a sidecar (not written by this
  package), or a call without a task identity: refuse with :class:`ScoringOutputError`, unless ``overwrite=True``.

Rows go to a temporary sibling (``.<name>.<random>.tmp``) and the finished file is moved into place, so a killed try
never leaves a half-written output under the output's name (a SIGKILL may leave the hidden temporary; a failed or
terminated try removes it). The sidecar is written just before the move: should the task die between the two, its
retry still owns the output.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_kedro_mlflow.exceptions import ScoringOutputError
from airflow_kedro_mlflow.tracking.tags import RETRY_IDENTITY_TAGS, TRY_NUMBER_TAG

if TYPE_CHECKING:
    import pandas as pd

    from airflow_kedro_mlflow.scoring.sources import PathLocation

logger = logging.getLogger(__name__)

#: Key of the scoring record in a parquet output's key-value metadata.
PARQUET_METADATA_KEY = "airflow_kedro_mlflow.scoring"


def sidecar_path(path: str) -> str:
    """The sidecar of an output path (same folder, hidden)."""
    folder, name = posixpath.split(path.rstrip("/"))
    return posixpath.join(folder, f".{name}.scoring.json")


def read_record(location: PathLocation) -> dict[str, Any] | None:
    """The scoring record of an existing output (its sidecar), or None when it has none."""
    fs, path = _fs(location)
    sidecar = sidecar_path(path)
    if not fs.exists(sidecar):
        return None
    with fs.open(sidecar, "r", encoding="utf-8") as handle:
        record = json.load(handle)
    return record if isinstance(record, dict) else None


def check_output(location: PathLocation, task_identity: Mapping[str, str] | None, *, overwrite: bool) -> None:
    """Refuse an existing output that another task wrote, unless ``overwrite`` (see the module's policy).

    :raises ScoringOutputError: naming the output, who wrote it and how to proceed.
    """
    fs, path = _fs(location)
    if overwrite or not fs.exists(path):
        return
    record = read_record(location) or {}
    written_by = record.get("task_identity") or {}
    ours = identity(task_identity)
    if ours is not None and identity(written_by) == ours:
        logger.info("Output %s was written by an earlier try of this task: overwriting it", location.path)
        return
    if not written_by:
        owner = "it has no scoring record (it was not written by a scoring task)"
    else:
        owner = f"it was written by {_describe_identity(written_by)}"
    caller = "this call has no task identity" if ours is None else f"this is {_describe_identity(ours)}"
    raise ScoringOutputError(
        f"output {location.path} already exists and {owner}; {caller}. Batch scoring never overwrites another run's "
        "output: give each DAG run its own output path (e.g. template it with {{ ds }} or {{ run_id }}), delete the "
        "old output, or pass overwrite=True."
    )


def identity(tags: Mapping[str, Any] | None) -> dict[str, str] | None:
    """Who owns an output: the caller's task identity without the try number (a retry is the same task), or None.

    In Airflow these are :data:`RETRY_IDENTITY_TAGS` (dag id, dag run id, task id, map index); a Python or CLI caller
    may pass any keys (e.g. ``{"job": "nightly-2026-11-29"}``).
    """
    found = {str(key): str(value) for key, value in (tags or {}).items() if key != TRY_NUMBER_TAG and value is not None}
    return found or None


def _describe_identity(tags: Mapping[str, Any]) -> str:
    known = [key for key in RETRY_IDENTITY_TAGS if key in tags]
    others = sorted(key for key in tags if key not in RETRY_IDENTITY_TAGS and key != TRY_NUMBER_TAG)
    return ", ".join(f"{key}={tags[key]!r}" for key in known + others) or "an unknown task"


@dataclass
class TableWriter:
    """Appends DataFrames to one temporary file of a format; :func:`atomic_output` moves it into place."""

    fs: Any
    path: str
    format: str
    record: dict[str, Any]
    rows: int = 0
    _parquet: Any = None
    _handle: Any = None

    def write(self, frame: pd.DataFrame) -> None:
        """Append ``frame`` (the first one fixes the columns, and for parquet the schema)."""
        if self.format == "parquet":
            self._write_parquet(frame)
        else:
            if self._handle is None:
                self._handle = self.fs.open(self.path, "w", encoding="utf-8", newline="")
            if self.format == "csv":
                frame.to_csv(self._handle, index=False, header=self.rows == 0)
            else:
                frame.to_json(self._handle, orient="records", lines=True, date_format="iso")  # ends with "\n"
        self.rows += len(frame)

    def _write_parquet(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._parquet is None:
            schema = table.schema.remove_metadata()
            # Each chunk is a row group. Dictionary-encoding a float column of a chunk-sized row group never hits
            # the dictionary's size limit, so nothing falls back to plain encoding: writing costs 4x and the file
            # grows. Floats (scores, features) are written plain; other columns keep dictionaries.
            dictionary = [field.name for field in schema if not pa.types.is_floating(field.type)]
            self._handle = self.fs.open(self.path, "wb")
            self._parquet = pq.ParquetWriter(self._handle, schema, use_dictionary=dictionary or False)
        try:
            table = table.cast(self._parquet.schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
            raise ScoringOutputError(
                f"rows {self.rows}..{self.rows + len(frame) - 1} do not fit the parquet schema of the first chunk "
                f"({self._parquet.schema.to_string(show_schema_metadata=False)}): {exc}. Give the input consistent "
                "column types (e.g. a CSV column that is empty in some chunks: set its dtype in the read options)."
            ) from exc
        self._parquet.write_table(table)

    def close(self, finished: bool) -> None:
        """Close the file; when ``finished``, with the scoring record in the parquet metadata."""
        if self._parquet is not None:
            if finished:
                self._parquet.add_key_value_metadata({PARQUET_METADATA_KEY: json.dumps(self.record, sort_keys=True)})
            self._parquet.close()
        if self._handle is not None:
            self._handle.close()


@contextmanager
def atomic_output(location: PathLocation, record: dict[str, Any]) -> Iterator[TableWriter]:
    """Yield a writer on a temporary sibling of the output; on success, write the sidecar and move it into place.

    ``record`` is completed with the row count before it is written. On any error (including a termination raised
    into the task), the temporary file is removed and the output left as it was.
    """
    fs, path = _fs(location)
    folder = posixpath.dirname(path.rstrip("/"))
    if folder:
        fs.makedirs(folder, exist_ok=True)
    temporary = temporary_sibling(path)
    writer = TableWriter(fs, temporary, location.format or "", record)
    try:
        try:
            yield writer
        finally:
            record["rows"] = writer.rows
        writer.close(finished=True)
        if writer.rows == 0 and not fs.exists(temporary):
            fs.touch(temporary)  # an empty input still gives an (empty) output
        publish(fs, temporary, path, record)
    except BaseException:
        with suppress(Exception):
            writer.close(finished=False)
        with suppress(Exception):
            if fs.exists(temporary):
                fs.rm(temporary, recursive=True)
        raise


def temporary_sibling(path: str) -> str:
    """A hidden, unique name next to ``path`` (a path or a URL) to write the output under before it is published."""
    folder, name = posixpath.split(path.rstrip("/"))
    return posixpath.join(folder, f".{name}.{uuid.uuid4().hex[:12]}.tmp")


def publish(fs: Any, temporary: str, path: str, record: Mapping[str, Any]) -> None:
    """Write the sidecar, then replace ``path`` by ``temporary`` (a file or a folder, e.g. Spark's output)."""
    from fsspec.implementations.local import LocalFileSystem

    sidecar = sidecar_path(path)
    sidecar_temporary = f"{sidecar}.{uuid.uuid4().hex[:12]}.tmp"
    with fs.open(sidecar_temporary, "w", encoding="utf-8") as handle:
        json.dump(dict(record), handle, sort_keys=True, indent=2)
    _replace(fs, sidecar_temporary, sidecar, local=isinstance(fs, LocalFileSystem))
    _replace(fs, temporary, path, local=isinstance(fs, LocalFileSystem))


def _replace(fs: Any, source: str, target: str, *, local: bool) -> None:
    if local and not os.path.isdir(source) and not os.path.isdir(target):
        os.replace(source, target)  # atomic on one file system
        return
    if local:
        # A folder (Spark) cannot be swapped atomically: move the old one aside first, so the name is either the old
        # complete output or the new one, and drop the old one last.
        aside = None
        if os.path.lexists(target):
            aside = f"{target}.{uuid.uuid4().hex[:12]}.old"
            os.replace(target, aside)
        os.replace(source, target)
        if aside is not None:
            fs.rm(aside, recursive=True)
        return
    if fs.exists(target):  # object stores have no rename: copy, then delete
        fs.rm(target, recursive=True)
    fs.mv(source, target, recursive=True)


def _fs(location: PathLocation) -> tuple[Any, str]:
    import fsspec

    fs, path = fsspec.core.url_to_fs(location.path, **location.storage_options)
    return fs, path
