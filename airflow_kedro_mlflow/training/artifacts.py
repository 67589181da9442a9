"""The training run's inference artifacts: pinned to this run's version, uploaded to the run, hashed.

Every artifact the inference pipeline needs is uploaded to ``kedro_artifacts/<name>/`` of the run with its sha256,
so modelify can build the model on another worker without this one's disk, and refuse a file that changed. The run
also gets ``kedro_artifacts/manifest.json`` (``{name: {"file": "<folder>/<file>", "sha256": ...}}``): the training
XCom is not a trusted input, so modelify takes the list of artifacts and their hashes from the run itself.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_kedro_mlflow.exceptions import KedroProjectError, KedroRunError
from airflow_kedro_mlflow.training_result import ARTIFACTS_FOLDER, MANIFEST_PATH, ArtifactRecord

if TYPE_CHECKING:
    from kedro.framework.session import KedroSession
    from kedro.io import CatalogProtocol

    from airflow_kedro_mlflow.pipeline.pipeline_ml import PipelineMLLike
    from airflow_kedro_mlflow.tracking import TrackingConfig
    from airflow_kedro_mlflow.training.observer import RunObserver

logger = logging.getLogger(__name__)

_UNSAFE_PATH_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def record_artifacts(
    pipeline_ml: PipelineMLLike,
    observer: RunObserver,
    session: KedroSession,
    tracking: TrackingConfig,
    run_id: str,
) -> tuple[dict[str, ArtifactRecord], dict[str, Any] | None]:
    """Upload every inference artifact to the run under ``kedro_artifacts/<name>/`` and hash it; infer the signature.

    Versioned artifacts written by this run are pinned to its save version (the session id) first: "latest version"
    could otherwise be another run's file, written to the same folder while this one was running.
    """
    from airflow_kedro_mlflow.model import KedroPipelineModel, infer_model_signature

    catalog = observer.catalog
    if catalog is None:  # before_pipeline_run always runs first; a missing catalog means Kedro changed.
        raise KedroRunError(f"Kedro did not hand the run's catalog to the hooks of pipeline {pipeline_ml!r}.")
    model = KedroPipelineModel(pipeline_ml, catalog, input_name=pipeline_ml.input_name)
    _pin_versions(catalog, model.artifact_names, observer.saved, session.session_id)
    with tempfile.TemporaryDirectory(prefix="airflow-kedro-mlflow-params-") as params_folder:
        # params:* files live only until they are uploaded: modelify downloads them (they are tiny), and a
        # long-lived worker does not collect one folder per training run.
        paths = model.extract_pipeline_artifacts(parameters_saving_folder=params_folder)
        produced = set(pipeline_ml.training.all_outputs())
        records = _upload_artifacts(paths, model.artifact_sha256, catalog, tracking, run_id, produced=produced)
    input_data = observer.input_data
    if input_data is None and pipeline_ml.input_name in catalog and catalog.exists(pipeline_ml.input_name):
        input_data = catalog.load(pipeline_ml.input_name)
    if input_data is None:
        logger.warning(
            "No signature recorded: the training run neither loaded nor saved %r (the model's input) and the "
            "catalog cannot load it. Persist it in catalog.yml to get a signature inferred from the training data.",
            pipeline_ml.input_name,
        )
        return records, None
    signature = infer_model_signature(input_data, pipeline_ml.inference, catalog)
    return records, signature.to_dict()


def _upload_artifacts(
    paths: Mapping[str, str],
    hashes: Mapping[str, str],
    catalog: CatalogProtocol,
    tracking: TrackingConfig,
    run_id: str,
    *,
    produced: set[str],
) -> dict[str, ArtifactRecord]:
    """Upload each artifact to ``kedro_artifacts/<name>/`` of the run; return its path, ``runs:/`` URI and sha256."""
    from airflow_kedro_mlflow.model import sha256_path

    client = tracking.client()
    records: dict[str, ArtifactRecord] = {}
    manifest: dict[str, dict[str, str]] = {}
    used_folders: dict[str, str] = {Path(MANIFEST_PATH).name: "the run's manifest"}
    for name in sorted(paths):
        path = Path(paths[name])
        folder = _artifact_folder(name)
        if used_folders.setdefault(folder, name) != name:
            raise KedroProjectError(
                f"Artifacts {used_folders[folder]!r} and {name!r} would both be uploaded to {ARTIFACTS_FOLDER}/"
                f"{folder}/. Rename one of these catalog entries."
            )
        sha256 = hashes.get(name) or sha256_path(path)
        artifact_dir = f"{ARTIFACTS_FOLDER}/{folder}"
        if path.is_dir():
            client.log_artifacts(run_id, str(path), artifact_path=f"{artifact_dir}/{path.name}")
        else:
            client.log_artifact(run_id, str(path), artifact_path=artifact_dir)
        records[name] = ArtifactRecord(path=str(path), uri=f"runs:/{run_id}/{artifact_dir}/{path.name}", sha256=sha256)
        manifest[name] = {"file": f"{folder}/{path.name}", "sha256": sha256}
        if name in produced:  # a read-only input (a lookup file training also reads) is never overwritten by training
            _warn_if_unversioned(name, path, catalog)
        logger.info("Artifact %s: %s (sha256 %s) uploaded to %s", name, path, sha256[:12], records[name].uri)
    client.log_dict(run_id, manifest, MANIFEST_PATH)
    return records


def check_artifacts_declared(pipeline_ml: PipelineMLLike, catalog: CatalogProtocol) -> None:
    """Fail before training when an inference artifact could never be shipped (undeclared, or a MemoryDataset).

    :param catalog: the catalog of the session about to run (its context's), so the check reads what the run will.
    """
    from airflow_kedro_mlflow.model import KedroPipelineModel

    KedroPipelineModel(pipeline_ml, catalog, input_name=pipeline_ml.input_name)


def _pin_versions(catalog: Any, names: Iterable[str], saved: set[str], save_version: str) -> None:
    """Make versioned artifacts this run saved load the version this run wrote (public ``DataCatalog.get``)."""
    from kedro.io import AbstractVersionedDataset, Version

    catalog_logger = logging.getLogger("kedro.io.data_catalog")
    for name in names:
        if name not in saved:
            continue
        dataset = catalog.get(name)
        if isinstance(dataset, AbstractVersionedDataset) and _is_versioned(name, catalog):
            pinned = catalog.get(name, version=Version(save_version, save_version))
            level = catalog_logger.level
            catalog_logger.setLevel(logging.ERROR)  # Kedro warns "Replacing dataset": intended here
            try:
                catalog[name] = pinned
            finally:
                catalog_logger.setLevel(level)


def _is_versioned(name: str, catalog: CatalogProtocol) -> bool:
    from airflow_kedro_mlflow.model.artifacts import artifact_dataset_config

    return bool(artifact_dataset_config(name, catalog).get("versioned"))


def _warn_if_unversioned(name: str, path: Path, catalog: CatalogProtocol) -> None:
    if name.startswith("params:") or _is_versioned(name, catalog):
        return
    logger.warning(
        "Artifact %r (%s) is not versioned: concurrent training runs writing the same path may overwrite it. Set "
        "`versioned: true` for it in catalog.yml (the sha256 recorded here still stops a mixed-up model).",
        name,
        path,
    )


def _artifact_folder(name: str) -> str:
    """A portable folder name for a dataset name (``params:threshold`` -> ``params_threshold``)."""
    return _UNSAFE_PATH_CHARS.sub("_", name).strip("_") or "artifact"
