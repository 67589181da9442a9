"""The artifacts a training task produced, as modelify gets them: checked by sha256, wherever modelify runs."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_kedro_mlflow.exceptions import ArtifactIntegrityError, ArtifactNotFoundError

if TYPE_CHECKING:
    from airflow_kedro_mlflow.training_result import TrainingResult

logger = logging.getLogger(__name__)


def resolve_training_artifacts(
    training: TrainingResult, download_dir: str | Path, tracking_uri: str | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """Return ``({name: local path}, {name: sha256})`` for every artifact a training task recorded.

    The local file is used when it exists and its sha256 is the one training recorded (same worker, shared disk).
    When it does not exist here (another worker, a scratch dir that is gone), MLflow's copy is downloaded into
    ``download_dir`` and its hash checked. A hash that differs is an error, never a silent fallback: it means the
    file was modified (or overwritten by another run) after training.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from airflow_kedro_mlflow.model import sha256_path

    paths: dict[str, str] = {}
    hashes: dict[str, str] = {}
    for name in sorted(training.artifacts):
        record = training.artifacts[name]
        local = Path(record.path) if record.path else None
        if local is not None and local.exists():
            actual = sha256_path(local)
            if actual != record.sha256:
                raise ArtifactIntegrityError(
                    f"artifact {name!r} at {local} has sha256 {actual}, but MLflow run {training.run_id} recorded "
                    f"{record.sha256}. The file changed after training (or another run overwrote it): re-run the "
                    "training task, or pass the training result of the run that made this file."
                )
            paths[name], hashes[name] = str(local), actual
            continue
        if not record.uri:
            raise ArtifactNotFoundError(
                f"artifact {name!r}: {record.path} does not exist here and the training result has no MLflow URI "
                "to download it from. Run modelify where training wrote its files, or re-run the training task."
            )
        target = Path(download_dir) / _safe_dir_name(name)
        target.mkdir(parents=True, exist_ok=True)
        logger.info("Artifact %r is not on this machine (%s): downloading %s", name, record.path, record.uri)
        try:
            downloaded = mlflow.artifacts.download_artifacts(
                artifact_uri=record.uri, dst_path=str(target), tracking_uri=tracking_uri
            )
        except MlflowException as exc:
            raise ArtifactNotFoundError(
                f"artifact {name!r}: {record.path} does not exist here and downloading {record.uri} from MLflow "
                f"failed: {exc.message}. Check the training run {training.run_id} still has it, or re-run training."
            ) from exc
        actual = sha256_path(downloaded)
        if actual != record.sha256:
            raise ArtifactIntegrityError(
                f"artifact {name!r} downloaded from {record.uri} to {downloaded} has sha256 {actual}, but MLflow run "
                f"{training.run_id} recorded {record.sha256}. The stored copy was modified after training: re-run "
                "the training task."
            )
        paths[name], hashes[name] = str(downloaded), actual
    return paths, hashes


def _safe_dir_name(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name)
