"""Artifacts of a Kedro inference pipeline: where they are, what they hash to, how to load the packed copy.

An artifact is an inference input other than ``input_name``: a dataset training wrote (fitted model, encoder,
lookup table) or a ``params:`` value. Three things are done here and nowhere else:

- resolve a catalog dataset to the exact file it loads from (a versioned dataset's version file, not its base
  directory; a remote fsspec path fetched to a local folder, since MLflow logs local files);
- hash a file or directory (:func:`sha256_path`), so a model refuses artifacts changed after training;
- recreate a dataset from its catalog definition pointed at the copy MLflow packed, and load it.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from kedro.io import AbstractDataset, DataCatalog, MemoryDataset
from kedro.io.core import AbstractVersionedDataset, DatasetError, get_filepath_str, get_protocol_and_path

from airflow_kedro_mlflow.exceptions import ArtifactIntegrityError, ArtifactNotFoundError, KedroPipelineModelError
from airflow_kedro_mlflow.pipeline.pipeline_ml import format_names, is_parameter, suggest

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from kedro.io import CatalogProtocol

RUN_TRAINING_FIRST = "run the training pipeline first"
LOCAL_PROTOCOLS = frozenset({"file", ""})
_CHUNK = 1 << 20
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def sha256_path(path: str | Path) -> str:
    """Return the sha256 of a file's bytes, or of a directory's sorted ``(relative path, file sha256)`` list.

    The directory form does not depend on where the directory lives, so an artifact and MLflow's copy of it hash
    the same. Each entry is hashed as ``"<posix relative path>\\0<file sha256>\\n"``.

    :raises FileNotFoundError: when ``path`` does not exist.
    """
    path = Path(path)
    if path.is_dir():
        digest = hashlib.sha256()
        files = sorted((file.relative_to(path).as_posix(), file) for file in path.rglob("*") if file.is_file())
        for relative, file in files:
            digest.update(f"{relative}\0{_file_sha256(file)}\n".encode())
        return digest.hexdigest()
    if not path.exists():
        raise FileNotFoundError(f"No such file or directory: '{path}'")
    return _file_sha256(path)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(
    name: str, path: str | Path, expected: str, recorded_by: str, *, in_logged_model: bool = False
) -> None:
    """Raise ``ArtifactIntegrityError`` when the artifact at ``path`` does not hash to ``expected``.

    :param recorded_by: who recorded ``expected`` (e.g. "training"), said in the message.
    :param in_logged_model: ``path`` is the copy packed in a logged model (load time): a missing file means the
        model is incomplete, which training cannot fix, so the advice is to log the model again.
    :raises ArtifactNotFoundError: when there is no file at ``path``.
    """
    try:
        actual = sha256_path(path)
    except FileNotFoundError as exc:
        if in_logged_model:
            raise ArtifactNotFoundError(
                f"The logged model is incomplete: artifact {name!r} is missing from it (no file at {path}). Log "
                f"and register the model again from its training run with `airflow-kedro-mlflow modelify` (or "
                f"modelify()); never delete files inside a logged model."
            ) from exc
        raise ArtifactNotFoundError(
            f"Artifact {name!r} has no file at {path}; {RUN_TRAINING_FIRST}, or fetch its files again."
        ) from exc
    if actual != expected:
        raise ArtifactIntegrityError(
            f"Artifact {name!r} at {path} has sha256 {actual}, but {recorded_by} recorded {expected}: it was "
            f"modified after training. Re-run the training pipeline to produce it again, or restore the file "
            f"training wrote."
        )


def safe_filename(name: str) -> str:
    """Turn a dataset name (``params:model.threshold``) into a portable file name (``params_model.threshold``)."""
    return _UNSAFE_FILENAME.sub("_", name).strip("_") or "artifact"


def artifact_dataset_config(name: str, catalog: CatalogProtocol) -> dict[str, Any]:
    """Return the catalog definition of artifact ``name`` without credentials, to rebuild it at load time.

    Built through the public ``DataCatalog.to_config`` on a one-dataset catalog, which splits credentials out: the
    config is pickled into the model, so it must carry no secrets (the packed copy is a local file and needs none).

    :raises ArtifactNotFoundError: when the catalog does not declare ``name``, or it is a ``MemoryDataset`` (its data
        would not outlive the training run).
    """
    dataset = catalog_dataset(name, catalog)
    if isinstance(dataset, MemoryDataset):
        raise ArtifactNotFoundError(
            f"Artifact {name!r} is a MemoryDataset, so its data disappears when the training run ends and cannot be "
            f"shipped with the model. Declare it in catalog.yml with a file-based type (e.g. "
            f"pickle.PickleDataset with a filepath) and {RUN_TRAINING_FIRST}."
        )
    config = _dataset_config(name, dataset)[0]
    config.pop("credentials", None)
    return config


def catalog_dataset(name: str, catalog: CatalogProtocol) -> AbstractDataset:
    """Return the catalog's dataset ``name`` or raise ``ArtifactNotFoundError`` naming it (with close matches)."""
    if name not in catalog:
        if is_parameter(name):
            raise ArtifactNotFoundError(
                f"Parameter {name!r}, an input of the inference pipeline, is not in the catalog. Add "
                f"{name.removeprefix('params:')!r} to parameters.yml (or pass it as a runtime param)."
                f"{suggest(name, catalog.keys())}"
            )
        raise ArtifactNotFoundError(
            f"Artifact {name!r}, an input of the inference pipeline, is not declared in the catalog."
            f"{suggest(name, catalog.keys())} Declare it in catalog.yml with a file-based type (e.g. "
            f"pickle.PickleDataset with a filepath) and {RUN_TRAINING_FIRST}."
        )
    return catalog[name]


