"""What modelify returns: :class:`ModelifyResult`, the modelify task's XCom and the CLI's ``--json`` output."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ModelifyResult:
    """What a logged (and maybe registered) model is and where to find it; JSON-safe for Airflow's XCom.

    ``model_uri`` loads this exact model: ``models:/<name>/<version>`` when registered, else ``models:/<model_id>``.
    ``reused`` is true when an earlier try with the same idempotency key had already logged it.
    """

    model_uri: str
    run_id: str
    experiment_id: str
    registered_model_name: str | None = None
    version: str | None = None
    aliases: list[str] = field(default_factory=list)
    model_id: str | None = None
    run_url: str | None = None
    model_version_url: str | None = None
    reused: bool = False

    def to_xcom(self) -> dict[str, Any]:
        """Return a plain dict (JSON types only) for XCom and ``--json`` output."""
        return asdict(self)
