"""Airflow hook for the ``mlflow`` connection type: connection -> tracking/registry URI, auth, HTTP limits.

This is the one place that reads an ``mlflow`` connection. It turns it into the core library's
:class:`~airflow_kedro_mlflow.tracking.TrackingConfig`, which the operators hand to the core functions; nothing here
talks to MLflow until :meth:`MlflowHook.get_conn` or :meth:`MlflowHook.test_connection` is called, and mlflow is
imported only then (DAG files import this module through the operators and must stay cheap to parse).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from airflow_kedro_mlflow.exceptions import MlflowConnectionError
from airflow_kedro_mlflow.tracking.config import DEFAULT_MAX_RETRIES  # one default for the hook, the CLI and the core

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from airflow_kedro_mlflow.tracking import TrackingConfig

logger = logging.getLogger(__name__)

_HTTP_SCHEMES = ("http", "https")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")


class MlflowHook(BaseHook):
    """Reach an MLflow tracking server (and model registry) described by an Airflow ``mlflow`` connection.

    The tracking URI is ``<schema>://<host>:<port><path>`` (schema ``http`` or ``https``, default ``http``; the
    host may carry a path, ``mlflow.internal/mlflow``, or be a whole URL). The extra ``tracking_uri`` replaces it for
    stores that are not HTTP servers (an absolute ``sqlite:////…``, ``databricks``). Other extras: ``registry_uri``,
    ``ui_url`` (browser-facing address for extra links), ``insecure_tls``, ``timeout`` and ``max_retries``.
    Login and password are sent as basic auth; a password with an empty login is sent as a bearer token.

    If ``mlflow_default`` does not exist, ``MLFLOW_TRACKING_URI`` (and the other ``MLFLOW_*`` variables) of the
    worker are used; MLflow's implicit ``./mlflow.db`` never is, since two tasks would then write to two stores.

    :param mlflow_conn_id: id of an Airflow connection of type ``mlflow``.
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow_default"
    conn_type = "mlflow"
    hook_name = "MLflow"

    def __init__(self, mlflow_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mlflow_conn_id = mlflow_conn_id
        self._tracking: TrackingConfig | None = None

    def get_tracking_config(self) -> TrackingConfig:
        """Return the tracking configuration of the connection (read once per hook).

        :raises MlflowConnectionError: the named connection does not exist, or the default one does not exist and
            ``MLFLOW_TRACKING_URI`` is not set either, or the connection's fields are unusable.
        """
        if self._tracking is None:
            self._tracking = self._read_tracking_config()
        return self._tracking

    def get_conn(self) -> MlflowClient:
        """Return an ``MlflowClient`` for the connection's tracking and registry URIs.

        The client carries no credentials of its own (``MlflowClient`` has no parameter for them): call it inside
        ``hook.get_tracking_config().activate()``, which sets them for this process only while the block runs.
        """
        return self.get_tracking_config().client()

    def test_connection(self) -> tuple[bool, str]:
        """Ask the server for one experiment, as the UI's Test button does (needs ``[core] test_connection``)."""
        try:
            tracking = self.get_tracking_config()
            with tracking.activate():
                tracking.check_connection()
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return True, f"Connected to the MLflow tracking server at {tracking.public_uri}"

    def _read_tracking_config(self) -> TrackingConfig:
        from airflow_kedro_mlflow.tracking import TrackingConfig

        try:
            conn = self.get_connection(self.mlflow_conn_id)
        except AirflowNotFoundException:
            if self.mlflow_conn_id != self.default_conn_name:
                raise MlflowConnectionError(
                    f"Airflow connection {self.mlflow_conn_id!r} does not exist. Create it (type 'mlflow'), e.g. "
                    f"AIRFLOW_CONN_{self.mlflow_conn_id.upper()}='mlflow://mlflow.internal:5000', "
                    "or pass the id of an existing connection as mlflow_conn_id."
                ) from None
            try:
                tracking = TrackingConfig.from_env()
            except MlflowConnectionError as exc:
                raise MlflowConnectionError(
                    f"No MLflow tracking server is configured: Airflow connection {self.mlflow_conn_id!r} does not "
                    "exist and MLFLOW_TRACKING_URI is not set. Create the connection, e.g. "
                    "AIRFLOW_CONN_MLFLOW_DEFAULT='mlflow://mlflow.internal:5000', or set MLFLOW_TRACKING_URI "
                    "on the workers."
                ) from exc
            logger.info(
                "Airflow connection %r does not exist; using MLFLOW_TRACKING_URI=%s",
                self.mlflow_conn_id,
                tracking.tracking_uri,
            )
            return tracking
        return tracking_config_from_connection(
            conn_id=self.mlflow_conn_id,
            schema=conn.schema,
            host=conn.host,
            port=conn.port,
            login=conn.login,
            password=conn.password,
            extra=conn.extra_dejson,
        )


def tracking_config_from_connection(
    *,
    conn_id: str,
    schema: str | None,
    host: str | None,
    port: int | None,
    login: str | None,
    password: str | None,
    extra: dict[str, Any],
) -> TrackingConfig:
    """Build a :class:`TrackingConfig` from the fields of an ``mlflow`` connection.

    A plain function of the fields (not of an Airflow ``Connection``) so every rule of the connection form is
    testable on its own; :class:`MlflowHook` is its only caller.

    :raises MlflowConnectionError: a field is missing or has a value the form does not allow; the message names the
        connection and the field.
    """
    from airflow_kedro_mlflow.tracking import TrackingConfig

    tracking_uri = _str_extra(conn_id, extra, "tracking_uri") or _http_uri(conn_id, schema, host, port)
    if urlsplit(tracking_uri).password is not None or urlsplit(tracking_uri).username is not None:
        raise MlflowConnectionError(
            f"connection {conn_id!r} has credentials inside its tracking URI. Put the user name in Login and the "
            "password or token in Password instead, so Airflow can mask them."
        )
    max_retries = _int_extra(conn_id, extra, "max_retries")
    return TrackingConfig(
        tracking_uri=tracking_uri,
        registry_uri=_str_extra(conn_id, extra, "registry_uri"),
        username=login or None,
        password=password or None,
        insecure_tls=_bool_extra(conn_id, extra, "insecure_tls"),
        timeout=_float_extra(conn_id, extra, "timeout"),
        max_retries=DEFAULT_MAX_RETRIES if max_retries is None else max_retries,
        ui_url=_str_extra(conn_id, extra, "ui_url"),
    )


def _http_uri(conn_id: str, schema: str | None, host: str | None, port: int | None) -> str:
    if not host:
        raise MlflowConnectionError(
            f"connection {conn_id!r} has no host. Point it at your tracking server, e.g. "
            f"AIRFLOW_CONN_{conn_id.upper()}='mlflow://mlflow.internal:5000', or set its extra 'tracking_uri' "
            "(e.g. sqlite:////abs/path/mlflow.db)."
        )
    schema = (schema or "").strip().lower()
    if schema and schema not in _HTTP_SCHEMES:
        raise MlflowConnectionError(
            f"connection {conn_id!r} has schema {schema!r}; an MLflow server is reached over 'http' or 'https'. "
            "Set the schema to one of these, or use the extra 'tracking_uri' for any other kind of store."
        )
    parts = urlsplit(host if "://" in host else f"{schema or 'http'}://{host}")
    if parts.scheme not in _HTTP_SCHEMES:
        raise MlflowConnectionError(
            f"connection {conn_id!r} has host {host!r} with scheme {parts.scheme!r}; use 'http' or 'https', or the "
            "extra 'tracking_uri' for any other kind of store."
        )
    if schema and parts.scheme != schema:
        raise MlflowConnectionError(
            f"connection {conn_id!r} has schema {schema!r} but its host says {parts.scheme!r}; keep one of them."
        )
    netloc = parts.netloc
    if port and parts.port is None:
        netloc = f"{netloc}:{port}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


def _str_extra(conn_id: str, extra: dict[str, Any], key: str) -> str | None:
    value = extra.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MlflowConnectionError(f"connection {conn_id!r} has extra {key!r}={value!r}; expected a string.")
    return value.strip() or None


def _bool_extra(conn_id: str, extra: dict[str, Any], key: str) -> bool:
    value = extra.get(key)
    if value is None or isinstance(value, bool):
        return bool(value)
    if str(value).strip().lower() in _TRUE:
        return True
    if str(value).strip().lower() in _FALSE:
        return False
    raise MlflowConnectionError(f"connection {conn_id!r} has extra {key!r}={value!r}; expected true or false.")


def _float_extra(conn_id: str, extra: dict[str, Any], key: str) -> float | None:
    value = extra.get(key)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if isinstance(value, bool) or number <= 0:
        raise MlflowConnectionError(
            f"connection {conn_id!r} has extra {key!r}={value!r}; expected a positive number of seconds."
        )
    return number


def _int_extra(conn_id: str, extra: dict[str, Any], key: str) -> int | None:
    value = extra.get(key)
    if value is None or value == "":
        return None
    try:
        number = int(str(value))
    except ValueError:
        number = -1
    if isinstance(value, bool) or number < 0:
        raise MlflowConnectionError(
            f"connection {conn_id!r} has extra {key!r}={value!r}; expected a whole number >= 0."
        )
    return number
