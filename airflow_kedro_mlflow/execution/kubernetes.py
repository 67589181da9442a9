"""Run a Kedro task in the project's image, as a Kubernetes pod: :class:`KubernetesExecution`.

The third execution mode, next to :class:`~.modes.InProcessExecution` and :class:`~.modes.VirtualenvExecution`: the
same ``airflow-kedro-mlflow train``/``modelify`` command lines (:mod:`.commands`), run by the cncf-kubernetes
provider's ``KubernetesPodOperator`` (KPO) in the project's image instead of a child process. What differs:

- The result comes back through KPO's XCom sidecar: the CLI writes ``--output /airflow/xcom/return.json``, KPO reads
  it when the container ends and hands it over as a dict, parsed here exactly as the virtualenv mode parses its file,
  so the XCom payload is the same in every mode.
- Credentials: the connection's login and password never leave the worker. The pod reads MLflow's credential
  variables from a Kubernetes Secret (``env_from``, or one secret key per variable); the spec only *names* it.
  Command line and plain variables hold the credential-free tracking URI and the HTTP settings only.
- The container's log is streamed into the task log by KPO (``get_logs=True``); a callback watches it for the line
  by which ``train`` announces its MLflow run (:data:`~.commands.RUN_STARTED_PREFIX`), as the subprocess runner does.
- A failed pod is re-raised as the error the CLI named on its last line (``Error: KedroRunError: ...``), or, when
  the image could not run the CLI at all, as an error naming the image and how to build one that can.
- Killed (Airflow's ``on_kill``, a timeout): the pod is deleted (KPO's own ``on_kill``), and the MLflow run it
  announced is marked FAILED; the interruption propagates unchanged.

The provider is an optional extra (``pip install 'airflow-kedro-mlflow[kubernetes]'``), imported when a pod is built,
never when a DAG file builds a :class:`KubernetesExecution`. This module is the one place of the execution layer that
imports Airflow (the provider's operator and the task context); the core never does.
"""

from __future__ import annotations

import collections
import json
import logging
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_kedro_mlflow.exceptions import MlflowConnectionError, ProjectEnvironmentError, ProjectProcessError
from airflow_kedro_mlflow.execution.commands import CLI_MODULE, modelify_command, parse_run_started, train_command

if TYPE_CHECKING:
    from airflow_kedro_mlflow.kedro_project import KedroRunSpec
    from airflow_kedro_mlflow.modelify import ModelifyResult
    from airflow_kedro_mlflow.tracking import TrackingConfig
    from airflow_kedro_mlflow.training_result import TrainingResult

logger = logging.getLogger(__name__)

