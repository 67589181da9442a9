"""OpenLineage for the operators: which datasets a task read and wrote, named as OpenLineage names them.

Airflow's OpenLineage provider (``apache-airflow-providers-openlineage``, the optional ``openlineage`` extra) calls
``get_openlineage_facets_on_complete(task_instance)`` on an operator after it succeeded and sends the datasets it
returns in the task's COMPLETE event. :class:`OpenLineageMixin` gives the operators that method: ``execute`` records
a :class:`TaskLineage` built here from what the core returned (for training, the catalog locations that come back
in the training result, wherever training ran), and the method turns it into the provider's ``OperatorLineage``.
The provider is imported only then, so nothing here needs it installed.

Naming (https://openlineage.io/docs/spec/naming), :func:`dataset_naming`, location -> (namespace, name):

- ``/abs/path``, ``file:///abs/path`` -> (``file``, ``/abs/path``); ``file://host/path`` -> (``file://host``, ``/path``)
- ``s3://bucket/key`` (also ``s3a``, ``s3n``) -> (``s3://bucket``, ``key``); ``gs://bucket/key`` (also ``gcs``) ->
  (``gs://bucket``, ``key``)
- ``abfss://container@account.dfs.core.windows.net/path`` -> (``abfss://container@account.dfs.core.windows.net``,
  ``path``); ``abfs``, ``az``, ``wasb(s)`` alike
- ``hdfs://namenode:8020/path`` -> (``hdfs://namenode:8020``, ``path``); any other ``scheme://host[:port]/path`` ->
  (``scheme://host[:port]``, ``path``); ``scheme:/path`` without a host (``dbfs:/...``) -> (``scheme``, ``/path``)

MLflow objects live in the tracking server's namespace (its public URI, no credentials): a training run is
``experiments/<experiment_id>/runs/<run_id>``, a registered model version ``models/<name>/<version>``, a logged model
that was not registered ``models/<model_id>`` and an alias ``models/<name>@<alias>`` (the ``models:/`` URIs without
the scheme).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

from airflow_kedro_mlflow.training_result import DatasetRecord

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

    from airflow_kedro_mlflow.modelify.result import ModelifyResult
    from airflow_kedro_mlflow.promotion import PromotionDecision
    from airflow_kedro_mlflow.scoring.result import ScoringResult
    from airflow_kedro_mlflow.training_result import TrainingResult

logger = logging.getLogger(__name__)

_CONTAINER_SCHEMES = frozenset({"abfs", "abfss", "az", "wasb", "wasbs"})
_SCHEME_ALIASES = {"s3a": "s3", "s3n": "s3", "gcs": "gs"}


@dataclass(frozen=True)
class LineageDataset:
    """One OpenLineage dataset: ``namespace`` + ``name`` identify it; ``version`` goes in its version facet."""

    namespace: str
    name: str
    version: str | None = None


@dataclass(frozen=True)
class TaskLineage:
    """What one task read and wrote, independent of the provider's classes (built in ``execute``)."""

    inputs: tuple[LineageDataset, ...] = ()
    outputs: tuple[LineageDataset, ...] = ()

    def to_operator_lineage(self) -> OperatorLineage:
        """Return the provider's ``OperatorLineage`` (imports the OpenLineage provider)."""
        from airflow.providers.common.compat.openlineage.facet import Dataset
        from airflow.providers.openlineage.extractors import OperatorLineage
        from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet

        def convert(datasets: Iterable[LineageDataset]) -> list[Any]:
            return [
                Dataset(
                    namespace=dataset.namespace,
                    name=dataset.name,
                    facets={"version": DatasetVersionDatasetFacet(datasetVersion=dataset.version)}
                    if dataset.version
                    else {},
                )
                for dataset in datasets
            ]

        return OperatorLineage(inputs=convert(self.inputs), outputs=convert(self.outputs))


def dataset_naming(location: str) -> tuple[str, str]:
    """Return OpenLineage's ``(namespace, name)`` for a file location: an absolute path or a URL.

    User, password, query string and fragment never reach the result (an Azure ``container@`` is kept: it names the
    container). A relative path has no meaningful identity: it is refused.

    :raises ValueError: for an empty or relative location.
    """
    parts = urlsplit(location)
    if len(parts.scheme) <= 1:  # a plain path (a one-letter "scheme" is a Windows drive letter)
        if not location.startswith("/") and not parts.scheme:
            raise ValueError(f"dataset location {location!r} is not absolute: OpenLineage names files by full path.")
        return "file", location
    scheme = _SCHEME_ALIASES.get(parts.scheme, parts.scheme)
    host = _host(parts)
    if scheme == "file":
        return ("file", parts.path) if not host else (f"file://{host}", parts.path)
    if scheme in _CONTAINER_SCHEMES and parts.username:
        host = f"{parts.username}@{host}"
    if not host:  # e.g. dbfs:/path: no authority to name
        return scheme, parts.path
    return f"{scheme}://{host}", parts.path.lstrip("/")


