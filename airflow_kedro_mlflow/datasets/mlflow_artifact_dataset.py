"""``MlflowArtifactDataset``: any Kedro dataset whose saved file is also logged as an artifact of the MLflow run.

Same catalog syntax as kedro-mlflow's::

    feature_importance_plot:
      type: airflow_kedro_mlflow.datasets.MlflowArtifactDataset
      artifact_path: plots            # optional: folder in the run's artifacts
      dataset:
        type: matplotlib.MatplotlibDataset
        filepath: data/08_reporting/feature_importance.png

A save writes the file through the wrapped dataset, then logs it into ``run_id`` or the active MLflow run, under
``<artifact_path>/<file name>``. A load reads the local file; with ``run_id`` it reads the run's copy instead
(downloaded next to nothing: into a private temporary folder, so the local file is never overwritten).
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from copy import deepcopy
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError
from kedro.io.core import get_protocol_and_path

from airflow_kedro_mlflow.datasets.tracking_run import catalog_name, describe, refuse_unsupported, run_id_to_use

_LOCAL_PROTOCOLS = ("file", "")
_VALID = ("dataset", "run_id", "artifact_path", "metadata")


class MlflowArtifactDataset(AbstractDataset[Any, Any]):
    """Wrap a file-based Kedro dataset: each save is also logged as an MLflow artifact.

    :param dataset: the wrapped dataset's definition (``{type: …, filepath: …}`` as in the catalog, ``versioned``
        included), or just its type when it needs no other argument.
    :param run_id: run the file is logged into and, for loads, read from; default: the active run (loads then read
        the local file, which the run's copy equals).
    :param artifact_path: folder of the run's artifacts to log into; default: the root.
    :param metadata: free-form metadata, ignored by Kedro.
    """

    def __init__(
        self,
        *,
        dataset: str | dict[str, Any],
        run_id: str | None = None,
        artifact_path: str | None = None,
        metadata: dict[str, Any] | None = None,
        **unsupported: Any,
    ) -> None:
        refuse_unsupported("MlflowArtifactDataset", unsupported, _ALTERNATIVES, _VALID)
        config = {"type": dataset} if isinstance(dataset, str) else deepcopy(dict(dataset))
        if "type" not in config:
            raise DatasetError(
                f"MlflowArtifactDataset: dataset={dataset!r} has no 'type'; give the wrapped dataset as in the "
                "catalog, e.g. dataset: {type: pandas.CSVDataset, filepath: data/08_reporting/report.csv}."
            )
        if artifact_path is not None and (artifact_path.startswith("/") or ".." in PurePosixPath(artifact_path).parts):
            raise DatasetError(
                f"MlflowArtifactDataset: artifact_path={artifact_path!r} must be a relative folder inside the run's "
                "artifacts, e.g. 'plots'."
            )
        self._config = config
        self._dataset = AbstractDataset.from_config(f"{config['type']} wrapped by MlflowArtifactDataset", config)
        self._run_id = run_id
        self._artifact_path = artifact_path or None
        self._downloads: str | None = None
        self.metadata = metadata
        self._local_path(self._dataset, saving=False)  # refuse a dataset with no local file before any run

    def load(self) -> Any:
        """Load the wrapped dataset; with ``run_id``, from the copy logged in that run."""
        if self._run_id is None:
            return self._dataset.load()
        import mlflow
        from mlflow.exceptions import MlflowException

        label = self._label()
        run_id = run_id_to_use(label, self._run_id)
        name = self._local_path(self._dataset, saving=False).name
        artifact = f"{self._artifact_path}/{name}" if self._artifact_path else name
        target = Path(tempfile.mkdtemp(prefix="akm-artifact-", dir=self._download_folder()))
        try:
            downloaded = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=artifact, dst_path=str(target)
            )
        except (MlflowException, OSError) as exc:
            raise DatasetError(
                f"{label}: cannot download artifact {artifact!r} of MLflow run {run_id}: "
                f"{getattr(exc, 'message', None) or exc} Check run_id and artifact_path (see the run's artifacts in "
                "the MLflow UI), or save the dataset in that run first."
            ) from exc
        copy = {key: value for key, value in self._config.items() if key != "versioned"}
        copy["filepath" if "filepath" in copy else "path"] = downloaded
        return AbstractDataset.from_config(f"{label} (run {run_id})", copy).load()

    def save(self, data: Any) -> None:
        """Save through the wrapped dataset, then log the file (or folder) it wrote to the run."""
        import mlflow

        label = self._label()
        run_id = run_id_to_use(label, self._run_id)  # before writing: no file left behind for a run that is missing
        path = self._local_path(self._dataset, saving=True)
        self._dataset.save(data)
        client = mlflow.MlflowClient()
        if path.is_dir():
            folder = f"{self._artifact_path}/{path.name}" if self._artifact_path else path.name
            client.log_artifacts(run_id, str(path), artifact_path=folder)
        else:
            client.log_artifact(run_id, str(path), artifact_path=self._artifact_path)

    def _exists(self) -> bool:
        return self._dataset.exists()

    def _release(self) -> None:
        self._dataset.release()

    def _describe(self) -> dict[str, Any]:
        return {"dataset": self._config, "run_id": self._run_id, "artifact_path": self._artifact_path}

    def _label(self) -> str:
        return describe(catalog_name(self), "MlflowArtifactDataset", str(self._config.get("filepath") or ""))

    def _download_folder(self) -> str:
        """A private folder for this dataset's downloads, removed with the dataset (a lazy load may still read it)."""
        if self._downloads is None:
            self._downloads = tempfile.mkdtemp(prefix="akm-artifacts-")
            weakref.finalize(self, shutil.rmtree, self._downloads, ignore_errors=True)
        return self._downloads

    @staticmethod
    def _local_path(dataset: AbstractDataset, *, saving: bool) -> Path:
        """The local file (or folder) ``dataset`` writes: the exact version file of a versioned dataset.

        Kedro has no public accessor for it. ``_get_save_path()`` is what a versioned dataset's own ``save`` writes
        to (it must be read before the save, which then makes the version exist); datasets that are not
        versioned-capable keep it in ``_filepath`` (or ``_path`` for folders). The same private names as
        kedro-mlflow's ``MlflowArtifactDataset`` reads.
        """
        from kedro.io import AbstractVersionedDataset

        raw: Any
        if isinstance(dataset, AbstractVersionedDataset):
            raw = dataset._get_save_path() if saving else dataset._filepath
        else:
            raw = getattr(dataset, "_filepath", None) or getattr(dataset, "_path", None)
        if raw is None:
            raise DatasetError(
                f"MlflowArtifactDataset: {type(dataset).__name__} has no file path, so nothing can be logged as an "
                "artifact. Wrap a file-based dataset (with filepath), or log the value from the node with "
                "mlflow.log_dict / mlflow.log_text."
            )
        protocol = getattr(dataset, "_protocol", None) or get_protocol_and_path(str(raw))[0]
        if protocol not in _LOCAL_PROTOCOLS:
            raise DatasetError(
                f"MlflowArtifactDataset: {raw} is on {protocol!r}, not a local file; MLflow logs artifacts from local "
                "files. Wrap a dataset with a local filepath (the run's artifact store can itself be remote)."
            )
        return Path(str(raw).removeprefix("file://"))


_ALTERNATIVES = {
    "credentials": "Put the wrapped dataset's credentials inside dataset: {...}; MLflow's come from the Airflow "
    "connection or MLFLOW_TRACKING_USERNAME/PASSWORD.",
    "filepath": "Put filepath inside dataset: {type: ..., filepath: ...}, as kedro-mlflow does.",
    "versioned": "Put versioned: true inside dataset: {...}, as kedro-mlflow does.",
}