#: The file KPO's XCom sidecar reads when the container ends: the CLI's ``--output``.
XCOM_RETURN_FILE = "/airflow/xcom/return.json"
#: The extra that installs the provider this mode runs on.
KUBERNETES_EXTRA = "airflow-kedro-mlflow[kubernetes]"
#: The training XCom, for ``modelify --training-result``: an environment variable of the pod (no secret in it, it
#: is an XCom), written to a file by the container's shell before the CLI starts.
TRAINING_RESULT_ENV = "AIRFLOW_KEDRO_MLFLOW_TRAINING_RESULT"
TRAINING_RESULT_FILE = "/tmp/airflow-kedro-mlflow-training-result.json"  # a path inside the pod
#: MLflow's credential variables: they come from the secret only, never as plain ``env_vars``.
CREDENTIAL_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
#: What every pod gets: line-by-line logs, and the telemetry off as in the task process.
_POD_ENV = {"PYTHONUNBUFFERED": "1", "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
#: KPO arguments this mode sets itself: ``pod_kwargs`` may not override them.
_RESERVED_POD_KWARGS = frozenset(
    {"task_id", "image", "namespace", "cmds", "arguments", "env_vars", "env_from", "secrets", "container_resources",
     "do_xcom_push", "get_logs", "deferrable", "kubernetes_conn_id", "callbacks"}
)  # fmt: skip
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_TAIL_LINES = 40
#: Exit codes and container reasons of a container that could not start the CLI at all.
_CANNOT_RUN_EXIT_CODES = frozenset({126, 127, 128})
_CANNOT_RUN_REASONS = frozenset({"ContainerCannotRun", "StartError", "CreateContainerError"})
_MISSING_MODULE = re.compile(r"No module named '?(airflow_kedro_mlflow|kedro|mlflow)\b")


@dataclass(frozen=True)
class KubernetesExecution:
    """Run Kedro in the project's image, in a pod of a Kubernetes cluster (the cncf-kubernetes provider's
    ``KubernetesPodOperator``). The image holds the project, Kedro, MLflow and this package's core, not Airflow
    (docs/kubernetes_image.md has a Dockerfile).

    :param image: the project's image, e.g. ``registry.example.com/churn:1.4``.
    :param namespace: where pods run; the Kubernetes connection's (or the cluster's default) when None.
    :param project_path: the Kedro project root inside the image, e.g. ``/app``; the operator's ``project_path``
        when None (an image that lays the project out where the workers have it).
    :param resources: the container's ``{"requests": {...}, "limits": {...}}``, e.g.
        ``{"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}``.
    :param mlflow_secret: name of the Kubernetes Secret (in ``namespace``) holding the MLflow credentials. With
        ``mlflow_secret_keys`` None, its keys are MLflow's variable names (``MLFLOW_TRACKING_USERNAME`` and
        ``MLFLOW_TRACKING_PASSWORD``, or ``MLFLOW_TRACKING_TOKEN``) and the pod gets all of them (``envFrom``).
        Required when the MLflow connection has credentials: the pod never gets the connection's own.
    :param mlflow_secret_keys: ``{variable: key in mlflow_secret}`` instead, one ``secretKeyRef`` each, e.g.
        ``{"MLFLOW_TRACKING_USERNAME": "username", "MLFLOW_TRACKING_PASSWORD": "password"}``.
    :param env_vars: more plain (non-secret) variables for the container, e.g. ``{"KEDRO_ENV": "prod"}``.
    :param kubernetes_conn_id: the Airflow connection to the cluster (``kubernetes_default``: in-cluster or the
        worker's kube config).
    :param python: the image's interpreter.
    :param pod_kwargs: any other ``KubernetesPodOperator`` argument (``service_account_name``,
        ``image_pull_secrets``, ``node_selector``, ``tolerations``, ``startup_timeout_seconds``...), except the
        ones this mode sets (image, command, env, secrets, resources, XCom, logs).
    :raises ProjectEnvironmentError: a missing image, or an argument of the wrong shape.
    """

    image: str
    namespace: str | None = None
    project_path: str | None = None
    resources: Mapping[str, Mapping[str, str]] | None = None
    mlflow_secret: str | None = None
    mlflow_secret_keys: Mapping[str, str] | None = None
    env_vars: Mapping[str, str] = field(default_factory=dict)
    kubernetes_conn_id: str = "kubernetes_default"
    python: str = "python"
    pod_kwargs: Mapping[str, Any] = field(default_factory=dict)

    #: The operators hand this mode the Airflow task context: KPO needs it (labels, XCom of the pod's name).
    needs_airflow_context: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not isinstance(self.image, str) or not self.image.strip():
            raise ProjectEnvironmentError(
                f"KubernetesExecution needs the project's image, got image={self.image!r}: pass e.g. "
                "image='registry.example.com/my-project:1.0' (docs/kubernetes_image.md builds one)."
            )
        for name in ("namespace", "project_path", "mlflow_secret", "kubernetes_conn_id", "python"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ProjectEnvironmentError(f"KubernetesExecution({name}=...) must be a string, got {value!r}.")
        _check_resources(self.resources)
        _check_env_names("env_vars", self.env_vars)
        leaked = sorted(set(self.env_vars) & set(CREDENTIAL_VARIABLES))
        if leaked:
            raise ProjectEnvironmentError(
                f"KubernetesExecution(env_vars=...) sets {leaked}: credentials in plain variables would be in clear in "
                "the pod spec. Put them in a Kubernetes Secret and pass its name as mlflow_secret=..."
            )
        if self.mlflow_secret_keys is not None:
            _check_env_names("mlflow_secret_keys", self.mlflow_secret_keys)
            if self.mlflow_secret is None:
                raise ProjectEnvironmentError(
                    "KubernetesExecution(mlflow_secret_keys=...) names keys of a secret: pass the secret's name too, "
                    "mlflow_secret='mlflow-credentials'."
                )
        if not isinstance(self.pod_kwargs, Mapping):
            raise ProjectEnvironmentError(f"pod_kwargs must be a dict of KubernetesPodOperator arguments, got "
                                          f"{self.pod_kwargs!r}.")  # fmt: skip
        reserved = sorted(set(self.pod_kwargs) & _RESERVED_POD_KWARGS)
        if reserved:
            raise ProjectEnvironmentError(
                f"KubernetesExecution(pod_kwargs=...) sets {reserved}, which this mode sets itself: use its own "
                "arguments (image, namespace, resources, env_vars, mlflow_secret, kubernetes_conn_id) instead."
            )

    # -- what the operators call -------------------------------------------------------------------------------------

    def train(
        self,
        spec: KedroRunSpec,
        *,
        tracking: TrackingConfig,
        context: Mapping[str, Any],
        on_run_start: Callable[[str, str | None], None] | None = None,
        **kwargs: Any,
    ) -> TrainingResult:
        """Run ``airflow-kedro-mlflow train`` in a pod of the project's image; return the same result as in-process.

        :param context: the Airflow task context (the pod is labelled with the task, its name pushed to XCom).
        :param kwargs: :func:`~airflow_kedro_mlflow.training.run_training`'s other arguments.
        """
        from airflow_kedro_mlflow.training_result import TrainingResult

        pod = self.train_pod(spec, tracking=tracking, task_id=context["ti"].task_id, **kwargs)
        return TrainingResult.from_xcom(self._run(pod, context, tracking=tracking, on_run_start=on_run_start))

    def modelify(
        self,
        project_path: str | None,
        pipeline_name: str | None,
        *,
        tracking: TrackingConfig,
        context: Mapping[str, Any],
        training: TrainingResult | None = None,
        **kwargs: Any,
    ) -> ModelifyResult:
        """Run ``airflow-kedro-mlflow modelify`` in a pod of the project's image; return the same result as in-process.

        :param kwargs: :func:`~airflow_kedro_mlflow.modelify.modelify`'s other arguments.
        """
        from airflow_kedro_mlflow.modelify import ModelifyResult

        pod = self.modelify_pod(
            project_path, pipeline_name, tracking=tracking, task_id=context["ti"].task_id, training=training, **kwargs
        )
        return ModelifyResult(**self._run(pod, context, tracking=tracking))

    # -- the pods (public so a DAG author can look at them: ``execution.train_pod(...).dry_run()``) ------------------

    def train_pod(self, spec: KedroRunSpec, *, tracking: TrackingConfig, task_id: str, **kwargs: Any) -> Any:
        """The ``KubernetesPodOperator`` that runs ``train`` for these arguments (built, not started).

        :raises ProjectEnvironmentError: the provider is not installed.
        :raises MlflowConnectionError: the connection has credentials and no ``mlflow_secret`` carries them.
        """
        spec = spec.with_overrides(project_path=self.project_path)
        argv = train_command(spec, tracking=tracking, output=XCOM_RETURN_FILE, **kwargs)
        return self._pod_operator(task_id, [self.python, "-m", CLI_MODULE, *argv], tracking=tracking)

    def modelify_pod(
        self,
        project_path: str | None,
        pipeline_name: str | None,
        *,
        tracking: TrackingConfig,
        task_id: str,
        training: TrainingResult | None = None,
        **kwargs: Any,
    ) -> Any:
        """The ``KubernetesPodOperator`` that runs ``modelify`` for these arguments (built, not started).

        A training result travels as a variable (it is an XCom: no secret in it), written to a file by the
        container's ``/bin/sh`` for ``--training-result``. Its ``project_path`` is where training ran; the model is
        built from ``project_path`` (this mode's, else the operator's) when given.
        """
        project = self.project_path or project_path
        if project is None and training is None:
            raise ProjectEnvironmentError(
                "modelify needs a project_path (or a training result): pass KubernetesExecution(project_path=...), "
                "the Kedro project root inside the image."
            )
        argv = modelify_command(
            tracking=tracking,
            output=XCOM_RETURN_FILE,
            training_result=TRAINING_RESULT_FILE if training is not None else None,
            project_path=project,
            pipeline_name=pipeline_name,
            **kwargs,
        )
        command = [self.python, "-m", CLI_MODULE, *argv]
        if training is None:
            return self._pod_operator(task_id, command, tracking=tracking)
        script = f'printf "%s" "${TRAINING_RESULT_ENV}" > {TRAINING_RESULT_FILE} && exec "$@"'
        return self._pod_operator(
            task_id,
            ["/bin/sh", "-c", script, "sh", *command],
            tracking=tracking,
            extra_env={TRAINING_RESULT_ENV: json.dumps(training.to_xcom(), sort_keys=True)},
        )

    def _pod_operator(
        self, task_id: str, command: list[str], *, tracking: TrackingConfig, extra_env: Mapping[str, str] | None = None
    ) -> Any:
        from airflow_kedro_mlflow.execution.environment import tracking_environment

        pod_operator_class, secret_class, k8s = _provider()
        if tracking.password and self.mlflow_secret is None:
            raise MlflowConnectionError(
                "the MLflow connection has credentials, and KubernetesExecution never puts them in a pod spec: "
                "store them in a Kubernetes Secret (kubectl create secret generic mlflow-credentials "
                "--from-literal=MLFLOW_TRACKING_USERNAME=... --from-literal=MLFLOW_TRACKING_PASSWORD=...) and pass "
                "KubernetesExecution(mlflow_secret='mlflow-credentials')."
            )
        plain = {name: value for name, value in tracking_environment(tracking).items()
                 if name not in CREDENTIAL_VARIABLES}  # fmt: skip
        env = {**_POD_ENV, **plain, **self.env_vars, **(extra_env or {})}
        if self.mlflow_secret is None:
            secrets = []
        elif self.mlflow_secret_keys is None:
            secrets = [secret_class("env", None, self.mlflow_secret)]
        else:
            secrets = [secret_class("env", variable, self.mlflow_secret, key)
                       for variable, key in sorted(self.mlflow_secret_keys.items())]  # fmt: skip
        resources = None
        if self.resources:
            resources = k8s.V1ResourceRequirements(**{kind: dict(values) for kind, values in self.resources.items()})
        return pod_operator_class(
            task_id=task_id,
            image=self.image,
            namespace=self.namespace,
            kubernetes_conn_id=self.kubernetes_conn_id,
            cmds=command,
            arguments=[],
            env_vars=[k8s.V1EnvVar(name=name, value=str(value)) for name, value in sorted(env.items())],
            secrets=secrets,
            container_resources=resources,
            do_xcom_push=True,
            get_logs=True,
            deferrable=False,  # the log is watched here, in the task process
            **{"log_pod_spec_on_failure": False, **self.pod_kwargs},  # the error below says what failed
        )

    # -- running one -------------------------------------------------------------------------------------------------

    def _run(
        self,
        pod: Any,
        context: Mapping[str, Any],
        *,
        tracking: TrackingConfig,
        on_run_start: Callable[[str, str | None], None] | None = None,
    ) -> dict[str, Any]:
        """Run ``pod`` to its end; return the payload the CLI wrote, or raise what went wrong, naming the image."""
        from airflow_kedro_mlflow.tracking.runs import fail_run_if_running

        watcher = _LogWatcher(on_run_start)
        pod.callbacks.append(watcher.callback_class())
        try:
            # execute_sync, not execute: execute would only name the pod (already named) and choose the deferrable
            # path (off here), and a nested operator's execute logs "cannot be called outside of the Task Runner".
            payload = pod.execute_sync(context)
        except Exception as exc:
            if watcher.run_id is not None:
                fail_run_if_running(tracking, watcher.run_id, f"the training pod failed ({type(exc).__name__})")
            raise self._failure(pod, exc, watcher) from exc
        except BaseException as interruption:  # on_kill or a timeout: KedroPodOperator (in _provider) deleted the pod
            if watcher.run_id is not None:
                reason = f"the task was interrupted ({type(interruption).__name__}); its pod was deleted"
                fail_run_if_running(tracking, watcher.run_id, reason)
            raise
        if not isinstance(payload, dict):
            raise ProjectProcessError(
                f"the pod of image {self.image} ended without a result in {XCOM_RETURN_FILE} (got {payload!r}). "
                "Is its command this package's CLI? Its last lines:\n" + "\n".join(list(watcher.tail)[-10:])
            )
        return payload

    def _failure(self, pod: Any, exc: Exception, watcher: _LogWatcher) -> Exception:
        """The error to raise for a pod that failed: the CLI's own when it reported one, else one naming the image."""
        from airflow_kedro_mlflow.execution.subprocess_runner import error_class_for, reported_error

        tail = list(watcher.tail)
        name = getattr(getattr(pod, "pod", None), "metadata", None)
        where = f"[image: {self.image}, pod: {name.namespace}/{name.name}]" if name else f"[image: {self.image}]"
        run = f" MLflow run {watcher.run_id} is marked FAILED." if watcher.run_id else ""
        exit_code, reason = _termination(getattr(pod, "remote_pod", None), pod.base_container_name)
        cannot_run = exit_code in _CANNOT_RUN_EXIT_CODES or reason in _CANNOT_RUN_REASONS
        missing = next((match for line in tail if (match := _MISSING_MODULE.search(line))), None)
        if cannot_run or missing:
            what = f"{missing.group(0)}" if missing else f"exit code {exit_code}, {reason or 'no reason given'}"
            return ProjectEnvironmentError(
                f"image {self.image} cannot run the airflow-kedro-mlflow CLI ({what}) {where}. The image needs "
                f"`{self.python}` on its PATH with airflow-kedro-mlflow (installed with --no-deps: no Airflow), Kedro, "
                "MLflow and the project; build it from docs/kubernetes_image.md, or point KubernetesExecution(python="
                "...) at its interpreter."
            )
        reported = reported_error(tail)
        if reported is not None:
            kind, message = reported
            error_class = error_class_for(kind, exit_code or 1)
            if kind and error_class.__name__ != kind:
                message = f"{kind}: {message}"
            return error_class(f"{message} {where}")
        if exit_code is None and reason is not None:  # waiting: image not pulled, container not created
            return ProjectEnvironmentError(
                f"the pod of image {self.image} did not run ({reason}: {exc}) {where}. Check the image name and tag, "
                "that the cluster can pull it (image_pull_secrets in pod_kwargs), and the namespace's events."
            )
        if exit_code is None:  # not scheduled, startup timeout, or the cluster could not be read
            return ProjectProcessError(
                f"the pod of image {self.image} failed before its container's exit code was known: {exc} {where}.{run} "
                "Check the namespace's quotas and events, and the Kubernetes connection."
            )
        if reason == "OOMKilled" or exit_code == 137:
            return ProjectProcessError(
                f"the pod was killed ({reason or 'SIGKILL'}, exit code {exit_code}) before it finished {where}.{run} "
                "OOMKilled means it needed more memory than its limit: raise resources={'limits': {'memory': ...}}. "
                "Its last lines:\n" + "\n".join(tail[-10:])
            )
        return ProjectProcessError(
            f"the pod exited {exit_code} ({reason or 'no reason given'}) {where}.{run} Its last lines:\n"
            + "\n".join(tail[-10:])
        )


class _LogWatcher:
    """Reads the container's log lines as KPO streams them: the MLflow run ``train`` announces, and a tail."""

    def __init__(self, on_run_start: Callable[[str, str | None], None] | None) -> None:
        self.on_run_start = on_run_start
        self.run_id: str | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)

    def lines(self, message: str) -> None:
        """One log message of the container (a multi-line message, e.g. a traceback, is split)."""
        for line in message.splitlines():
            announced = parse_run_started(line)
            if announced is None:
                if line.strip():
                    self.tail.append(line)
                continue
            self.run_id = announced[0]
            if self.on_run_start is not None:
                self.on_run_start(*announced)

    def callback_class(self) -> type:
        """A ``KubernetesPodOperatorCallback`` (KPO takes classes of static methods) bound to this watcher."""
        from airflow.providers.cncf.kubernetes.callbacks import KubernetesPodOperatorCallback

        watcher = self

        class WatchCliLog(KubernetesPodOperatorCallback):
            @staticmethod
            def progress_callback(*, line: str, **kwargs: Any) -> None:
                watcher.lines(line)

        return WatchCliLog


def _termination(remote_pod: Any, container: str) -> tuple[int | None, str | None]:
    """The exit code and reason of ``container`` in the last pod state KPO read; None when it never terminated."""
    statuses = getattr(getattr(remote_pod, "status", None), "container_statuses", None) or []
    for status in statuses:
        if status.name == container and status.state is not None and status.state.terminated is not None:
            return status.state.terminated.exit_code, status.state.terminated.reason
        if status.name == container and status.state is not None and status.state.waiting is not None:
            return None, status.state.waiting.reason
    return None, None


@cache
def _provider() -> tuple[type, type, Any]:
    """The provider's pod operator (as subclassed below), ``Secret`` and Kubernetes models, or a clear error."""
    try:
        from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
        from airflow.providers.cncf.kubernetes.secret import Secret
        from kubernetes.client import models as k8s
    except ImportError as exc:
        raise ProjectEnvironmentError(
            f"KubernetesExecution runs on apache-airflow-providers-cncf-kubernetes (>= 10.0), which this worker "
            f"cannot import ({exc}). Install it next to Airflow: pip install '{KUBERNETES_EXTRA}'."
        ) from exc

    class KedroPodOperator(KubernetesPodOperator):
        """KPO, except when the task is interrupted while the pod runs (``on_kill``, a timeout): its ``finally``
        cleanup would then read the pod and replace the interruption by "Pod returned a failure"; here it deletes
        the pod as KPO's own ``on_kill`` does, and lets the interruption propagate."""

        def cleanup(self, pod: Any, remote_pod: Any, xcom_result: Any = None, context: Any = None) -> None:
            in_flight = sys.exc_info()[1]  # cleanup runs in execute_sync's ``finally``
            if in_flight is not None and not isinstance(in_flight, Exception):
                logger.warning("Task interrupted (%s): deleting pod %s", type(in_flight).__name__,
                               getattr(getattr(pod, "metadata", None), "name", None))  # fmt: skip
                self.on_kill()
                return
            super().cleanup(pod, remote_pod, xcom_result=xcom_result, context=context)

    KedroPodOperator.__qualname__ = "KedroPodOperator"  # its logger's name, in the task log
    return KedroPodOperator, Secret, k8s


def _check_resources(resources: Mapping[str, Mapping[str, str]] | None) -> None:
    if resources is None:
        return
    if (
        not isinstance(resources, Mapping)
        or not set(resources) <= {"requests", "limits"}
        or not all(isinstance(values, Mapping) for values in resources.values())
    ):
        raise ProjectEnvironmentError(
            "KubernetesExecution(resources=...) must be {'requests': {...}, 'limits': {...}}, got "
            f"{resources!r}; e.g. {{'requests': {{'cpu': '1', 'memory': '2Gi'}}, 'limits': {{'memory': '4Gi'}}}}."
        )


def _check_env_names(argument: str, values: Mapping[str, str]) -> None:
    if not isinstance(values, Mapping):
        raise ProjectEnvironmentError(f"KubernetesExecution({argument}=...) must be a dict, got {values!r}.")
    bad = sorted(name for name in values if not isinstance(name, str) or not _ENV_NAME.match(name))
    if bad:
        raise ProjectEnvironmentError(f"KubernetesExecution({argument}=...) has invalid variable names {bad}.")
