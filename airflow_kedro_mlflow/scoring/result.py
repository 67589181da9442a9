"""What batch scoring returns: :class:`ScoringResult`, the scoring task's XCom and the CLI's ``--json`` output."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class ScoringResult:
    """Which model scored how many rows, and where they went; JSON-safe for Airflow's XCom (no credentials).

    ``model_uri`` is the concrete model (``models:/<name>/<version>``) the caller's ``requested_model_uri`` (e.g.
    ``models:/<name>@champion``) resolved to when scoring started; ``run_id`` is the MLflow run the model was logged
    from.
    """

    model_uri: str
    requested_model_uri: str
    registered_model_name: str | None
    version: str | None
    run_id: str | None
    rows: int
    input: str
    output: str
    output_format: str
    engine: str
    tracking_uri: str
    model_version_url: str | None = None

    def to_xcom(self) -> dict[str, Any]:
        """Return a plain dict (JSON types only) for XCom and ``--json`` output."""
        return asdict(self)