def _dataset_config(name: str, dataset: AbstractDataset) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        configs, credentials, _, _ = DataCatalog(datasets={name: dataset}).to_config()
    except Exception as exc:
        raise KedroPipelineModelError(
            f"Cannot read the catalog definition of artifact {name!r} ({type(dataset).__name__}): {exc}. Declare it "
            f"in catalog.yml with plain values (strings, numbers, dicts) so the model can rebuild it at load time."
        ) from exc
    return configs[name], credentials


def dataset_load_path(name: str, dataset: AbstractDataset, filepath: str) -> PurePosixPath | None:
    """Return the path ``dataset`` loads from: the exact version file for a versioned dataset.

    Kedro 1.7 has no public accessor for it: ``AbstractVersionedDataset._get_load_path()`` is the method every
    versioned dataset itself calls in ``load()`` (resolving the pinned load version, else the latest existing one),
    so using it is the only way to get the very file ``catalog.load`` would read. It is wrapped here, once.

    :return: the path without protocol, or ``None`` when ``dataset`` is not versioned.
    :raises ArtifactNotFoundError: when a versioned dataset has no version saved yet.
    """
    if isinstance(dataset, AbstractVersionedDataset):
        try:
            return dataset._get_load_path()
        except DatasetError as exc:
            raise ArtifactNotFoundError(
                f"Artifact {name!r} at {filepath} has no saved version yet; {RUN_TRAINING_FIRST}."
            ) from exc
    return None


def local_artifact_path(name: str, catalog: CatalogProtocol, folder: Path) -> Path:
    """Return a local path holding exactly what artifact ``name`` loads from; remote files are copied into ``folder``.

    :raises ArtifactNotFoundError: naming the dataset and the path, when the file does not exist or the dataset is
        not file-based.
    """
    dataset = catalog_dataset(name, catalog)
    config, credentials = _dataset_config(name, dataset)
    filepath = config.get("filepath", config.get("path"))
    if isinstance(dataset, MemoryDataset) or not isinstance(filepath, str | PurePosixPath | Path):
        raise ArtifactNotFoundError(
            f"Artifact {name!r} ({type(dataset).__name__}) is not stored in a file, so it cannot be shipped with "
            f"the model. Declare it in catalog.yml with a file-based type (e.g. pickle.PickleDataset with a "
            f"filepath) and {RUN_TRAINING_FIRST}."
        )
    protocol, path = get_protocol_and_path(str(filepath))
    load_path = dataset_load_path(name, dataset, str(filepath)) or PurePosixPath(path)
    if protocol in LOCAL_PROTOCOLS:
        local = Path(str(load_path)).resolve()
        if not local.exists():
            raise ArtifactNotFoundError(
                f"Artifact {name!r} has no file at {local} yet; {RUN_TRAINING_FIRST} (it writes this file)."
            )
        return local
    return _fetch_remote(
        name, protocol=protocol, load_path=load_path, config=config, credentials=credentials, folder=folder
    )


