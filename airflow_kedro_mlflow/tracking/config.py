"""Where MLflow lives and how to talk to it: :class:`TrackingConfig`, used by training, modelify, the CLI and the hook.

Credentials never leave this process's memory. MLflow's usual routes all spread them: ``MLFLOW_TRACKING_USERNAME``/
``PASSWORD``/``TOKEN`` are environment variables that every child process inherits (Kedro runs ``git``, MLflow runs
a subprocess to capture a model's imports), and a ``user:password@`` URI ends up in ``MLFLOW_TRACKING_URI`` (which
``mlflow.set_tracking_uri`` exports for subprocesses) and in MLflow's "View run at" lines. So :meth:`TrackingConfig.
activate` sets only the credential-free URIs and hands the ``Authorization`` header to MLflow through an auth plugin
that sends it to this server's origin only (:mod:`airflow_kedro_mlflow.tracking.auth`).
"""

from __future__ import annotations

import base64
import logging
import math
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from airflow_kedro_mlflow.exceptions import MlflowConnectionError, MlflowServerUnavailableError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)

#: MLflow environment variables :meth:`TrackingConfig.activate` sets or clears, restored on exit.
_MANAGED_ENV = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_AUTH",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    # mlflow.set_experiment() exports the id; left behind it would point the next server's runs at a foreign id
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT",
)

_Number = TypeVar("_Number", int, float)

#: HTTP retries when the caller sets none (connection extra, ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``): MLflow's own
#: default retries for about four minutes, while a task or a CLI call should fail fast and be retried as a whole.
DEFAULT_MAX_RETRIES = 2


