"""Where a scored table comes from and goes to: an fsspec path with a format, or a Kedro catalog dataset.

Inputs are read as an iterator of pandas DataFrames of at most ``chunk_size`` rows, so a table larger than memory is
scored with bounded memory: parquet through ``pyarrow.parquet.ParquetFile.iter_batches``, row group by row group and
file by file for a directory (memory holds one row group and one chunk), CSV and JSON lines through pandas'
``chunksize``. A Kedro dataset is loaded through its catalog; one whose load returns an iterator of DataFrames
(``pandas.CSVDataset`` with ``load_args: {chunksize: N}``) is read chunk by chunk too. An output given as a Kedro
dataset is written to the file its catalog entry names (an unversioned pandas parquet or CSV dataset), by the same
chunked, atomic writer as a path (:mod:`.output`).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_kedro_mlflow.exceptions import ScoringInputError, ScoringOutputError

if TYPE_CHECKING:
    import pandas as pd

#: Formats a path may have, and the file suffixes that imply them.
FORMATS = ("parquet", "csv", "jsonl")
_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
#: Kedro dataset types an output may be (their file is written directly, chunk by chunk), by format.
_KEDRO_OUTPUT_TYPES = {
    "pandas.ParquetDataset": "parquet",
    "pandas.CSVDataset": "csv",
    "kedro_datasets.pandas.ParquetDataset": "parquet",
    "kedro_datasets.pandas.CSVDataset": "csv",
}


@dataclass(frozen=True)
class PathLocation:
    """A table at an fsspec path or URL (``/data/x.parquet``, ``s3://bucket/x.csv``) in one of :data:`FORMATS`.

    :param path: the file (or, for parquet input, a directory of parquet files).
    :param format: ``parquet``, ``csv`` or ``jsonl``; inferred from the suffix when None.
    :param storage_options: fsspec filesystem options (e.g. credentials of an object store).
    :raises ScoringInputError: no path, or a format that is neither given nor implied by the suffix.
    """

    path: str
    format: str | None = None
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path.strip():
            raise ScoringInputError(f"path must be a non-empty string, got {self.path!r}.")
        object.__setattr__(self, "format", checked_format(self.format, self.path))
        object.__setattr__(self, "storage_options", dict(self.storage_options or {}))

    def describe(self) -> str:
        """The location for messages and XCom."""
        return self.path


@dataclass(frozen=True)
class DatasetLocation:
    """A dataset of a Kedro project's catalog, in the configuration env given.

    :param dataset: catalog name, e.g. ``instances``.
    :param project_path: Kedro project root as this machine sees it.
    :param env: Kedro configuration environment (``KEDRO_ENV`` or the project's default when None).
    :param conf_source: configuration folder or archive instead of the project's ``conf/``.
    :param runtime_params: runtime params the catalog reads (``${runtime_params:data_dir}``).
    """

    dataset: str
    project_path: str
    env: str | None = None
    conf_source: str | None = None
    runtime_params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ScoringInputError(f"dataset must be a non-empty catalog name, got {self.dataset!r}.")
        object.__setattr__(self, "project_path", os.fspath(self.project_path))
        object.__setattr__(self, "runtime_params", dict(self.runtime_params or {}))

    def describe(self) -> str:
        """The location for messages and XCom."""
        return f"dataset {self.dataset!r} of Kedro project {self.project_path}"

    @contextmanager
    def catalog(self) -> Iterator[Any]:
        """The project's catalog (a Kedro session stays open for the block: a chunked load reads inside it)."""
        from airflow_kedro_mlflow.kedro_project import KedroRunSpec

        spec = KedroRunSpec(
            self.project_path, env=self.env, conf_source=self.conf_source, runtime_params=self.runtime_params
        )
        with spec.session() as session:
            catalog = session.load_context().catalog
            if self.dataset not in catalog:
                known = sorted(catalog.keys())
                matches = difflib.get_close_matches(self.dataset, known)
                hint = f" Did you mean {' or '.join(repr(m) for m in matches)}?" if matches else ""
                raise ScoringInputError(
                    f"Kedro project {self.project_path} has no dataset {self.dataset!r} in its catalog (env "
                    f"{self.env or 'default'}).{hint} Known datasets: {known}."
                )
            yield catalog


Location = PathLocation | DatasetLocation


def checked_format(format: str | None, path: str) -> str:
    """``format`` lower-cased and checked, or the one the suffix of ``path`` implies."""
    if format:
        normalized = format.strip().lower().replace("ndjson", "jsonl")
        if normalized not in FORMATS:
            raise ScoringInputError(f"format {format!r} of {path} is not supported; use one of {list(FORMATS)}.")
        return normalized
    suffix = os.path.splitext(path.rstrip("/"))[1].lower()
    if suffix not in _SUFFIXES:
        raise ScoringInputError(
            f"cannot tell the format of {path} from its suffix {suffix!r}; pass format= one of {list(FORMATS)}."
        )
    return _SUFFIXES[suffix]


def as_location(value: str | os.PathLike[str] | PathLocation | DatasetLocation) -> PathLocation | DatasetLocation:
    """A location as given, or a :class:`PathLocation` of a plain path (format from its suffix)."""
    if isinstance(value, PathLocation | DatasetLocation):
        return value
    return PathLocation(os.fspath(value))


@contextmanager
def read_chunks(location: PathLocation | DatasetLocation, chunk_size: int) -> Iterator[Iterator[pd.DataFrame]]:
    """Yield an iterator of DataFrames of at most ``chunk_size`` rows (a Kedro dataset's own chunks as they come).

    :raises ScoringInputError: the path does not exist, or the dataset is unknown or loads something else than
        DataFrames.
    """
    if isinstance(location, PathLocation):
        yield _path_chunks(location, chunk_size)
        return
    with location.catalog() as catalog:
        yield _dataset_chunks(location, catalog.load(location.dataset), chunk_size)


def _path_chunks(location: PathLocation, chunk_size: int) -> Iterator[pd.DataFrame]:
    import fsspec

    fs, path = fsspec.core.url_to_fs(location.path, **location.storage_options)
    if not fs.exists(path):
        raise ScoringInputError(f"input {location.path} does not exist; pass an existing {location.format} file.")
    return _formatted_chunks(fs, path, location.format or "", chunk_size)


def _formatted_chunks(fs: Any, path: str, format: str, chunk_size: int) -> Iterator[pd.DataFrame]:
    import pandas as pd

    if format == "parquet":
        import pyarrow.parquet as pq

        files = [path]
        if fs.isdir(path):
            files = sorted(
                name for name in fs.find(path) if not os.path.basename(name).startswith((".", "_"))
            )  # Spark's _SUCCESS, .crc files
        for name in files:
            with fs.open(name, "rb") as handle:
                parquet = pq.ParquetFile(handle)
                # One reader per row group: a reader over the whole file keeps memory of the row groups it has
                # read (RSS grows with the file's size), one per group stays at one group plus one batch.
                for group in range(parquet.num_row_groups):
                    for batch in parquet.iter_batches(batch_size=chunk_size, row_groups=[group]):
                        yield batch.to_pandas()
        return
    with fs.open(path, "rb") as handle:
        if format == "csv":
            reader = pd.read_csv(handle, chunksize=chunk_size)
        else:
            reader = pd.read_json(handle, lines=True, chunksize=chunk_size)
        with reader:
            yield from reader


def _dataset_chunks(location: DatasetLocation, loaded: Any, chunk_size: int) -> Iterator[pd.DataFrame]:
    import pandas as pd

    if isinstance(loaded, pd.DataFrame):
        for start in range(0, max(len(loaded), 1), chunk_size):
            yield loaded.iloc[start : start + chunk_size]
        return
    if not hasattr(loaded, "__iter__") or isinstance(loaded, str | bytes | Mapping):
        raise ScoringInputError(
            f"{location.describe()} loads a {type(loaded).__name__}, not a pandas DataFrame (or an iterator of "
            "DataFrames, as pandas.CSVDataset gives with load_args: {chunksize: N}); score a table dataset."
        )
    for chunk in loaded:
        if not isinstance(chunk, pd.DataFrame):
            raise ScoringInputError(
                f"{location.describe()} yields a {type(chunk).__name__}, not a pandas DataFrame; score a table dataset."
            )
        yield chunk


def output_path(location: PathLocation | DatasetLocation) -> PathLocation:
    """The file an output location is written to: the path itself, or the file a Kedro dataset's entry names.

    :raises ScoringOutputError: a dataset of another type than :data:`_KEDRO_OUTPUT_TYPES` (its file could not be
        written chunk by chunk and moved into place atomically), or a versioned one.
    """
    if isinstance(location, PathLocation):
        return location
    with location.catalog() as catalog:
        config, credentials, _, _ = catalog.to_config()
    entry = config.get(location.dataset, {})
    dataset_type = str(entry.get("type", ""))
    if dataset_type not in _KEDRO_OUTPUT_TYPES or entry.get("versioned"):
        supported = sorted({name.rsplit(".", 2)[-2] + "." + name.rsplit(".", 1)[-1] for name in _KEDRO_OUTPUT_TYPES})
        raise ScoringOutputError(
            f"{location.describe()} is a {'versioned ' if entry.get('versioned') else ''}{dataset_type or 'dataset'} "
            f"entry; a scoring output must be an unversioned {' or '.join(supported)} (written chunk by chunk, then "
            "moved into place), or pass an output path instead."
        )
    options = dict(entry.get("fs_args") or {})
    credential = entry.get("credentials")
    if isinstance(credential, str):
        options.update(credentials.get(credential) or {})
    elif isinstance(credential, Mapping):
        options.update(credential)
    filepath = str(entry["filepath"])
    if "://" not in filepath and not os.path.isabs(filepath):
        filepath = os.path.join(location.project_path, filepath)
    return PathLocation(filepath, _KEDRO_OUTPUT_TYPES[dataset_type], storage_options=options)