def _fetch_remote(
    name: str,
    *,
    protocol: str,
    load_path: PurePosixPath,
    config: dict[str, Any],
    credentials: dict[str, Any],
    folder: Path,
) -> Path:
    """Copy a remote artifact to ``folder`` with the filesystem options and credentials its dataset uses."""
    import fsspec

    creds = credentials.get(config.get("credentials", ""), {}) if isinstance(config.get("credentials"), str) else {}
    fs_args = {key: value for key, value in (config.get("fs_args") or {}).items() if not key.startswith("open_args_")}
    filesystem = fsspec.filesystem(protocol, **creds, **fs_args)
    remote = get_filepath_str(load_path, protocol)
    shown = f"{protocol}://{str(load_path).lstrip('/')}"
    if not filesystem.exists(remote):
        raise ArtifactNotFoundError(f"Artifact {name!r} has no file at {shown} yet; {RUN_TRAINING_FIRST}.")
    target = folder / "artifacts" / safe_filename(name) / load_path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    filesystem.get(remote, str(target), recursive=filesystem.isdir(remote))
    return target.resolve()


def save_parameter(name: str, value: Any, folder: Path) -> Path:
    """Persist a ``params:`` value in ``folder``: JSON when it round-trips exactly (readable in the MLflow UI),
    else pickle (tuples, numpy scalars, non-string keys keep their type)."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = safe_filename(name)
    try:
        text = json.dumps(value, sort_keys=True)
        exact = _same_json_types(json.loads(text), value)
    except (TypeError, ValueError):
        exact = False
    if exact:
        path = folder / f"{stem}.json"
        path.write_text(text, encoding="utf-8")
    else:
        path = folder / f"{stem}.pkl"
        path.write_bytes(pickle.dumps(value))
    return path.resolve()


def _same_json_types(loaded: Any, original: Any) -> bool:
    if type(loaded) is not type(original):
        return False
    if isinstance(original, dict):
        return loaded.keys() == original.keys() and all(_same_json_types(loaded[k], original[k]) for k in original)
    if isinstance(original, list):
        return len(loaded) == len(original) and all(map(_same_json_types, loaded, original))
    return loaded == original


def load_parameter(path: str | Path) -> Any:
    """Load a value written by :func:`save_parameter`."""
    path = Path(path)
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    return pickle.loads(path.read_bytes())


def load_artifact(name: str, config: dict[str, Any], path: str | Path) -> Any:
    """Load artifact ``name`` from the packed copy at ``path`` with its catalog definition ``config``.

    The copy is the exact version file, so the definition is used unversioned, with its filepath replaced.
    """
    local_config = {key: value for key, value in config.items() if key not in {"versioned", "credentials"}}
    local_config["filepath" if "filepath" in config else "path"] = str(path)
    try:
        return AbstractDataset.from_config(name, local_config).load()
    except Exception as exc:
        raise KedroPipelineModelError(
            f"Cannot load artifact {name!r} from {path} with its catalog definition {config.get('type')!r}: "
            f"{exc}. Check that the packages this dataset type needs are installed where the model is loaded."
        ) from exc


def check_artifact_names(given: Iterable[str], expected: Iterable[str], what: str) -> None:
    """Raise ``KedroPipelineModelError`` when ``given`` names artifacts the pipeline does not have."""
    unknown = set(given) - set(expected)
    if unknown:
        hints = "".join(suggest(name, expected) for name in sorted(unknown))
        raise KedroPipelineModelError(
            f"{what} names {format_names(unknown)}, which are not artifacts of the inference pipeline "
            f"(its artifacts are {format_names(expected)}).{hints}"
        )


def missing_hashes(paths: Mapping[str, Any], sha256: Mapping[str, str]) -> list[str]:
    """Return the names in ``paths`` that have no recorded sha256, sorted."""
    return sorted(set(paths) - set(sha256))
