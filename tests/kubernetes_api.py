"""A stand-in for the Kubernetes API server, for the tests of ``KubernetesExecution`` (there is no cluster here).

Only the Kubernetes API calls are faked: :class:`FakeCoreV1Api` answers the calls the provider's
``KubernetesPodOperator`` makes in its synchronous path (create, list and read the pod, stream its log, ``exec`` into
the XCom sidecar to read ``/airflow/xcom/return.json`` and stop it, patch, delete), and :class:`FakeKubernetesHook` is
the provider's hook reduced to what KPO asks of it (no kube config, not in cluster). Everything above them — KPO, its
``PodManager``, the XCom sidecar logic, our ``KubernetesExecution`` — runs for real.

The "container" is scripted: the log lines it prints, its exit code (and reason), and the ``return.json`` it leaves,
which the tests produce by running the real CLI locally with the pod's own command.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client import models as k8s

SIDECAR = "airflow-xcom-sidecar"
EMPTY_XCOM_RESULT = "__airflow_xcom_result_empty__"


@dataclass
class ContainerScript:
    """What the base container does: print ``logs``, exit ``exit_code``, leave ``return_json`` (None: no file).

    ``waiting_reason`` (e.g. ``ErrImagePull``) makes it never start. ``during_logs(index)`` is called before line
    ``index`` is streamed: what a signal arriving while the worker reads the log would do (e.g. raise the
    interruption ``on_kill`` raises).
    """

    logs: list[str] = field(default_factory=list)
    exit_code: int = 0
    reason: str | None = None
    return_json: str | None = None
    waiting_reason: str | None = None
    during_logs: Callable[[int], None] | None = None


class _LogResponse:
    """What ``read_namespaced_pod_log(_preload_content=False)`` returns: a stream of ``<timestamp> <line>\\n``."""

    def __init__(self, api: FakeCoreV1Api) -> None:
        self.api = api

    def stream(self, amt: Any = None, decode_content: bool = True) -> Iterator[bytes]:
        script = self.api.script
        for index, line in enumerate(script.logs):
            if script.during_logs is not None:
                script.during_logs(index)
            yield f"2026-11-29T12:00:{index % 60:02d}.000000000Z {line}\n".encode()
        self.api.base_done = True

    def release_conn(self) -> None:
        """Nothing to release."""


class _ExecSession:
    """The websocket ``kubernetes.stream`` returns for an ``exec`` into the sidecar: ``cat`` return.json, or kill."""

    def __init__(self, api: FakeCoreV1Api, command: list[str]) -> None:
        self.api = api
        self.command = command
        self.open = True

    # reading return.json: run_forever(), peek_stderr(), read_all()
    def run_forever(self, timeout: Any = None) -> None:
        self.open = False

    def read_all(self) -> str:
        return self.api.script.return_json or EMPTY_XCOM_RESULT

    # killing the sidecar: write_stdin(), update(), peek/read stdout and stderr
    def is_open(self) -> bool:
        return self.open

    def write_stdin(self, data: str) -> None:
        if "kill" in data:
            self.api.sidecar_killed = True
        self.open = False

    def update(self, timeout: Any = None) -> None:
        """Nothing arrives."""

    def peek_stdout(self) -> bool:
        return False

    def peek_stderr(self) -> bool:
        return False

    def read_stdout(self) -> str:
        return ""

    def read_stderr(self) -> str:
        return ""

    def close(self) -> None:
        self.open = False


class FakeCoreV1Api:
    """The ``CoreV1Api`` calls of KPO's sync path, for one pod whose base container follows ``script``."""

    def __init__(self, script: ContainerScript) -> None:
        self.script = script
        self.api_client = ApiClient()  # serialisation only; ``kubernetes.stream`` swaps its ``request`` for exec
        self.created: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.pod: k8s.V1Pod | None = None
        self.base_done = False
        self.sidecar_killed = False

    # -- pods ----------------------------------------------------------------------------------------------------------
    def create_namespaced_pod(self, body: dict[str, Any], namespace: str, **kwargs: Any) -> k8s.V1Pod:
        self.created.append(body)
        self.pod = self.api_client.deserialize(_Json(body), "V1Pod")
        return self.pod

    def list_namespaced_pod(self, namespace: str, label_selector: str = "", **kwargs: Any) -> k8s.V1PodList:
        return k8s.V1PodList(items=[self._state()] if self.pod is not None else [])

    def read_namespaced_pod(self, name: str, namespace: str, **kwargs: Any) -> k8s.V1Pod:
        return self._state()

    def patch_namespaced_pod(self, name: str, namespace: str, body: Any, **kwargs: Any) -> k8s.V1Pod:
        return self._state()

    def delete_namespaced_pod(self, name: str, namespace: str, **kwargs: Any) -> None:
        self.deleted.append(name)

    def list_namespaced_event(self, namespace: str, **kwargs: Any) -> k8s.CoreV1EventList:
        return k8s.CoreV1EventList(items=[], metadata=k8s.V1ListMeta())

    # -- log and exec --------------------------------------------------------------------------------------------------
    def read_namespaced_pod_log(self, name: str, namespace: str, container: str, **kwargs: Any) -> _LogResponse:
        return _LogResponse(self)

    def connect_get_namespaced_pod_exec(self, name: str, namespace: str, **kwargs: Any) -> _ExecSession:
        assert kwargs["container"] == SIDECAR, kwargs
        return _ExecSession(self, kwargs["command"])

    # -- the pod as the API server would report it ---------------------------------------------------------------------
    def _state(self) -> k8s.V1Pod:
        assert self.pod is not None, "no pod was created"
        now = datetime.now(tz=UTC)
        script = self.script
        if script.waiting_reason is not None:
            base = k8s.V1ContainerState(waiting=k8s.V1ContainerStateWaiting(reason=script.waiting_reason))
            phase = "Pending"
        elif self.base_done or not script.logs:
            self.base_done = True
            terminated = k8s.V1ContainerStateTerminated(exit_code=script.exit_code, reason=script.reason,
                                                        finished_at=now)  # fmt: skip
            base = k8s.V1ContainerState(terminated=terminated)
            phase = "Running"
        else:
            base = k8s.V1ContainerState(running=k8s.V1ContainerStateRunning(started_at=now))
            phase = "Running"
        if self.sidecar_killed or script.waiting_reason is not None:
            sidecar = k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(exit_code=0, finished_at=now))
            if script.waiting_reason is None:
                phase = "Succeeded" if script.exit_code == 0 else "Failed"
        else:
            sidecar = k8s.V1ContainerState(running=k8s.V1ContainerStateRunning(started_at=now))
        statuses = [_status("base", base), _status(SIDECAR, sidecar)]
        return k8s.V1Pod(
            metadata=self.pod.metadata,
            spec=self.pod.spec,
            status=k8s.V1PodStatus(phase=phase, container_statuses=statuses),
        )


class FakeKubernetesHook:
    """The provider's ``KubernetesHook`` as KPO uses it, with the fake API as its client (not in cluster)."""

    is_in_cluster = False

    def __init__(self, api: FakeCoreV1Api) -> None:
        self.core_v1_client = api

    def get_namespace(self) -> str | None:
        return None

    def get_pod(self, name: str, namespace: str) -> k8s.V1Pod:
        return self.core_v1_client.read_namespaced_pod(name, namespace)

    def get_xcom_sidecar_container_image(self) -> str | None:
        return None

    def get_xcom_sidecar_container_resources(self) -> None:
        return None

    def get_xcom_sidecar_container_security_context(self) -> None:
        return None


def _status(name: str, state: k8s.V1ContainerState) -> k8s.V1ContainerStatus:
    return k8s.V1ContainerStatus(name=name, state=state, image="image", image_id="", ready=True, restart_count=0)


class _Json:
    """What ``ApiClient.deserialize`` reads: an object with the JSON text in ``data``."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.data = json.dumps(body)