def strip_userinfo(uri: str) -> str:
    """Return ``uri`` without ``user:password@``, for messages, logs and XCom."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class TrackingConfig:
    """An MLflow tracking server (and registry), with the credentials and HTTP behaviour to reach it.

    A URI given with ``user:password@`` is split: the credentials move to ``username``/``password`` and
    ``tracking_uri`` keeps only the public part, so the URI is safe to log, template and push to XCom.

    :param tracking_uri: MLflow tracking URI (``http(s)://host:port``, ``sqlite:///abs/path.db``, ``databricks``...).
    :param registry_uri: model registry URI when it differs from the tracking URI.
    :param username: basic-auth user; with ``password``.
    :param password: basic-auth password, or a bearer token when ``username`` is None.
    :param insecure_tls: skip TLS certificate verification (``MLFLOW_TRACKING_INSECURE_TLS``).
    :param timeout: seconds per HTTP request (``MLFLOW_HTTP_REQUEST_TIMEOUT``; MLflow's default is 120).
    :param max_retries: HTTP retries (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``). MLflow's default keeps retrying for
        minutes; a task should fail fast and let Airflow retry it.
    :param ui_url: browser-facing MLflow base URL for links, when it differs from what workers use.
    """

    tracking_uri: str
    registry_uri: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    insecure_tls: bool = False
    timeout: float | None = None
    max_retries: int | None = None
    ui_url: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.tracking_uri, str) or not self.tracking_uri.strip():
            raise MlflowConnectionError(
                "TrackingConfig needs a tracking_uri, e.g. 'http://mlflow.internal:5000' or "
                "'sqlite:////abs/path/mlflow.db'. Set MLFLOW_TRACKING_URI or the connection's host."
            )
        for name in ("tracking_uri", "registry_uri", "ui_url"):
            uri = getattr(self, name)
            if uri is None:
                continue
            parts = urlsplit(uri)
            if parts.username is None and parts.password is None:
                continue
            if name == "tracking_uri" and self.username is None and self.password is None:
                object.__setattr__(self, "username", unquote(parts.username) if parts.username else None)
                object.__setattr__(self, "password", unquote(parts.password) if parts.password else None)
            object.__setattr__(self, name, strip_userinfo(uri))
        if self.max_retries is not None and int(self.max_retries) < 0:
            raise MlflowConnectionError(f"max_retries must be >= 0, got {self.max_retries}.")
        if self.timeout is not None and float(self.timeout) <= 0:
            raise MlflowConnectionError(f"timeout must be a positive number of seconds, got {self.timeout}.")

    @property
    def public_uri(self) -> str:
        """The tracking URI as it may appear in logs, messages and XCom (never with credentials)."""
        return strip_userinfo(self.tracking_uri)

    @property
    def effective_registry_uri(self) -> str:
        """The registry URI MLflow will use: ``registry_uri``, else the tracking URI."""
        return self.registry_uri or self.tracking_uri

    @property
    def has_credentials(self) -> bool:
        """Whether requests carry an ``Authorization`` header."""
        return bool(self.password)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        tracking_uri: str | None = None,
        registry_uri: str | None = None,
        default_max_retries: int | None = DEFAULT_MAX_RETRIES,
    ) -> TrackingConfig:
        """Build a config from MLflow's own environment variables (``MLFLOW_TRACKING_URI`` and friends).

        This is the one place that reads them: the CLI, the Kedro hook and the dataset pass their explicit URIs as
        ``tracking_uri``/``registry_uri`` and keep the credentials and HTTP settings exported for that server.

        :param tracking_uri: use this tracking URI instead of ``MLFLOW_TRACKING_URI``.
        :param registry_uri: use this registry URI instead of ``MLFLOW_REGISTRY_URI``.
        :param default_max_retries: HTTP retries when ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` is not set (fail fast).
        :raises MlflowConnectionError: no tracking URI. MLflow itself would silently fall back to ``./mlflow.db`` in
            the current directory; two workers would then write two different stores.
        """
        env = os.environ if environ is None else environ
        tracking_uri = (tracking_uri or env.get("MLFLOW_TRACKING_URI", "")).strip()
        if not tracking_uri:
            raise MlflowConnectionError(
                "No MLflow tracking server is configured: MLFLOW_TRACKING_URI is not set. Set it (e.g. "
                "MLFLOW_TRACKING_URI=http://mlflow.internal:5000) or configure an `mlflow_default` Airflow "
                "connection. airflow-kedro-mlflow never falls back to MLflow's implicit ./mlflow.db."
            )
        max_retries = _number_from_env(env, "MLFLOW_HTTP_REQUEST_MAX_RETRIES", int)
        username = env.get("MLFLOW_TRACKING_USERNAME") or None
        password = env.get("MLFLOW_TRACKING_PASSWORD") or None
        if password is None and username is None:
            password = env.get("MLFLOW_TRACKING_TOKEN") or None
        return cls(
            tracking_uri=tracking_uri,
            registry_uri=registry_uri or env.get("MLFLOW_REGISTRY_URI") or None,
            username=username,
            password=password,
            insecure_tls=env.get("MLFLOW_TRACKING_INSECURE_TLS", "").strip().lower() in {"1", "true", "yes"},
            timeout=_number_from_env(env, "MLFLOW_HTTP_REQUEST_TIMEOUT", float),
            max_retries=default_max_retries if max_retries is None else max_retries,
        )

    def with_credentials(self, username: str | None, password: str | None) -> TrackingConfig:
        """Return a copy with other credentials (e.g. from an Airflow connection's login/password)."""
        return replace(self, username=username or None, password=password or None)

    @contextmanager
    def activate(self) -> Iterator[TrackingConfig]:
        """Point MLflow's fluent API and default clients at this server, for this process, until the block ends.

        Sets the tracking and registry URIs (without credentials), the HTTP behaviour variables and
        ``MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT`` (no "View run at" lines on stdout); with credentials,
        names the origin-scoped auth plugin in ``MLFLOW_TRACKING_AUTH`` and removes MLflow credential variables that
        would otherwise be sent to any host. Everything is restored on exit, also on error. Nested activations stack.
        """
        import mlflow

        from airflow_kedro_mlflow.tracking.auth import PROVIDER_NAME, scoped_credentials

        saved_env = {name: os.environ.get(name) for name in _MANAGED_ENV}
        saved_tracking, saved_registry, saved_experiment = _fluent_state()
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
            os.environ.pop(name, None)
        header = self._authorization_header()
        _set_env("MLFLOW_TRACKING_AUTH", PROVIDER_NAME if header else None)
        # MLflow prints "View run at <url>" to stdout when a run ends: noise in task logs, and it would break the
        # CLI's one-JSON-object --json output.
        _set_env("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        _set_env("MLFLOW_TRACKING_INSECURE_TLS", "true" if self.insecure_tls else None)
        # MLflow parses the timeout as an int: round up so 0.5 s does not become "no timeout" (0).
        _set_env("MLFLOW_HTTP_REQUEST_TIMEOUT", None if self.timeout is None else str(math.ceil(float(self.timeout))))
        _set_env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", None if self.max_retries is None else str(int(self.max_retries)))
        try:
            with ExitStack() as stack:
                if header:
                    stack.enter_context(scoped_credentials([self.tracking_uri, self.effective_registry_uri], header))
                mlflow.set_tracking_uri(self.tracking_uri)
                mlflow.set_registry_uri(self.effective_registry_uri)
                _set_active_experiment_id(None)  # an experiment chosen for another server means nothing here
                yield self
        finally:
            # None restores "unset": MLflow handles it (and clears the exported variable), its hints say str only.
            mlflow.set_tracking_uri(saved_tracking)  # type: ignore[arg-type]
            mlflow.set_registry_uri(saved_registry)  # type: ignore[arg-type]
            _set_active_experiment_id(saved_experiment)
            for name, value in saved_env.items():
                _set_env(name, value)

    def client(self) -> MlflowClient:
        """An ``MlflowClient`` bound to this server's URIs. Use it inside :meth:`activate` when credentials are set."""
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.effective_registry_uri)

    def check_connection(self) -> None:
        """Make one cheap request so an unreachable server or rejected credentials fail early and readably.

        Call it inside :meth:`activate`. The error names the public URI only.

        :raises MlflowConnectionError: the server cannot be reached, or refuses the credentials.
        """
        from mlflow.exceptions import MlflowException

        try:
            self.client().search_experiments(max_results=1)
        except (MlflowException, OSError) as exc:
            raise self.connection_error(exc) from exc

    def connection_error(self, exc: BaseException) -> MlflowConnectionError | MlflowServerUnavailableError:
        """Turn an MLflow/requests failure into an error naming the public URI (never the credentials).

        HTTP 401/403 is a credentials problem and another 4xx a server that answered but is not the MLflow API this
        client speaks (a wrong path, a proxy): both are configuration (:class:`MlflowConnectionError`, bad input).
        No answer, 429 or 5xx means the server cannot serve the request right now
        (:class:`MlflowServerUnavailableError`, retry later).
        """
        status = _answered_status(exc)
        message = str(exc)
        if self.password:
            message = message.replace(self.password, "***")
        if status in (401, 403):
            what = "no credentials" if not self.has_credentials else "credentials that it rejected"
            return MlflowConnectionError(
                f"MLflow tracking server {self.public_uri} answered HTTP {status}: this client sent {what}. Set the "
                f"connection's login/password (or a token in the password field). Server said: {message}"
            )
        if status is not None and 400 <= status < 500 and status != 429:
            return MlflowConnectionError(
                f"MLflow tracking server {self.public_uri} answered HTTP {status} to this client's request: {message}. "
                "Check that the connection's URI points at an MLflow tracking server (MLflow 3.x; no path after the "
                "host unless the server is served under one)."
            )
        return MlflowServerUnavailableError(
            f"Cannot reach the MLflow tracking server at {self.public_uri}: {message}. Check that it is running and "
            "reachable from this worker (host, port, TLS); the task can be retried once it is back."
        )

    def run_url(self, experiment_id: str, run_id: str) -> str | None:
        """Browser URL of a run, or None when no browser-facing MLflow URL is known (e.g. a sqlite store)."""
        base = self._ui_base()
        if base is None:
            return None
        return f"{base}/#/experiments/{quote(str(experiment_id), safe='')}/runs/{quote(str(run_id), safe='')}"

    def model_version_url(self, name: str, version: str | int) -> str | None:
        """Browser URL of a registered model version, or None when no browser-facing MLflow URL is known."""
        base = self._ui_base()
        if base is None:
            return None
        return f"{base}/#/models/{quote(str(name), safe='')}/versions/{quote(str(version), safe='')}"

    def _ui_base(self) -> str | None:
        if self.ui_url:
            return strip_userinfo(self.ui_url).rstrip("/")
        if urlsplit(self.tracking_uri).scheme in {"http", "https"}:
            return self.public_uri.rstrip("/")
        return None

    def _authorization_header(self) -> str | None:
        if not self.password:
            return None
        if self.username:
            token = base64.standard_b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")
            return f"Basic {token}"
        return f"Bearer {self.password}"


def _number_from_env(env: Mapping[str, str], name: str, kind: type[_Number]) -> _Number | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError as exc:
        raise MlflowConnectionError(f"{name}={raw!r} is not a valid {kind.__name__}.") from exc


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _fluent_state() -> tuple[str | None, str | None, str | None]:
    """The tracking/registry URIs set with ``mlflow.set_*_uri`` and the ``set_experiment`` id (None when unset).

    MLflow has no public getter that tells "unset" apart from a default: ``mlflow.get_tracking_uri()`` returns
    ``sqlite:///mlflow.db`` when nothing is set, and restoring that would pin a store in the current directory. The
    explicitly set values live in module globals of MLflow's fluent API; reading them is wrapped here, once.
    """
    from mlflow.tracking import fluent
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    return tracking_utils._tracking_uri, registry_utils._registry_uri, fluent._active_experiment_id


def _set_active_experiment_id(experiment_id: str | None) -> None:
    """Set MLflow's fluent active experiment id; ``mlflow.set_experiment`` cannot unset it (see :func:`_fluent_state`).

    A stale id from another server would make ``mlflow.start_run(run_id=...)`` refuse to resume a run of another
    experiment, or start new runs in a foreign experiment.
    """
    from mlflow.tracking import fluent

    # MLflow declares the global as `= None` without a hint, so mypy infers the type None for it.
    fluent._active_experiment_id = experiment_id  # type: ignore[assignment]


def same_tracking_uri(left: str, right: str) -> bool:
    """Compare two tracking URIs as MLflow would reach them (credentials, case of the host and trailing '/' aside)."""

    def canonical(uri: str) -> str:
        uri = strip_userinfo(uri).rstrip("/")
        scheme, sep, rest = uri.partition("://")
        if not sep:
            return uri
        host, slash, path = rest.partition("/")
        return f"{scheme.lower()}://{host.lower()}{slash}{path}"

    return canonical(left) == canonical(right)


# MLflow's message for an answer that is not its JSON error format (a proxy's or another server's page).
_UNPARSED_ANSWER = re.compile(r"failed with error code (\d{3}) != \d{3}")


def _answered_status(exc: BaseException) -> int | None:
    """HTTP status of the server's answer to the failed request; None when no server answered it.

    MLflow keeps the status only in the message of an answer it could not parse, and only as an error code (whose
    status MLflow maps back, 500 by default) for one it could: ``get_http_status_code`` of any ``MlflowException``
    would call a refused connection a 500.
    """
    from mlflow.exceptions import RestException

    match = _UNPARSED_ANSWER.search(str(exc))
    if match is not None:
        return int(match[1])
    if isinstance(exc, RestException):
        return int(exc.get_http_status_code())
    return None
