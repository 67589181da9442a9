"""Airflow Assets for MLflow registered models: one asset per ``registered model @ alias`` on one MLflow registry.

A DAG scheduled on ``mlflow_model_asset("kedro_classifier", "champion")`` runs whenever the ``champion`` alias of
that model moves to another version through ``KedroModelifyOperator`` or ``MlflowPromoteModelOperator``. The asset
URI names the registry without credentials, so the producer (the operators, from their connection) and the consumer
(the DAG file, from the same connection or an explicit URI) compute the same string:

==========================================  ======================================================================
Registry (connection's tracking URI)         Asset URI of ``kedro_classifier@champion``
==========================================  ======================================================================
``http://mlflow.internal:5000``              ``mlflow-model://mlflow.internal:5000/kedro_classifier@champion``
``https://mlflow.example.com/mlflow``        ``mlflow-model://mlflow.example.com:443/mlflow/kedro_classifier@champion``
``sqlite:////opt/mlflow/mlflow.db``          ``mlflow-model://sqlite/opt/mlflow/mlflow.db/kedro_classifier@champion``
``postgresql://u:pw@db:5432/mlflow``         ``mlflow-model://postgresql/db:5432/mlflow/kedro_classifier@champion``
``databricks``                               ``mlflow-model://databricks/kedro_classifier@champion``
==========================================  ======================================================================

An HTTP server is ``host:port`` (the port always written, so ``http://h`` and ``http://h:80`` are one asset); any
other store is named by its scheme, followed by its location. The registry is the connection's ``registry_uri``
when it has one, else its tracking URI: that is where ``models:/name@alias`` resolves.

Why the operators emit through an :class:`~airflow.sdk.AssetAlias` (:data:`MODEL_ALIAS_OUTLET`) and not a declared
``Asset`` outlet: Airflow 3 records an event for every declared ``Asset`` outlet of a successful task, whether or not
anything changed, and the model name is templated (unknown when the DAG is parsed). An alias outlet records only the
events the task adds at run time with ``outlet_events[alias].add(asset, extra=...)``, and Airflow queues the DAGs
scheduled on the plain asset exactly as for a declared one.

Airflow imports this module in every process during provider discovery (the ``asset-uris`` handler): it imports
neither kedro nor mlflow at module level, and the helpers used at DAG-parse time make no network call.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, quote, unquote, urlsplit

from airflow.sdk import Asset, AssetAlias

from airflow_kedro_mlflow.exceptions import MlflowConnectionError, ModelRegistrationError
from airflow_kedro_mlflow.tracking.config import strip_userinfo
from airflow_kedro_mlflow.tracking.registry import validate_aliases, validate_registered_model_name

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context

    from airflow_kedro_mlflow.tracking import TrackingConfig

logger = logging.getLogger(__name__)

#: URI scheme of a registered model alias, declared under ``asset-uris`` in ``get_provider_info``.
SCHEME = "mlflow-model"
#: The alias outlet the modelify and promote operators add to themselves and emit model events through.
MODEL_ALIAS_OUTLET = AssetAlias(name="airflow-kedro-mlflow-model-aliases")
#: Keys of every model event's ``extra``: what a consumer (e.g. ``MlflowBatchPredictOperator``) reads.
EVENT_EXTRA_KEYS = ("registered_model_name", "alias", "version", "model_uri", "run_id", "tracking_uri")

_HTTP_DEFAULT_PORTS = {"http": 80, "https": 443}
#: Stores MLflow names by a bare word (no ``scheme://``).
_BARE_STORES = ("databricks", "databricks-uc")
#: Characters kept as they are in the store part of the URI path (the rest is percent-encoded, e.g. '?', '#', ' ').
_PATH_SAFE = "/:@+,;=!$&'()*"
_STORE_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*$")


def registry_location(store_uri: str) -> str:
    """Return the ``netloc[/path]`` part of the asset URI that names the MLflow store ``store_uri`` (no credentials).

    :raises MlflowConnectionError: the URI does not name one store for every worker (empty, a relative path, an
        HTTP URI without a host).
    """
    uri = strip_userinfo((store_uri or "").strip())
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in _HTTP_DEFAULT_PORTS:
        if not parts.hostname:
            raise MlflowConnectionError(
                f"tracking URI {uri!r} has no host; expected e.g. 'http://mlflow.internal:5000'."
            )
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        port = parts.port or _HTTP_DEFAULT_PORTS[scheme]
        return f"{host.lower()}:{port}{_quote_path(parts.path.rstrip('/'))}"
    if not scheme and uri.lower() in _BARE_STORES:
        return uri.lower()
    if not scheme or not _STORE_SCHEME.match(scheme):
        raise MlflowConnectionError(
            f"tracking URI {uri!r} is not an absolute URI, so it names a different store on each worker. Use an "
            "absolute one, e.g. 'http://mlflow.internal:5000' or 'sqlite:////abs/path/mlflow.db'."
        )
    location = parts.netloc.rpartition("@")[2].lower() + parts.path
    if scheme == "sqlite":
        # sqlite:////abs/x.db is absolute (path "//abs/x.db"); sqlite:///x.db is relative to the working directory.
        if not parts.path.startswith("//"):
            raise MlflowConnectionError(
                f"tracking URI {uri!r} is a relative sqlite path (or in memory): each worker would open its own "
                "file. Use an absolute path with four slashes, e.g. 'sqlite:////opt/mlflow/mlflow.db'."
            )
        location = parts.path
    location = "/" + location.strip("/")
    return f"{scheme}{_quote_path(location.rstrip('/'))}"


def model_asset_uri(registered_model_name: str, alias: str, tracking_uri: str) -> str:
    """Return the canonical asset URI of ``registered_model_name@alias`` on the registry at ``tracking_uri``.

    :raises ModelRegistrationError: the name or alias is not valid (same rules as registering).
    :raises MlflowConnectionError: ``tracking_uri`` does not name one store for every worker.
    """
    validate_registered_model_name(registered_model_name)
    validate_aliases([alias], registered_model_name)
    return f"{SCHEME}://{registry_location(tracking_uri)}/{_model_segment(registered_model_name, alias)}"


def sanitize_uri(parts: SplitResult) -> SplitResult:
    """Normalize an ``mlflow-model://`` URI (the ``asset-uris`` handler Airflow calls on every such ``Asset``).

    Lower-cases the registry part and percent-encodes the path canonically, so two spellings of one model alias
    are one asset; checks that the last path segment is ``<registered model name>@<alias>``.

    :raises ModelRegistrationError: (a ``ValueError``, as Airflow expects from a handler) no registry part, no
        ``name@alias`` segment, or an invalid name or alias.
    """
    uri = parts.geturl()
    prefix, _, segment = parts.path.rpartition("/")
    name, at, alias = unquote(segment).rpartition("@")
    if not parts.netloc or not at or not name or not alias:
        raise ModelRegistrationError(
            f"asset URI {uri!r} does not name a registered model alias: expected "
            f"'{SCHEME}://<host>:<port>/<registered model>@<alias>', e.g. "
            f"'{SCHEME}://mlflow.internal:5000/kedro_classifier@champion'. Build it with mlflow_model_asset()."
        )
    validate_registered_model_name(name)
    validate_aliases([alias], name)
    return parts._replace(
        scheme=SCHEME,
        netloc=parts.netloc.lower(),
        path=f"{_quote_path(unquote(prefix))}/{_model_segment(name, alias)}",
    )


def create_asset(
    *,
    registered_model_name: str,
    alias: str = "champion",
    tracking_uri: str,
    registry_uri: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Asset:
    """Return the asset of ``registered_model_name@alias`` (the ``asset-uris`` factory; keyword arguments only).

    Name and URI are the same canonical string: Airflow matches an event to the DAGs scheduled on an asset by both.

    :param tracking_uri: the MLflow tracking URI (credentials, if any, are dropped).
    :param registry_uri: the model registry URI when it differs from the tracking URI; it then names the asset.
    :param extra: static extra of the asset (not of its events).
    """
    uri = model_asset_uri(registered_model_name, alias, registry_uri or tracking_uri)
    return Asset(name=uri, uri=uri, extra=extra)


def mlflow_model_asset(
    registered_model_name: str,
    alias: str = "champion",
    *,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
    mlflow_conn_id: str = "mlflow_default",
) -> Asset:
    """Return the asset that receives an event each time ``alias`` of ``registered_model_name`` moves to a version.

    Schedule a DAG on it (``schedule=[mlflow_model_asset("kedro_classifier")]``); the triggering event's ``extra``
    holds :data:`EVENT_EXTRA_KEYS`. Safe at DAG-parse time: no call to MLflow. The registry comes from
    ``tracking_uri``/``registry_uri`` when given (nothing is looked up), else from the Airflow connection
    ``mlflow_conn_id``, exactly as the operators read it: the connection is read when the DAG file is parsed (an
    ``AIRFLOW_CONN_…`` variable costs nothing; a connection in the metadata database is one lookup per parse), or
    ``MLFLOW_TRACKING_URI`` when ``mlflow_default`` does not exist. Whether the model and alias exist is not checked
    here (they may be registered after the DAG is deployed); scoring ``models:/<name>@<alias>`` checks it.

    :raises ModelRegistrationError: invalid name or alias.
    :raises MlflowConnectionError: no tracking server is configured for the DAG processor, or it is not an
        absolute URI. Give it the same connection (or ``MLFLOW_TRACKING_URI``) as the workers, or pass
        ``tracking_uri``.
    """
    validate_registered_model_name(registered_model_name)
    validate_aliases([alias], registered_model_name)
    if tracking_uri is None:
        from airflow_kedro_mlflow.hooks.mlflow import MlflowHook

        tracking = MlflowHook(mlflow_conn_id).get_tracking_config()
        tracking_uri, registry_uri = tracking.tracking_uri, registry_uri or tracking.registry_uri
    return create_asset(
        registered_model_name=registered_model_name, alias=alias, tracking_uri=tracking_uri, registry_uri=registry_uri
    )


def add_model_alias_outlet(operator: BaseOperator) -> None:
    """Declare :data:`MODEL_ALIAS_OUTLET` on ``operator`` (once), so the events it adds at run time are recorded."""
    if MODEL_ALIAS_OUTLET not in operator.outlets:
        operator.add_outlets([MODEL_ALIAS_OUTLET])


def model_event_extra(
    registered_model_name: str, alias: str, version: str | int, run_id: str | None, tracking_uri: str
) -> dict[str, Any]:
    """Return the ``extra`` of a model event: exactly :data:`EVENT_EXTRA_KEYS`, JSON-safe, without credentials."""
    return {
        "registered_model_name": registered_model_name,
        "alias": alias,
        "version": str(version),
        "model_uri": f"models:/{registered_model_name}/{version}",
        "run_id": run_id,
        "tracking_uri": strip_userinfo(tracking_uri),
    }


def emit_model_alias_events(
    context: Context,
    tracking: TrackingConfig,
    registered_model_name: str,
    version: str | int,
    aliases: Sequence[str],
    *,
    moved_now: bool,
    run_id: str | None = None,
) -> list[str]:
    """Add one asset event per alias of ``aliases`` now on ``version``; return the URIs of the assets emitted to.

    :param moved_now: this try moved the aliases onto ``version`` (a new version, a promotion). When False, the
        version already held them as this try started, which happens when an earlier try of this task instance moved
        them: an event is then added only if that try recorded none (it failed before succeeding: Airflow records a
        task's events only when it succeeds), so a cleared and re-run task does not announce the same move twice.
    :param run_id: the version's source run; read from the registry when None.
    """
    outlet_events = context.get("outlet_events")
    if outlet_events is None or not aliases:
        if aliases:
            logger.info(
                "Not running in an Airflow task: no asset events for %s aliases %s", registered_model_name, aliases
            )
        return []
    name, version = registered_model_name, str(version)
    if run_id is None:
        run_id = _version_run_id(tracking, name, version)
    accessor = outlet_events[MODEL_ALIAS_OUTLET]
    emitted = []
    for alias in aliases:
        asset = create_asset(
            registered_model_name=name,
            alias=alias,
            tracking_uri=tracking.tracking_uri,
            registry_uri=tracking.registry_uri,
        )
        if not moved_now and _recorded_by_this_task(context, asset, version):
            logger.info("An earlier try of this task already emitted %s for version %s: not again", asset.uri, version)
            continue
        accessor.add(asset, extra=model_event_extra(name, alias, version, run_id, tracking.public_uri))
        logger.info("Asset event: %s now points to version %s", asset.uri, version)
        emitted.append(asset.uri)
    return emitted


def _recorded_by_this_task(context: Context, asset: Asset, version: str) -> bool:
    """Whether an earlier try of this task instance recorded an event of ``asset`` for ``version``.

    Airflow's public API reads past events of an asset only for a task's declared inlets (``inlet_events``); the
    model asset is known only at run time, so the accessor behind it is used directly, limited to this DAG run.
    """
    from airflow.sdk.execution_time.context import InletEventsAccessor

    ti = context["ti"]
    events = InletEventsAccessor(asset_name=asset.name, asset_uri=asset.uri)
    run_after = getattr(context.get("dag_run"), "run_after", None)
    if run_after is not None:
        events = events.after(run_after)
    return any(
        (event.source_dag_id, event.source_run_id, event.source_task_id, event.source_map_index)
        == (ti.dag_id, ti.run_id, ti.task_id, ti.map_index)
        and (event.extra or {}).get("version") == version
        for event in events
    )


def _version_run_id(tracking: TrackingConfig, registered_model_name: str, version: str) -> str | None:
    """The source run of a model version (the training run), for the event's ``run_id``."""
    from mlflow.exceptions import MlflowException

    with tracking.activate():
        try:
            return tracking.client().get_model_version(registered_model_name, version).run_id or None
        except (MlflowException, OSError) as exc:
            raise tracking.connection_error(exc) from exc


def _model_segment(registered_model_name: str, alias: str) -> str:
    return f"{quote(registered_model_name, safe='')}@{quote(alias, safe='')}"


def _quote_path(path: str) -> str:
    return quote(unquote(path), safe=_PATH_SAFE)