def mlflow_namespace(tracking_uri: str) -> str:
    """The OpenLineage namespace of an MLflow tracking server: its URI without credentials, query or fragment."""
    parts = urlsplit(tracking_uri)
    if not parts.netloc:
        return tracking_uri.split("?", 1)[0].split("#", 1)[0].rstrip("/") or tracking_uri
    return f"{parts.scheme}://{_host(parts)}{parts.path}".rstrip("/")


def _host(parts: SplitResult) -> str:
    """``host[:port]`` of a URL, without its user and password."""
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return host if parts.port is None else f"{host}:{parts.port}"


def mlflow_run_dataset(tracking_uri: str, experiment_id: str, run_id: str) -> LineageDataset:
    """An MLflow run as a dataset (its params, metrics and artifacts): ``experiments/<id>/runs/<run_id>``."""
    return LineageDataset(mlflow_namespace(tracking_uri), f"experiments/{experiment_id}/runs/{run_id}")


def mlflow_model_dataset(tracking_uri: str, model_uri: str) -> LineageDataset:
    """A model by its URI: ``models:/name/3`` -> ``models/name/3`` (``@alias``, ``<model_id>``, ``runs:/`` alike)."""
    scheme, _, rest = model_uri.partition(":")
    return LineageDataset(mlflow_namespace(tracking_uri), f"{scheme}/{rest.lstrip('/')}")


def training_lineage(result: TrainingResult) -> TaskLineage:
    """Inputs: the catalog datasets training read; outputs: those it wrote, and its MLflow run."""
    datasets = result.datasets or {}
    run = mlflow_run_dataset(result.tracking_uri, result.experiment_id, result.run_id)
    return TaskLineage(
        inputs=tuple(_named(datasets.get("inputs", []))),
        outputs=(*_named(datasets.get("outputs", [])), run),
    )


def modelify_lineage(result: ModelifyResult, tracking_uri: str) -> TaskLineage:
    """Input: the MLflow run holding the artifacts the model was built from; output: the logged or registered model."""
    return TaskLineage(
        inputs=(mlflow_run_dataset(tracking_uri, result.experiment_id, result.run_id),),
        outputs=(mlflow_model_dataset(tracking_uri, result.model_uri),),
    )


def promotion_lineage(decision: PromotionDecision, tracking_uri: str) -> TaskLineage:
    """Input: the model version considered; output: the alias, only when the promotion moved it onto that version."""
    version = mlflow_model_dataset(tracking_uri, f"models:/{decision.registered_model_name}/{decision.version}")
    alias = mlflow_model_dataset(tracking_uri, f"models:/{decision.registered_model_name}@{decision.alias}")
    return TaskLineage(inputs=(version,), outputs=(alias,) if decision.alias_moved else ())


def scoring_lineage(result: ScoringResult, input_path: str | None) -> TaskLineage:
    """Inputs: the model version that scored and the input table; output: the scored table.

    :param input_path: the input path the task read (None for a catalog dataset, whose file the result does not
        name: the input is then the model only). A relative local path is taken from this process's directory.
    """
    inputs = [mlflow_model_dataset(result.tracking_uri, result.model_uri)]
    outputs: list[LineageDataset] = []
    for paths, location in ((inputs, input_path), (outputs, result.output)):
        if location:
            paths.extend(_named([DatasetRecord(name=location, location=_absolute(location))]))
    return TaskLineage(inputs=tuple(inputs), outputs=tuple(outputs))


def _absolute(location: str) -> str:
    """A relative local path made absolute against this process's directory (where it was read or written)."""
    if len(urlsplit(location).scheme) <= 1 and not os.path.isabs(location):
        return os.path.abspath(location)
    return location


def _named(locations: Iterable[DatasetRecord]) -> list[LineageDataset]:
    """Name each ``DatasetRecord``; one that cannot be named is left out with a warning, never failing the task."""
    datasets = []
    for location in locations:
        try:
            namespace, name = dataset_naming(location.location)
        except ValueError as exc:
            logger.warning("Dataset %r left out of the OpenLineage event: %s", location.name, exc)
            continue
        datasets.append(LineageDataset(namespace, name, location.version))
    return datasets


class OpenLineageMixin:
    """``get_openlineage_facets_on_complete`` for an operator whose ``execute`` calls :meth:`_record_lineage`."""

    _openlineage: TaskLineage | None = None

    def _record_lineage(self, build: Callable[..., TaskLineage], *args: Any) -> None:
        """Build and keep this task's lineage; a failure only costs the lineage (logged), never the task."""
        try:
            self._openlineage = build(*args)
        except Exception:
            logger.warning("No OpenLineage datasets for this task: building them failed.", exc_info=True)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """Return the datasets ``execute`` recorded (None when it recorded none, e.g. after a failure)."""
        return None if self._openlineage is None else self._openlineage.to_operator_lineage()
