"""Install what the browser and Spark scenarios need from Debian's packages, when the machine lacks it.

CI runs on a fresh Debian machine as root, so the test setup itself installs Debian's ``chromium`` (driven by the
pip-pinned Playwright through ``executable_path``; ``playwright install`` would download a browser build, which this
project never does) and a Java runtime for pyspark. Elsewhere, without root, the error says what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")

#: Chromium flags measured to work headless in containers (NOTES-real-services.md §4): no sandbox (root, no user
#: namespaces), no GPU, and nothing that phones home.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)


class MissingSystemPackageError(RuntimeError):
    """A Debian package the scenario needs is missing and cannot be installed here (message says how to)."""


def _apt_install(package: str, why: str) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise MissingSystemPackageError(
            f"{why} Install it with `sudo apt-get update && sudo apt-get install -y --no-install-recommends "
            f"{package}`, or deselect these tests (-m 'not browser and not spark')."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", package],
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            raise MissingSystemPackageError(
                f"`{' '.join(command)}` failed with exit code {done.returncode}:\n{done.stderr[-3000:]}"
            )


def ensure_chromium() -> Path:
    """Return Debian's chromium, installing the ``chromium`` package first when it is missing."""
    if not CHROMIUM.exists():
        _apt_install("chromium", f"The browser tests drive Debian's chromium at {CHROMIUM}, which is missing.")
    return CHROMIUM


def ensure_java() -> str:
    """Return the ``java`` executable pyspark will use, installing ``openjdk-17-jre-headless`` when missing."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    if shutil.which("java") is None:
        _apt_install("openjdk-17-jre-headless", "pyspark needs a Java runtime and `java` is not on PATH.")
    java = shutil.which("java")
    if java is None:
        raise MissingSystemPackageError("openjdk-17-jre-headless installed, yet `java` is still not on PATH.")
    return java
