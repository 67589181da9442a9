"""What a training run hands to the next task: :class:`TrainingResult`, the one definition of the training XCom.

The payload is plain JSON with no secrets (DESIGN.md, "Data that crosses tasks"): the MLflow run, where its tracking
server is (without credentials), how the Kedro session was opened, and for every artifact the inference pipeline
needs its local path, its copy in the MLflow run and its sha256 — so modelify can run on another worker, without the
training task's disk, and still refuse a file that changed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_kedro_mlflow.exceptions import TrainingXComError

if TYPE_CHECKING:
    from airflow_kedro_mlflow.kedro_project import KedroRunSpec

#: Folder of the training run's artifacts: ``runs:/<run_id>/kedro_artifacts/<name>/<file>``.
ARTIFACTS_FOLDER = "kedro_artifacts"
#: The training run's own record of its artifacts (``{name: {"file": "<folder>/<file>", "sha256": ...}}``): training
#: writes it, modelify trusts it over the XCom, which may lie.
MANIFEST_PATH = f"{ARTIFACTS_FOLDER}/manifest.json"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HINT = (
    "Did the training task run? Point the modelify task at a KedroTrainingOperator task that succeeded in this DAG "
    "run (training_task_id), or pass the training result's fields explicitly."
)


@dataclass
class ArtifactRecord:
    """One inference artifact as training left it.

    :param path: absolute local path training wrote (may not exist on another worker).
    :param uri: the copy uploaded to the training run, ``runs:/<run_id>/kedro_artifacts/<name>/<file>``.
    :param sha256: hash of the file (or of a directory's sorted file hashes), checked before any use.
    """

    path: str
    uri: str
    sha256: str


@dataclass
class DatasetRecord:
    """A catalog dataset the training run read or wrote, where it lives: for data lineage (OpenLineage).

    :param name: the Kedro catalog name.
    :param location: absolute local path or URL (``s3://bucket/key``), never with credentials or a query string.
    :param version: the Kedro version of a versioned dataset, when known without I/O; else None.
    """

    name: str
    location: str
    version: str | None = None


@dataclass
class TrainingResult:
    """Result of :func:`airflow_kedro_mlflow.training.run_training`; ``to_xcom()`` is the training task's XCom."""

    run_id: str
    experiment_id: str
    tracking_uri: str
    project_path: str
    env: str | None
    conf_source: str | None
    runtime_params: dict[str, Any]
    pipeline_name: str
    input_name: str | None
    artifacts: dict[str, ArtifactRecord] = field(default_factory=dict)
    signature: dict[str, Any] | None = None
    run_url: str | None = None
    #: ``{"inputs": [...], "outputs": [...]}``: the catalog datasets with a location that the run read (free inputs)
    #: and wrote; None from a training that predates it.
    datasets: dict[str, list[DatasetRecord]] | None = None

    @property
    def spec(self) -> KedroRunSpec:
        """Which Kedro project run trained: what modelify opens again to build the inference pipeline."""
        from airflow_kedro_mlflow.kedro_project import KedroRunSpec

        return KedroRunSpec(
            self.project_path,
            self.pipeline_name,
            env=self.env,
            conf_source=self.conf_source,
            runtime_params=self.runtime_params,
        )

    def to_xcom(self) -> dict[str, Any]:
        """Return the JSON-safe payload; raises :class:`TrainingXComError` naming a value JSON cannot carry."""
        from airflow_kedro_mlflow.tracking import strip_userinfo

        payload = asdict(self)
        payload["tracking_uri"] = strip_userinfo(self.tracking_uri)
        for key, value in payload.items():
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise TrainingXComError(
                    f"Training result key {key!r} cannot be sent through XCom as JSON ({exc}). Pass runtime_params "
                    "made of strings, numbers, booleans, lists and dicts only."
                ) from exc
        return payload

    @classmethod
    def from_xcom(cls, payload: Any) -> TrainingResult:
        """Rebuild a result from a training task's XCom (a dict, or its JSON text), checking every key.

        :raises TrainingXComError: naming the missing or malformed key, and asking whether training ran.
        """
        if isinstance(payload, (str, bytes)):
            try:
                payload = json.loads(payload)
            except ValueError as exc:
                raise TrainingXComError(f"The training XCom is not valid JSON ({exc}). {_HINT}") from exc
        if not isinstance(payload, Mapping):
            raise TrainingXComError(
                f"The training XCom should be a dict with run_id, artifacts, ...; got {type(payload).__name__} "
                f"{_short(payload)}. {_HINT}"
            )
        missing = sorted(key for key in _REQUIRED if key not in payload)
        if missing:
            raise TrainingXComError(
                f"The training XCom is missing key(s) {missing} (it has {sorted(map(str, payload))}). {_HINT}"
            )
        values = {key: _check(key, payload[key], *_REQUIRED[key]) for key in _REQUIRED}
        for key, (kinds, optional) in _OPTIONAL.items():
            values[key] = _check(key, payload.get(key), kinds, optional)
        values["runtime_params"] = dict(values["runtime_params"] or {})
        values["artifacts"] = _artifacts(values["artifacts"])
        values["datasets"] = _datasets(values["datasets"])
        return cls(**values)


# key: (accepted types, None allowed)
_REQUIRED: dict[str, tuple[tuple[type, ...], bool]] = {
    "run_id": ((str,), False),
    "experiment_id": ((str,), False),
    "tracking_uri": ((str,), False),
    "project_path": ((str,), False),
    "env": ((str,), True),
    "conf_source": ((str,), True),
    "runtime_params": ((Mapping,), True),
    "pipeline_name": ((str,), False),
    "input_name": ((str,), True),
    "artifacts": ((Mapping,), False),
}
_OPTIONAL: dict[str, tuple[tuple[type, ...], bool]] = {
    "signature": ((Mapping,), True),
    "run_url": ((str,), True),
    "datasets": ((Mapping,), True),
}


def _check(key: str, value: Any, kinds: tuple[type, ...], optional: bool) -> Any:
    if value is None and optional:
        return None
    if not isinstance(value, kinds) or (isinstance(value, str) and not optional and not value.strip()):
        expected = " or ".join(k.__name__ for k in kinds) + (" or null" if optional else "")
        raise TrainingXComError(
            f"The training XCom key {key!r} should be a non-empty {expected}, got {type(value).__name__} "
            f"{_short(value)}. {_HINT}"
        )
    return dict(value) if isinstance(value, Mapping) else value


def _artifacts(raw: Mapping[str, Any]) -> dict[str, ArtifactRecord]:
    records = {}
    for name, record in raw.items():
        where = f"artifacts[{name!r}]"
        if not isinstance(record, Mapping):
            raise TrainingXComError(
                f"The training XCom key {where} should be a dict with path, uri and sha256, got "
                f"{type(record).__name__} {_short(record)}. {_HINT}"
            )
        missing = sorted(key for key in ("path", "uri", "sha256") if key not in record)
        if missing:
            raise TrainingXComError(f"The training XCom key {where} is missing {missing}. {_HINT}")
        path, uri, sha256 = (_check(f"{where}.{key}", record[key], (str,), False) for key in ("path", "uri", "sha256"))
        if not _SHA256.match(sha256):
            raise TrainingXComError(
                f"The training XCom key {where}.sha256 should be 64 lowercase hex digits, got {_short(sha256)}. {_HINT}"
            )
        records[str(name)] = ArtifactRecord(path=path, uri=uri, sha256=sha256)
    return records


def _datasets(raw: Mapping[str, Any] | None) -> dict[str, list[DatasetRecord]] | None:
    if raw is None:
        return None
    datasets: dict[str, list[DatasetRecord]] = {}
    for direction in ("inputs", "outputs"):
        entries = raw.get(direction) or []
        if not isinstance(entries, list):
            raise TrainingXComError(
                f"The training XCom key datasets[{direction!r}] should be a list, got {type(entries).__name__} "
                f"{_short(entries)}. {_HINT}"
            )
        locations = []
        for index, entry in enumerate(entries):
            where = f"datasets[{direction!r}][{index}]"
            if not isinstance(entry, Mapping):
                raise TrainingXComError(
                    f"The training XCom key {where} should be a dict with name, location and version, got "
                    f"{type(entry).__name__} {_short(entry)}. {_HINT}"
                )
            name, location = (_check(f"{where}.{key}", entry.get(key), (str,), False) for key in ("name", "location"))
            version = _check(f"{where}.version", entry.get("version"), (str,), True)
            locations.append(DatasetRecord(name=name, location=location, version=version))
        datasets[direction] = locations
    return datasets


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
