"""Open a Kedro project the same way everywhere: training, modelify, the CLI and the Kedro hook's helpers.

Why a module of its own: Kedro keeps the "current project" in process-wide globals (``sys.path``, the configured
package, its settings and pipeline registry, the logging config). Every entry point of this package must set those
up identically, with errors that say which path, env or pipeline is wrong and how to fix it — instead of Kedro's
``RuntimeError`` about a ``pyproject.toml`` or a bare ``KeyError``.

Public helpers (reused by ``modelify.py``; keep their signatures stable):

- :func:`prepare_kedro_environment` — telemetry off and the package's plain logging config, *before* kedro is
  imported (importing any ``kedro`` module configures logging).
- :func:`bootstrap` — validate a project path and make it the current Kedro project; returns :class:`KedroProject`.
- :func:`open_session` — a context manager yielding a ``KedroSession`` for ``project_path``/``env``/``conf_source``/
  ``runtime_params``, after checking that the env exists.
- :func:`get_pipeline` — a registered pipeline by name, with close matches when the name is unknown.
- :func:`register_session_hooks` — add Kedro hook objects to one session only.
- :class:`KedroRunSpec` — *which* Kedro project run (project, pipeline, env, conf source, runtime params): the one
  parameter object training, modelify, the XCom payload, the operators and the CLI pass around.
- :func:`effective_env` — the env a session really reads, recorded on runs and models.
- :func:`check_runtime_params` — runtime params keep the types of the project's parameters; typos are warned about
  (:func:`project_parameters`: the parameters without runtime params).

Every ``kedro`` import below is local to a function: :func:`prepare_kedro_environment` must run first.
"""

from __future__ import annotations

import copy
import difflib
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_kedro_mlflow.exceptions import AirflowKedroMlflowError, KedroProjectError

if TYPE_CHECKING:
    from kedro.framework.context import KedroContext
    from kedro.framework.session import KedroSession
    from kedro.pipeline import Pipeline

logger = logging.getLogger(__name__)

#: Plain, handler-free Kedro logging config shipped with the package (see the file for why).
PLAIN_LOGGING_CONFIG = Path(__file__).with_name("kedro_logging.yml")

#: Set to ``true`` (or 1/yes/on) to turn airflow-kedro-mlflow's Kedro hook off for a process; the training
#: operator sets it while it runs, so that in a DAG only the modelify task logs models.
HOOK_DISABLED_ENV_VAR = "AIRFLOW_KEDRO_MLFLOW_HOOK_DISABLED"

