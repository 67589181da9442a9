"""Interrupting an operator's work on kill, shared by the operators that run long work in the task process.

Airflow calls ``on_kill`` from its SIGTERM handler in the task's main thread. Raising
:class:`~airflow.sdk.exceptions.AirflowTaskTerminated` there unwinds the work in progress (a ``BaseException``, so
Kedro's node error handling and ordinary ``except Exception`` blocks let it through): each operator's cleanup runs
on the way out (the MLflow run marked failed, a temporary output removed). Outside the work (e.g. after a timeout
already unwound it) ``on_kill`` does nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from airflow.sdk.exceptions import AirflowTaskTerminated


class InterruptibleMixin:
    """``on_kill`` raises into the block run under :meth:`_interruptible`; mix in before ``BaseOperator``."""

    #: What the raised error says after ``task <id> was killed while ``, e.g. ``"scoring; no output was published."``
    killed_while: str = "running"
    _executing: bool = False

    @contextmanager
    def _interruptible(self) -> Iterator[None]:
        self._executing = True
        try:
            yield
        finally:
            self._executing = False

    def on_kill(self) -> None:
        """Interrupt the work in progress so it cleans up on its way out instead of being left half done."""
        if self._executing:
            self._executing = False
            task_id = getattr(self, "task_id", "?")
            raise AirflowTaskTerminated(f"task {task_id!r} was killed while {self.killed_while}")
