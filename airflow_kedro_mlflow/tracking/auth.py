"""Credentials reach only the server they belong to: an MLflow request auth plugin scoped by origin.

MLflow's usual ways of passing credentials are process-wide and host-blind: ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``/
``TOKEN`` are environment variables that every child process inherits; ``~/.mlflow/credentials`` is read for every
server; a request *header* provider adds its headers to every MLflow request, whatever the host — so a Kedro node
(or a library it calls) that talks to another MLflow server during a run would receive our password.

MLflow's request *auth* provider plugin (named by ``MLFLOW_TRACKING_AUTH``) is different: MLflow hands the
``requests.auth.AuthBase`` it returns to ``requests``, which calls it with the prepared request, URL included. So
:class:`OriginScopedAuth` adds the ``Authorization`` header only when the request's origin (scheme, host, port) is
the origin of a :class:`~airflow_kedro_mlflow.tracking.TrackingConfig` active in this process; ``requests`` itself
drops the header when a redirect leaves that origin. The environment variable holds only the plugin's name, never a
secret. The plugin is registered through the ``mlflow.request_auth_provider`` entry point (so a child process that
inherits the variable finds it, and adds nothing: no config is active there) and, for a package imported from a
source checkout without its entry points, once at first activation.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from requests import PreparedRequest

#: The plugin's name, the value of ``MLFLOW_TRACKING_AUTH`` while a config with credentials is active.
PROVIDER_NAME = "airflow-kedro-mlflow"

_DEFAULT_PORTS = {"http": 80, "https": 443}

#: (origin, Authorization header) of the active configs, innermost last.
_active: list[tuple[tuple[str, str, int], str]] = []
_lock = threading.Lock()


def origin(uri: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an http(s) URI, lower-cased with the default port filled in; None otherwise."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        return None
    return scheme, parts.hostname.lower(), port


def authorization_for(url: str) -> str | None:
    """The ``Authorization`` header for a request to ``url``: the innermost active config with that origin, if any."""
    target = origin(url)
    if target is None:
        return None
    with _lock:
        for scoped_origin, header in reversed(_active):
            if scoped_origin == target:
                return header
    return None


@contextmanager
def scoped_credentials(uris: list[str], header: str) -> Iterator[None]:
    """Send ``header`` to the origins of ``uris`` (tracking and registry of one connection) until the block ends."""
    ensure_registered()
    origins = sorted({found for found in map(origin, uris) if found is not None})
    with _lock:
        _active.extend((scoped, header) for scoped in origins)
    try:
        yield
    finally:
        with _lock:
            for scoped in origins:
                _active.remove((scoped, header))


class OriginScopedAuth:
    """``requests`` auth: adds the active config's ``Authorization`` header to requests for its own origin only."""

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        header = authorization_for(request.url) if request.url else None  # a request without a URL has no origin
        if header is not None:
            request.headers["Authorization"] = header
        return request


class OriginScopedAuthProvider:
    """MLflow request auth provider (``mlflow.request_auth_provider`` entry point) returning :class:`OriginScopedAuth`.

    Duck-typed on MLflow's ``RequestAuthProvider`` (``get_name``/``get_auth``, all MLflow calls): subclassing it would
    import MLflow here, and this module is loaded by every process that imports MLflow with this package installed.
    """

    def get_name(self) -> str:
        return PROVIDER_NAME

    def get_auth(self) -> OriginScopedAuth:
        return OriginScopedAuth()


def ensure_registered() -> None:
    """Add the provider to MLflow's registry unless its entry point already did (a source checkout has none)."""
    from mlflow.tracking.request_auth.registry import _request_auth_provider_registry

    with _lock:
        if not any(provider.get_name() == PROVIDER_NAME for provider in _request_auth_provider_registry):
            _request_auth_provider_registry.register(OriginScopedAuthProvider)
