"""Which catalog datasets a training run read and wrote, and where they live: the data lineage tools need.

The training task may run in a virtualenv or a pod, so the Airflow operator cannot look at the catalog itself: the
core collects the locations here, while the session and its catalog are at hand, and returns them in the training
result (``TrainingResult.datasets``). A dataset counts when its catalog entry has a location (``filepath`` or
``path``): ``MemoryDataset``\\ s, ``params:`` and datasets without a location are not data anyone else can find.

Locations never carry credentials: user and password are dropped from URLs (the ``container@`` of an Azure URL
is a name, not a secret, and stays), and so are query strings and fragments (SAS tokens, signed-URL signatures). A
versioned dataset keeps its base path as its location (a stable identity across runs, as OpenLineage wants it) and
its Kedro version next to it when it costs no I/O: this run's save version for what it wrote, the pinned load
version for inputs given ``load_versions``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import pluggy

from airflow_kedro_mlflow.training_result import DatasetRecord

if TYPE_CHECKING:
    from kedro.framework.session import KedroSession
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline

logger = logging.getLogger(__name__)

#: Kedro's hook marker (see ``observer.hook_impl``: no kedro import before the logging config is chosen).
hook_impl = pluggy.HookimplMarker("kedro")

#: Schemes whose ``user@`` part names a storage container rather than a user (``abfs://container@account...``).
_CONTAINER_SCHEMES = frozenset({"abfs", "abfss", "az", "wasb", "wasbs"})
_LOCATION_KEYS = ("filepath", "path")


def safe_location(location: str, project_path: str | Path) -> str:
    """Return ``location`` as an absolute local path or a URL without credentials, query string or fragment.

    :param location: a catalog entry's ``filepath``/``path`` (``data/01_raw/x.csv``, ``s3://bucket/key``...).
    :param project_path: the project root, against which a relative local path is resolved (as Kedro does).
    """
    parts = urlsplit(location)
    if len(parts.scheme) <= 1 or parts.scheme == "file":  # a plain path (a one-letter scheme is a Windows drive)
        path = parts.path if parts.scheme == "file" else location
        return str(Path(project_path, path).resolve()) if not Path(path).is_absolute() else str(Path(path))
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if parts.scheme in _CONTAINER_SCHEMES and parts.username:
        host = f"{parts.username}@{host}"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class LineageRecorder:
    """Kedro hooks that note the pipeline a session really ran (after node filters) and what it saved.

    Registered on the session only, next to the :class:`~.observer.RunObserver`. :meth:`datasets` then reads the
    run's catalog for the locations.
    """

    def __init__(self, project_path: str | Path, save_version: str | None, load_versions: Mapping[str, str] | None):
        self.project_path = Path(project_path)
        self.save_version = save_version
        self.load_versions = dict(load_versions or {})
        self.pipeline: Pipeline | None = None
        self.catalog: CatalogProtocol | None = None
        self.saved: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def register(cls, session: KedroSession, load_versions: Mapping[str, str] | None = None) -> LineageRecorder:
        """Create a recorder for ``session`` and register it on that session only."""
        from airflow_kedro_mlflow.kedro_project import register_session_hooks

        recorder = cls(session.store["project_path"], session.session_id, load_versions)
        register_session_hooks(session, recorder)
        return recorder

    @hook_impl
    def before_pipeline_run(self, pipeline: Pipeline, catalog: CatalogProtocol) -> None:
        """Keep the pipeline as Kedro runs it (filters applied) and the run's catalog."""
        self.pipeline, self.catalog = pipeline, catalog

    @hook_impl
    def after_dataset_saved(self, dataset_name: str) -> None:
        """Note a dataset this run wrote."""
        with self._lock:
            self.saved.add(dataset_name)

    def datasets(self) -> dict[str, list[DatasetRecord]]:
        """Return ``{"inputs": [...], "outputs": [...]}``: the free inputs read and the datasets written, by name.

        Never raises for a dataset it cannot describe (lineage must not fail a training that succeeded): that
        dataset is left out, with a warning naming it.
        """
        if self.pipeline is None or self.catalog is None:
            return {"inputs": [], "outputs": []}
        with self._lock:
            saved = sorted(self.saved)
        inputs = [self._location(name, self.load_versions.get(name)) for name in sorted(self.pipeline.inputs())]
        outputs = [self._location(name, self.save_version) for name in saved]
        return {
            "inputs": [location for location in inputs if location is not None],
            "outputs": [location for location in outputs if location is not None],
        }

    def _location(self, name: str, version: str | None) -> DatasetRecord | None:
        from kedro.io import MemoryDataset

        from airflow_kedro_mlflow.pipeline.pipeline_ml import is_parameter

        catalog = self.catalog
        if catalog is None or is_parameter(name) or name == "parameters" or name not in catalog:
            return None
        try:
            dataset = catalog[name]
            if isinstance(dataset, MemoryDataset):
                return None
            config = _public_config(name, catalog)
        except Exception as exc:
            logger.warning("Dataset %r left out of the lineage: its catalog entry cannot be read (%s).", name, exc)
            return None
        raw = next((config[key] for key in _LOCATION_KEYS if isinstance(config.get(key), str | PurePosixPath)), None)
        if raw is None:
            return None
        return DatasetRecord(
            name=name,
            location=safe_location(str(raw), self.project_path),
            version=version if config.get("versioned") else None,
        )


def _public_config(name: str, catalog: CatalogProtocol) -> dict[str, Any]:
    """The dataset's catalog definition without its credentials (one home for that: ``model.artifacts``)."""
    from airflow_kedro_mlflow.model.artifacts import artifact_dataset_config

    return artifact_dataset_config(name, catalog)