_TELEMETRY_OFF = {"KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}

#: The project :func:`bootstrap` made current last, for :func:`_is_current` (None before the first bootstrap).
_last_bootstrapped: KedroProject | None = None


@dataclass(frozen=True)
class KedroProject:
    """What :func:`bootstrap` learnt from a project's ``pyproject.toml`` (``[tool.kedro]``)."""

    project_path: Path
    package_name: str
    project_name: str
    source_dir: Path


@dataclass(frozen=True)
class KedroRunSpec:
    """Which Kedro project run: the project, the registered pipeline, and the configuration it runs with.

    The same five values travel from the operator (or CLI, or Python caller) to the Kedro session, into the training
    XCom and back into modelify, so they are one object, checked once, here.

    :param project_path: Kedro project root (folder of ``pyproject.toml``) as this machine sees it.
    :param pipeline_name: a pipeline registered by the project's ``register_pipelines``.
    :param env: Kedro configuration environment; ``KEDRO_ENV`` or the project's default run env when None.
    :param conf_source: configuration folder or archive instead of the project's ``conf/``.
    :param runtime_params: extra Kedro params, as ``kedro run --params`` gives them.
    :raises KedroProjectError: a value of the wrong type, or an empty project path or pipeline name.
    """

    project_path: str
    pipeline_name: str = "training"
    env: str | None = None
    conf_source: str | None = None
    runtime_params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        project_path = os.fspath(self.project_path) if isinstance(self.project_path, os.PathLike) else self.project_path
        for name, value in (("project_path", project_path), ("pipeline_name", self.pipeline_name)):
            if not isinstance(value, str) or not value.strip():
                raise KedroProjectError(
                    f"{name} must be a non-empty string, got {value!r}. Pass the Kedro project root and the name of a "
                    "pipeline its register_pipelines() returns."
                )
        for name in ("env", "conf_source"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise KedroProjectError(f"{name} must be a string or None, got {type(value).__name__} {value!r}.")
            object.__setattr__(self, name, value or None)  # "" (an unset templated field) means "not given"
        runtime_params = self.runtime_params if self.runtime_params is not None else {}
        if not isinstance(runtime_params, Mapping):
            raise KedroProjectError(
                f"runtime_params must be a mapping of parameter name to value, got {type(runtime_params).__name__}: "
                f"{runtime_params!r}. Pass e.g. {{'C': 0.5}}."
            )
        object.__setattr__(self, "project_path", project_path)
        object.__setattr__(self, "runtime_params", dict(runtime_params))

    def with_overrides(self, **overrides: Any) -> KedroRunSpec:
        """A copy with the given fields replaced; None means "keep this spec's value"."""
        known = {spec_field.name for spec_field in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise KedroProjectError(f"KedroRunSpec has no field(s) {unknown}; its fields are {sorted(known)}.")
        return replace(self, **{key: value for key, value in overrides.items() if value is not None})

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON types, the keys named as in the training XCom."""
        return {spec_field.name: getattr(self, spec_field.name) for spec_field in fields(self)} | {
            "runtime_params": dict(self.runtime_params)
        }

    @contextmanager
    def session(self) -> Iterator[KedroSession]:
        """Open a session of this project with this env, conf source and runtime params (see :func:`open_session`).

        The runtime params are checked against the project's own parameters first (:func:`check_runtime_params`),
        here because training and modelify both open their sessions through this method: a value of another type
        is refused before anything runs or is logged, a key nothing reads is warned about.

        :raises KedroProjectError: as :func:`open_session`, or a runtime param of the wrong type.
        """
        with open_session(
            self.project_path, env=self.env, conf_source=self.conf_source, runtime_params=self.runtime_params or None
        ) as session:
            if self.runtime_params:
                check_runtime_params(session.load_context(), self.runtime_params)
            yield session


def effective_env(context: KedroContext) -> str | None:
    """The env Kedro really reads for ``context``: the one asked for (argument or ``KEDRO_ENV``), else the project's
    default run env (``local``) when its folder exists, else None (only ``base``).

    One answer for every entry point, so a run, the model logged from it and the training XCom agree.
    """
    if context.env:
        return str(context.env)
    loader = context.config_loader
    default = getattr(loader, "default_run_env", None)
    conf_source = getattr(loader, "conf_source", None)
    if not default or conf_source is None or "://" in str(conf_source):
        return default or None
    return default if (Path(conf_source) / default).is_dir() else None


def resolved_conf_source(project_path: str | os.PathLike[str], conf_source: str | None) -> str | None:
    """A local ``conf_source`` made absolute (relative to the project root, not the worker's current directory)."""
    if conf_source is None or "://" in conf_source:
        return conf_source
    path = Path(conf_source).expanduser()
    return str((path if path.is_absolute() else Path(project_path) / path).resolve())


def prepare_kedro_environment() -> None:
    """Turn Kedro telemetry off and point Kedro at the package's plain logging config; call before importing kedro.

    Importing any ``kedro`` module runs ``logging.config.dictConfig`` with Kedro's Rich config, which replaces the
    root logger's handlers — in an Airflow task, the task log handlers. ``KEDRO_LOGGING_CONFIG`` set beforehand makes
    Kedro apply :data:`PLAIN_LOGGING_CONFIG` instead, which only sets logger levels. A value the caller already set
    is respected. If kedro was imported earlier in this process, the plain config is applied now so that later
    ``configure_project`` calls re-apply it rather than the Rich one.
    """
    os.environ.update(_TELEMETRY_OFF)
    if "KEDRO_LOGGING_CONFIG" in os.environ:
        return
    os.environ["KEDRO_LOGGING_CONFIG"] = str(PLAIN_LOGGING_CONFIG)
    if "kedro.framework.project" in sys.modules:
        import yaml
        from kedro.framework.project import configure_logging

        configure_logging(yaml.safe_load(PLAIN_LOGGING_CONFIG.read_text(encoding="utf-8")))


def bootstrap(project_path: str | os.PathLike[str]) -> KedroProject:
    """Make ``project_path`` the current Kedro project of this process and return its metadata.

    On top of Kedro's ``bootstrap_project`` this (1) checks the path first and says what a project root looks like,
    (2) puts the project's source dir *first* on ``sys.path`` and forgets modules of the same package imported from
    somewhere else (another copy of the project, an older checkout), so the code that runs is this project's code.

    :param project_path: directory holding the project's ``pyproject.toml`` with a ``[tool.kedro]`` section.
    :raises KedroProjectError: the path does not exist, is not a Kedro project, or its metadata is invalid.
    """
    path = _check_project_path(project_path)
    prepare_kedro_environment()
    from kedro.framework.startup import bootstrap_project

    try:
        metadata = bootstrap_project(path)
    except (RuntimeError, ValueError, NotADirectoryError) as exc:
        raise KedroProjectError(
            f"{path} is not a usable Kedro project: {exc} Check its pyproject.toml ([tool.kedro] package_name, "
            "project_name, kedro_init_version, source_dir)."
        ) from exc
    project = KedroProject(
        project_path=path,
        package_name=metadata.package_name,
        project_name=metadata.project_name,
        source_dir=Path(metadata.source_dir),
    )
    if _prefer_project_sources(project):
        from kedro.framework.project import configure_project

        configure_project(project.package_name)  # this copy's settings.py and pipeline registry, not the other's
    global _last_bootstrapped  # noqa: PLW0603 - Kedro's "current project" is process-wide; so is this record of it
    _last_bootstrapped = project
    return project


def _is_current(project_path: Path) -> bool:
    """Whether :func:`bootstrap` made ``project_path`` the current Kedro project and Kedro's globals still say so.

    Kedro keeps the current project in process-wide state that any code can change (``bootstrap_project``,
    ``configure_project``, ``sys.path``): the package Kedro is configured for, the first ``sys.path`` entry and the
    copy of the package that is imported must all still be this project's, else it has to be bootstrapped again.
    """
    project = _last_bootstrapped
    if project is None or project.project_path != project_path:
        return False
    import kedro.framework.project as kedro_project

    if project.package_name != kedro_project.PACKAGE_NAME or sys.path[:1] != [str(project.source_dir)]:
        return False
    loaded_file = getattr(sys.modules.get(project.package_name), "__file__", None)
    package_dir = (project.source_dir / project.package_name).resolve()
    return loaded_file is None or Path(loaded_file).resolve().is_relative_to(package_dir)


@contextmanager
def open_session(
    project_path: str | os.PathLike[str],
    env: str | None = None,
    conf_source: str | None = None,
    runtime_params: Mapping[str, Any] | None = None,
) -> Iterator[KedroSession]:
    """Bootstrap ``project_path`` and yield a new ``KedroSession``; the session is closed on exit.

    The env is checked before the session is created (Kedro itself would only fail later, deep in the config
    loader): it must be a sub-directory of the configuration source. ``env=None`` means ``KEDRO_ENV`` or the
    project's default run env, as with ``kedro run``.

    :param project_path: Kedro project root (the directory with ``pyproject.toml``).
    :param env: Kedro configuration environment, e.g. ``"local"`` or ``"prod"``.
    :param conf_source: configuration directory or archive; default: the project's ``conf/`` (``CONF_SOURCE``).
        A relative local path is taken relative to the project root, not to the worker's current directory.
    :param runtime_params: extra parameters, as ``kedro run --params`` gives them; they override ``parameters.yml``
        and feed ``${runtime_params:...}`` in the catalog.
    :raises KedroProjectError: not a Kedro project, unknown env, missing ``conf_source``, broken ``settings.py``.
    """
    project = bootstrap(project_path)
    if runtime_params is not None and not isinstance(runtime_params, Mapping):
        raise KedroProjectError(
            f"runtime_params must be a mapping of parameter name to value, got {type(runtime_params).__name__}: "
            f"{runtime_params!r}. Pass e.g. {{'C': 0.5}}."
        )
    from kedro.framework.session import KedroSession

    resolved_conf_source = _check_env(project, env, conf_source)
    try:
        session = KedroSession.create(
            project_path=project.project_path,
            env=env,
            conf_source=resolved_conf_source,
            runtime_params=dict(runtime_params) if runtime_params else None,
        )
    except (ImportError, SyntaxError, ValueError) as exc:
        raise KedroProjectError(
            f"Kedro could not open a session for project {project.project_path} "
            f"(package {project.package_name!r}): {exc}. Check src/{project.package_name}/settings.py."
        ) from exc
    from airflow_kedro_mlflow.kedro_mlflow_compat import hold_off_kedro_mlflow

    hold_off_kedro_mlflow(session._hook_manager)  # kedro-mlflow installed too: one run, ours, on our server
    with session:
        yield session


def get_pipeline(project: KedroSession | str | os.PathLike[str], name: str) -> Pipeline:
    """Return the pipeline registered as ``name`` by the project's ``register_pipelines``.

    This is the registry object itself (a ``PipelineML`` stays a ``PipelineML``), not what ``KedroSession.run``
    builds from it: Kedro 1.x adds the selected pipelines to an empty ``Pipeline``, which is why a hook or a
    training run must look the pipeline up here by name.

    :param project: an open session, or a project path. The project is bootstrapped again unless it is still the
        current one (other code in the process may have made another project current since): bootstrapping reloads
        Kedro's settings, which costs a tenth of a second or more, and drops the registry Kedro has loaded.
    :param name: pipeline name, e.g. ``"training"``.
    :raises KedroProjectError: unknown name (with close matches), or the registry itself failed to load.
    """
    if isinstance(project, (str, os.PathLike)):
        project_path = Path(project).expanduser().resolve()
    else:
        project_path = Path(project.store["project_path"])
    if not _is_current(project_path):
        bootstrap(project_path)
    from kedro.framework.project import pipelines

    registry = _load_registry(pipelines, project_path)
    if name not in registry:
        known = sorted(registry)
        matches = difflib.get_close_matches(name, known)
        hint = f" Did you mean {' or '.join(repr(m) for m in matches)}?" if matches else ""
        raise KedroProjectError(
            f"Kedro project {project_path} has no pipeline named {name!r}; its register_pipelines() returns "
            f"{known}.{hint} Pass one of these names, or register the pipeline in pipeline_registry.py."
        )
    return registry[name]


def register_session_hooks(session: KedroSession, *hooks: object) -> None:
    """Register Kedro hook implementations on ``session`` only (not in the project's ``settings.HOOKS``).

    Kedro has no public API to add a hook to one session; ``KedroSession`` keeps its pluggy manager in
    ``_hook_manager`` (unchanged since kedro 0.18). Wrapping that private attribute here keeps it in one place.
    A hook object already registered is skipped, so calling this twice is harmless.
    """
    manager = session._hook_manager
    for hook in hooks:
        if not manager.is_registered(hook):
            manager.register(hook)


def _check_project_path(project_path: str | os.PathLike[str]) -> Path:
    if project_path is None or str(project_path).strip() == "":
        raise KedroProjectError("project_path is empty. Pass the Kedro project root (the folder of pyproject.toml).")
    path = Path(project_path).expanduser().resolve()
    if not path.is_dir():
        raise KedroProjectError(
            f"Kedro project path {path} does not exist or is not a directory. Pass the project root as the worker "
            "sees it (the folder holding pyproject.toml, where you would run `kedro run`)."
        )
    pyproject = path / "pyproject.toml"
    if not pyproject.is_file() or "[tool.kedro]" not in pyproject.read_text(encoding="utf-8"):
        raise KedroProjectError(
            f"{path} is not a Kedro project: it has no pyproject.toml with a [tool.kedro] section. Pass the project "
            "root (the folder holding pyproject.toml, where you would run `kedro run`)."
        )
    return path


def _prefer_project_sources(project: KedroProject) -> bool:
    """Make ``import <package>`` load this project's sources, even after another copy was imported.

    Returns True when modules of another copy were forgotten: Kedro's ``bootstrap_project`` has then already read that
    copy's settings (hooks, catalog class...), so the caller configures the project again.
    """
    import importlib

    source_dir = str(project.source_dir)
    if sys.path[:1] != [source_dir]:
        while source_dir in sys.path:
            sys.path.remove(source_dir)
        sys.path.insert(0, source_dir)
    package_dir = project.source_dir / project.package_name
    loaded = sys.modules.get(project.package_name)
    loaded_file = getattr(loaded, "__file__", None)
    if loaded is None or not package_dir.is_dir():
        return False
    if loaded_file is not None and Path(loaded_file).resolve().is_relative_to(package_dir.resolve()):
        return False
    stale = [
        name for name in sys.modules if name == project.package_name or name.startswith(project.package_name + ".")
    ]
    logger.debug("Forgetting %d modules of %s imported from %s", len(stale), project.package_name, loaded_file)
    for name in stale:
        del sys.modules[name]
    importlib.invalidate_caches()
    return True


def _check_env(project: KedroProject, env: str | None, conf_source: str | None) -> str | None:
    """Check ``conf_source`` exists and ``env`` (or ``KEDRO_ENV``) is one of its sub-directories.

    Archives (``.zip``/``.tar.gz``) and remote URLs are passed to Kedro unchecked: listing them would mean reading
    them twice. Returns the conf_source to hand to Kedro (a local one made absolute).
    """
    from kedro.framework.project import settings

    requested = env or os.environ.get("KEDRO_ENV")
    if conf_source is not None and ("://" in conf_source or conf_source.endswith((".zip", ".tar.gz", ".tgz"))):
        return conf_source
    if conf_source is None:
        conf_dir = project.project_path / settings.CONF_SOURCE
    else:
        conf_dir = Path(conf_source).expanduser()
        if not conf_dir.is_absolute():
            conf_dir = project.project_path / conf_dir
    if not conf_dir.is_dir():
        raise KedroProjectError(
            f"Configuration source {conf_dir} of Kedro project {project.project_path} does not exist. Pass an "
            "existing conf_source (a directory holding base/ and your env folders), or leave it unset for conf/."
        )
    if requested is not None and not (conf_dir / requested).is_dir():
        base_env = dict(settings.CONFIG_LOADER_ARGS).get("base_env", "base")
        envs = sorted(p.name for p in conf_dir.iterdir() if p.is_dir() and p.name != base_env)
        matches = difflib.get_close_matches(requested, envs)
        hint = f" Did you mean {' or '.join(repr(m) for m in matches)}?" if matches else ""
        origin = "" if env else " (from the KEDRO_ENV environment variable)"
        raise KedroProjectError(
            f"Kedro env {requested!r}{origin} does not exist in {conf_dir}; available envs: {envs}.{hint} "
            f"Create {conf_dir / requested}/, or pass one of the available envs."
        )
    return None if conf_source is None else str(conf_dir.resolve())


def _load_registry(pipelines: Any, project_path: Path) -> dict[str, Pipeline]:
    """Load every registered pipeline, wrapping failures of the project's own registry code once."""
    pipelines.set_requested(None)
    try:
        return dict(pipelines.items())
    except AirflowKedroMlflowError:
        raise
    except Exception as exc:
        raise KedroProjectError(
            f"register_pipelines() of Kedro project {project_path} failed: {type(exc).__name__}: {exc}. "
            "Fix the project's pipeline_registry.py (run `kedro registry list` there to see the same error)."
        ) from exc


# -- runtime params checked against the project's own parameters ------------------------------------------------------

#: ``${runtime_params:<key>}`` or ``${runtime_params:<key>, <default>}`` in a configuration file (as Kedro reads it).
_RUNTIME_PARAM_REFERENCE = re.compile(r"\$\{\s*runtime_params:\s*([^,}\s]+)")
_CONF_SUFFIXES = frozenset({".yml", ".yaml", ".json"})


def project_parameters(context: KedroContext) -> dict[str, Any]:
    """Return the project's parameters as its configuration files give them, without the session's runtime params.

    These are the types an override must keep, and the values training used for keys its runtime params left
    alone. Kedro's config loader merges the runtime params into ``parameters`` itself, so a copy of it without any
    reads the files again.
    """
    from kedro.config import MissingConfigException

    loader = copy.copy(context.config_loader)
    loader.runtime_params = {}
    try:
        return dict(loader["parameters"])
    except (KeyError, MissingConfigException):
        return {}


def conf_runtime_param_keys(context: KedroContext) -> set[str]:
    """Return the keys the project's configuration reads as ``${runtime_params:<key>}`` (e.g. a catalog's data root).

    Every file of a local configuration folder is scanned, all envs included (a key some env reads is a real key);
    an archive or remote configuration source is not scanned.
    """
    conf_source = getattr(context.config_loader, "conf_source", None)
    if not conf_source or "://" in str(conf_source) or not Path(conf_source).is_dir():
        return set()
    keys: set[str] = set()
    for path in Path(conf_source).rglob("*"):
        if path.suffix in _CONF_SUFFIXES and path.is_file():
            keys.update(_RUNTIME_PARAM_REFERENCE.findall(path.read_text(encoding="utf-8", errors="replace")))
    return keys


def check_runtime_params(context: KedroContext, runtime_params: Mapping[str, Any]) -> None:
    """Refuse runtime params of another type than the project's parameter; warn about keys nothing reads.

    An override of the wrong type (``threshold="abc"`` where ``parameters.yml`` has ``threshold: 0.5``) trains or
    ships a model that fails at every prediction, so it is refused before anything runs or is logged: int and float
    are interchangeable, bool is not a number, a string is not a number, and a parameter that is null (or an
    override that is null) accepts anything. A key that is neither a parameter nor read by the configuration as
    ``${runtime_params:<key>}`` is most likely a typo (``Cc`` for ``C``), which Kedro accepts silently: it is warned
    about, with close matches. Nested params (``--params model.threshold=0.7``) are compared key by key.

    :raises KedroProjectError: naming every mistyped param, its value and the type expected.
    """
    parameters = project_parameters(context)
    conf_keys = conf_runtime_param_keys(context)
    mistyped, unknown = _compare_params(runtime_params, parameters, conf_keys)
    for key, known in unknown.items():
        matches = difflib.get_close_matches(key.rsplit(".", 1)[-1], known)
        hint = f" Did you mean {' or '.join(repr(m) for m in matches)}?" if matches else ""
        logger.warning(
            "runtime param %r is not a parameter of Kedro project %s, and its configuration never reads it as "
            "${runtime_params:%s}: no node or dataset will see it.%s Known at this level: %s.",
            key,
            context.project_path,
            key,
            hint,
            known,
        )
    if mistyped:
        raise KedroProjectError(
            " ".join(mistyped) + " Pass values of the parameters' types (--params reads values as YAML: "
            "threshold=0.7; quote a string: name=\"'0.7'\"; a DAG passes typed values only with "
            "render_template_as_native_obj=True), or change the parameter's type in the project's parameters."
        )


def _compare_params(
    given: Mapping[str, Any], expected: Mapping[str, Any], conf_keys: set[str], prefix: str = ""
) -> tuple[list[str], dict[str, list[str]]]:
    """Return (one message per mistyped param, {unknown dotted key: the known keys at its level})."""
    mistyped: list[str] = []
    unknown: dict[str, list[str]] = {}
    for key, value in given.items():
        dotted = f"{prefix}{key}"
        if key not in expected:
            if not _read_by_conf(dotted, conf_keys):
                siblings = {str(name) for name in expected}
                if not prefix:
                    siblings |= {ref.split(".", 1)[0] for ref in conf_keys}
                unknown[dotted] = sorted(siblings)
            continue
        default = expected[key]
        if isinstance(default, Mapping) and isinstance(value, Mapping):
            nested_mistyped, nested_unknown = _compare_params(value, default, conf_keys, f"{dotted}.")
            mistyped += nested_mistyped
            unknown |= nested_unknown
            continue
        kind = _expected_kind(value, default)
        if kind is not None:
            mistyped.append(
                f"runtime param {dotted!r}={value!r} is a {type(value).__name__}, but the project's parameters "
                f"have {default!r} (a {kind})."
            )
    return mistyped, unknown


def _read_by_conf(dotted: str, conf_keys: set[str]) -> bool:
    """Whether the configuration reads ``dotted`` (or a key inside it, or a dict holding it) as a runtime param."""
    return any(ref == dotted or ref.startswith(f"{dotted}.") or dotted.startswith(f"{ref}.") for ref in conf_keys)


def _expected_kind(value: Any, default: Any) -> str | None:
    """The kind of value ``default`` asks for when ``value`` is not of it, else None."""
    if default is None or value is None:
        return None
    checks: tuple[tuple[type | tuple[type, ...], str], ...] = (
        (bool, "bool"),
        ((int, float), "number"),
        (str, "str"),
        ((list, tuple), "list"),
        (Mapping, "dict"),
    )
    for kinds, name in checks:
        if isinstance(default, kinds):
            same = isinstance(value, kinds) and (name == "bool" or not isinstance(value, bool))
            return None if same else name
    return None
