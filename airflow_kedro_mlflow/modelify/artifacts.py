"""The artifacts a training task produced, as modelify gets them: from the training run, checked by sha256.

The training XCom is not a trusted input: anyone who can trigger, clear or edit task instances can change it. It may
say *which* training run to build from; what that run produced, and what each file hashes to, comes from the run's
own ``kedro_artifacts/manifest.json``. A local file is used only where this project's catalog keeps that dataset
(same project, env and runtime params) and when it hashes as the manifest says; anything else is downloaded from the
run. So an XCom can never make modelify read (and upload into a model) an arbitrary file of the worker.

It also decides which ``params:`` values modelify's own runtime params change (:func:`parameters_from_session`).
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from airflow_kedro_mlflow.exceptions import ArtifactIntegrityError, ArtifactNotFoundError, KedroProjectError
from airflow_kedro_mlflow.training_result import ARTIFACTS_FOLDER, MANIFEST_PATH

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline

    from airflow_kedro_mlflow.training_result import TrainingResult

logger = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ManifestEntry:
    """One artifact as the training run recorded it: its file under ``kedro_artifacts/`` and its sha256."""

    file: str
    sha256: str


def read_manifest(run_id: str) -> dict[str, ManifestEntry]:
    """Return ``{artifact name: ManifestEntry}`` from the training run's ``kedro_artifacts/manifest.json``.

    :raises ArtifactNotFoundError: the run has no manifest (it was not made by run_training).
    :raises ArtifactIntegrityError: the manifest is not what run_training writes.
    """
    import mlflow

    client = mlflow.MlflowClient()
    listed = {artifact.path for artifact in client.list_artifacts(run_id, ARTIFACTS_FOLDER)}
    if MANIFEST_PATH not in listed:
        raise ArtifactNotFoundError(
            f"MLflow run {run_id} has no {MANIFEST_PATH}, so modelify cannot tell which artifacts it produced nor "
            "check them. The run was not made by run_training / KedroTrainingOperator (or by a version of "
            "airflow-kedro-mlflow older than the manifest): point modelify at a training task's run, or re-run "
            "the training task."
        )
    with tempfile.TemporaryDirectory(prefix="akm-manifest-") as folder:
        local = client.download_artifacts(run_id, MANIFEST_PATH, folder)
        try:
            raw = json.loads(Path(local).read_text(encoding="utf-8"))
        except ValueError as exc:
            raise _bad_manifest(run_id, f"it is not JSON ({exc})") from exc
    if not isinstance(raw, Mapping):
        raise _bad_manifest(run_id, f"it is a {type(raw).__name__}, not a dict")
    manifest = {}
    for name, entry in raw.items():
        checked = _manifest_entry(entry)
        if checked is None:
            raise _bad_manifest(run_id, f"its entry {name!r} is {entry!r}")
        manifest[str(name)] = checked
    return manifest


def _manifest_entry(entry: Any) -> ManifestEntry | None:
    """The entry when its file is a relative path inside ``kedro_artifacts/`` and its sha256 one, else None."""
    if not isinstance(entry, Mapping):
        return None
    file, sha256 = entry.get("file"), entry.get("sha256")
    if not isinstance(file, str) or not isinstance(sha256, str) or not _SHA256.match(sha256):
        return None
    parts = PurePosixPath(file).parts
    if not parts or file.startswith("/") or ".." in parts:
        return None
    return ManifestEntry(file=file, sha256=sha256)


def _bad_manifest(run_id: str, why: str) -> ArtifactIntegrityError:
    return ArtifactIntegrityError(
        f"{MANIFEST_PATH} of MLflow run {run_id} is not what run_training writes ({why}): the run's artifacts "
        "cannot be trusted. Re-run the training task."
    )


def resolve_training_artifacts(
    training: TrainingResult, download_dir: str | Path, catalog: CatalogProtocol | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """Return ``({name: local path}, {name: sha256})`` for every artifact the training run recorded.

    The names and hashes are the run's manifest's; the XCom's hashes must agree with it. An artifact's local file
    (the XCom's ``path``) is used only when it is the file ``catalog`` (the session modelify opened) resolves that
    dataset to, and it hashes as the manifest says; otherwise, and always for ``params:`` values, the run's copy is
    downloaded into ``download_dir`` and checked. The XCom's ``uri`` is never used.

    :param catalog: the catalog of the project's session; without one, every artifact is downloaded.
    :raises ArtifactNotFoundError: the run has no manifest, or a download failed.
    :raises ArtifactIntegrityError: the XCom disagrees with the manifest, or the run's copy was modified.
    """
    run_id = training.run_id
    manifest = read_manifest(run_id)
    _check_xcom_against(manifest, training)
    paths: dict[str, str] = {}
    for name in sorted(manifest):
        entry = manifest[name]
        record = training.artifacts.get(name)
        local = _trusted_local_file(name, record.path if record else None, entry.sha256, catalog)
        paths[name] = str(local) if local is not None else _download(run_id, name, entry, Path(download_dir))
    return paths, {name: entry.sha256 for name, entry in manifest.items()}


def _check_xcom_against(manifest: Mapping[str, ManifestEntry], training: TrainingResult) -> None:
    """The XCom may choose the run, not disagree with it: its names and hashes must be the manifest's."""
    extra = sorted(set(training.artifacts) - set(manifest))
    if extra:
        raise ArtifactIntegrityError(
            f"The training XCom lists artifact(s) {extra} that MLflow run {training.run_id} did not record (its "
            f"manifest has {sorted(manifest)}): the XCom does not describe this run. Pass the unmodified result "
            "of the training task that made the run, or re-run it."
        )
    for name, record in sorted(training.artifacts.items()):
        if record.sha256 != manifest[name].sha256:
            raise ArtifactIntegrityError(
                f"The training XCom says artifact {name!r} has sha256 {record.sha256}, but MLflow run "
                f"{training.run_id} recorded {manifest[name].sha256} in its manifest: the XCom does not describe "
                "this run (edited, or taken from another run). Pass the unmodified result of the training task "
                "that made the run, or re-run it."
            )


def _trusted_local_file(name: str, path: str | None, sha256: str, catalog: CatalogProtocol | None) -> Path | None:
    """``path`` resolved when it is where the catalog keeps ``name`` and hashes to ``sha256``; else None (logged)."""
    from airflow_kedro_mlflow.model import sha256_path

    if not path or name.startswith("params:"):  # parameter files are temporary at training: always the run's copy
        return None
    why_not = _outside_catalog(name, Path(path), catalog)
    if why_not is not None:
        logger.info("Artifact %r: not using %s from the training XCom: %s. Downloading the run's copy.", name, path,
                    why_not)  # fmt: skip
        return None
    local = Path(path).resolve()
    if not local.exists():
        logger.info("Artifact %r: %s is not on this machine; downloading the training run's copy.", name, local)
        return None
    actual = sha256_path(local)
    if actual != sha256:
        logger.warning(
            "Artifact %r: %s has sha256 %s, not the %s the training run recorded (changed since training, or "
            "overwritten by another run). Downloading the run's copy instead.",
            name,
            local,
            actual,
            sha256,
        )
        return None
    return local


def _outside_catalog(name: str, path: Path, catalog: CatalogProtocol | None) -> str | None:
    """Why ``path`` is not the file this project's catalog loads ``name`` from (None when it is).

    For a versioned dataset every version counts: ``<filepath>/<version>/<basename>``, the version one path component.
    Both sides are resolved first, so ``..`` and symlinks cannot lead outside the dataset's folder.
    """
    from kedro.io.core import get_protocol_and_path

    from airflow_kedro_mlflow.model.artifacts import LOCAL_PROTOCOLS, artifact_dataset_config

    if catalog is None:
        return "no catalog to check it against"
    try:
        config = artifact_dataset_config(name, catalog)
    except ArtifactNotFoundError as exc:
        return f"this project's catalog has no file for it ({exc})"
    filepath = config.get("filepath", config.get("path"))
    if not isinstance(filepath, str):
        return "its dataset in this project's catalog is not file-based"
    protocol, raw_path = get_protocol_and_path(filepath)
    if protocol not in LOCAL_PROTOCOLS:
        return f"this project's catalog keeps it remotely ({protocol}://)"
    expected = Path(raw_path).resolve()
    candidate = path.resolve()
    if config.get("versioned"):
        matches = candidate.name == expected.name and candidate.parent.parent == expected
        pattern = f"{expected}/<version>/{expected.name}"
    else:
        matches = candidate == expected
        pattern = str(expected)
    if matches:
        return None
    return f"it is not the file this project's catalog resolves {name!r} to ({pattern}; it resolves to {candidate})"


def _download(run_id: str, name: str, entry: ManifestEntry, download_dir: Path) -> str:
    """Download ``runs:/<run_id>/kedro_artifacts/<file>`` and check it against the manifest's sha256."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from airflow_kedro_mlflow.model import sha256_path

    uri = f"runs:/{run_id}/{ARTIFACTS_FOLDER}/{entry.file}"
    target = download_dir / _safe_dir_name(name)
    target.mkdir(parents=True, exist_ok=True)
    logger.info("Artifact %r: downloading %s", name, uri)
    try:
        downloaded = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(target))
    except MlflowException as exc:
        raise ArtifactNotFoundError(
            f"artifact {name!r}: downloading {uri} from MLflow failed: {exc.message}. Check that training run "
            f"{run_id} still has it, or re-run the training task."
        ) from exc
    actual = sha256_path(downloaded)
    if actual != entry.sha256:
        raise ArtifactIntegrityError(
            f"artifact {name!r} downloaded from {uri} has sha256 {actual}, but MLflow run {run_id} recorded "
            f"{entry.sha256} in its manifest: the stored copy was modified after training. Re-run the training task."
        )
    return str(downloaded)


def _safe_dir_name(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name)


def parameters_from_session(
    *,
    inference_params: set[str],
    training_pipeline: Pipeline,
    artifact_names: list[str],
    runtime_params: Mapping[str, Any],
    trained_params: tuple[Mapping[str, Any], Mapping[str, Any]],
    run_id: str,
) -> set[str]:
    """Return the ``params:`` artifacts that modelify's ``runtime_params`` change: the model takes them from the
    session modelify opened instead of the training run's copy.

    A param that training used to make an artifact the model ships (``C`` for the classifier) cannot change
    without training again: that is refused. One the inference pipeline reads (``threshold``) is applied, with a
    warning when training also read it (its metrics were computed with the old value).

    :param inference_params: the inference pipeline's ``params:`` inputs.
    :param trained_params: what training used: its runtime params, then the project's parameters (looked up in
        this order, as Kedro merges them).
    :raises KedroProjectError: a changed param was used by training to produce an artifact of the model.
    """
    changed = {}
    for key, value in _flatten(runtime_params).items():
        old = next((found for found in (_lookup(p, key) for p in trained_params) if found is not _MISSING), _MISSING)
        if old != value:
            changed[key] = (value, old)
    if not changed:
        return set()
    outputs = training_pipeline.all_outputs()
    makers = {name: _parameter_inputs(training_pipeline.to_outputs(name)) for name in artifact_names if name in outputs}
    for key, (value, old) in sorted(changed.items()):
        made = sorted(artifact for artifact, params in makers.items() if any(_affects(key, p) for p in params))
        if made:
            raise KedroProjectError(
                f"runtime param {key!r}={value!r} was used by training run {run_id} (with {_shown(old)}) to produce "
                f"{made}: the model would ship artifacts made with the old value. Re-run training with the new "
                f"value ({key}={value!r}), or drop {key!r} from modelify's runtime_params."
            )
    read_by_training = _parameter_inputs(training_pipeline)
    applied = set()
    for name in sorted(inference_params):
        keys = sorted(key for key in changed if _affects(key, name))
        if not keys:
            continue
        applied.add(name)
        given = ", ".join(f"{key}={changed[key][0]!r}" for key in keys)
        logger.info("%s: the model ships modelify's runtime params (%s), not training run %s's value.", name, given,
                    run_id)  # fmt: skip
        if name in read_by_training:
            logger.warning(
                "%s, changed by modelify's runtime params (%s), was also read by training run %s with %s: the run's "
                "metrics describe the old value. Compare models on metrics of a run trained with the new value.",
                name,
                given,
                run_id,
                ", ".join(f"{key}={_shown(changed[key][1])}" for key in keys),
            )
    return applied


_MISSING = object()


def _shown(value: Any) -> str:
    return "no value" if value is _MISSING else repr(value)


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"threshold": 0.7}}`` -> ``{"model.threshold": 0.7}``: leaves by dotted key."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _lookup(params: Mapping[str, Any], dotted: str) -> Any:
    value: Any = params
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _affects(key: str, dataset: str) -> bool:
    """Whether changing the dotted param ``key`` changes the dataset ``params:<name>`` (or ``parameters``)."""
    if dataset == "parameters":
        return True
    name = dataset.removeprefix("params:")
    return key == name or key.startswith(f"{name}.") or name.startswith(f"{key}.")


def _parameter_inputs(pipeline: Pipeline) -> set[str]:
    return {name for name in pipeline.inputs() if name == "parameters" or name.startswith("params:")}
