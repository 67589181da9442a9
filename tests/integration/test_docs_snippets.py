"""Every ```python snippet of the docs and the README runs, so the documentation stays true to the code.

Snippets included from ``dags_examples/`` (``literalinclude``) are checked by the Sphinx build (``-W`` fails on a
missing marker) and run by the tests of those files; this module covers the snippets written in the Markdown itself.

Each page's snippets run in order, in one namespace of their own, in a fresh interpreter whose working directory is
a workspace holding a copy of the example Kedro project. Pages read naturally (``"kedro_classifier"``, ``sqlite:///mlflow.db``)
because they run where those names exist. ``getting_started.md`` runs first: it trains the example project and
registers ``kedro_classifier@champion`` in ``mlflow.db``, which the other pages load.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_PROJECT, REPO_ROOT

# Integration tier: the pages train, register and serve a model in fresh interpreters (about 40 s); the unit tier
# stays fast.
pytestmark = pytest.mark.integration

DOCS = REPO_ROOT / "docs"
FIRST_PAGE = DOCS / "getting_started.md"
SNIPPET_TIMEOUT = 900

# Executes each page's blocks in one namespace per page; a block's code is compiled with the page as its file name
# and padded so that tracebacks point at the line of the Markdown file.
RUNNER = """
import json, sys
for page in json.load(open(sys.argv[1], encoding="utf-8")):
    namespace = {"__name__": "__main__"}
    for filename, first_line, code in page:
        exec(compile("\\n" * (first_line - 1) + code, filename, "exec"), namespace)
"""

_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class Snippet:
    """One fenced ```python block: the file it is in, the line its code starts on, and the code."""

    path: Path
    line: int
    code: str

    @property
    def label(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT)}:{self.line}"


def doc_pages() -> list[Path]:
    """README and every Markdown page of the docs; benchmark reports are written by scripts, not by hand."""
    pages = [REPO_ROOT / "README.md"]
    for path in sorted(DOCS.rglob("*.md")):
        relative = path.relative_to(DOCS).parts
        if relative[0] not in {"_build", "benchmarks"}:
            pages.append(path)
    return pages


def python_snippets(path: Path) -> list[Snippet]:
    """Return the ```python blocks of a Markdown file (other languages and MyST directives are not Python)."""
    snippets: list[Snippet] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        fence, info = match["fence"], match["info"].strip()
        body_start = index + 1
        end = body_start
        while end < len(lines) and not lines[end].startswith(fence):
            end += 1
        if info == "python":
            snippets.append(Snippet(path, body_start + 1, "\n".join(lines[body_start:end]) + "\n"))
        index = end + 1
    return snippets


ALL_SNIPPETS = [snippet for page in doc_pages() for snippet in python_snippets(page)]
PAGES_WITH_SNIPPETS = sorted({snippet.path for snippet in ALL_SNIPPETS} - {FIRST_PAGE})


def _page_id(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


def run_pages(pages: list[Path], workspace: Path) -> subprocess.CompletedProcess[str]:
    """Run the pages' snippets, page after page, in one fresh interpreter inside ``workspace``.

    One interpreter for several pages saves importing Airflow, Kedro and MLflow again for each; every page still
    gets a namespace of its own, and a failure's traceback names the page and line.
    """
    blocks = [[[s.label, s.line, s.code] for s in python_snippets(page)] for page in pages]
    blocks_file = workspace / f"{pages[0].stem}.snippets.json"
    blocks_file.write_text(json.dumps(blocks), encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "AIRFLOW_CONN_"))}
    env.update(
        {
            "KEDRO_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
            "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
            "AIRFLOW_HOME": str(workspace / "airflow_home"),
            # connections.md reads the `mlflow_default` connection: the workspace's store, as an absolute URI.
            "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(
                {"conn_type": "mlflow", "extra": {"tracking_uri": f"sqlite:///{workspace / 'mlflow.db'}"}}
            ),
        }
    )
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(blocks_file)],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=SNIPPET_TIMEOUT,
        check=False,
    )
    names = ", ".join(_page_id(page) for page in pages)
    assert done.returncode == 0, f"snippets of {names} failed:\n{done.stderr[-6000:]}"
    return done


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a copy of the example project, after getting_started.md trained and registered a model."""
    root = tmp_path_factory.mktemp("docs-snippets")
    shutil.copytree(
        EXAMPLE_PROJECT, root / "kedro_classifier", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    done = run_pages([FIRST_PAGE], root)
    assert "models:/kedro_classifier/1" in done.stdout, done.stdout
    return root


def test_snippets_are_found() -> None:
    """The extractor sees the pages that are known to hold Python (a broken parser would make every test vacuous)."""
    pages = {snippet.path for snippet in ALL_SNIPPETS}
    assert {REPO_ROOT / "README.md", FIRST_PAGE, DOCS / "serving.md", DOCS / "kedro_usage.md"} <= pages


@pytest.mark.parametrize("snippet", ALL_SNIPPETS, ids=[snippet.label for snippet in ALL_SNIPPETS])
def test_snippet_compiles(snippet: Snippet) -> None:
    compile(snippet.code, snippet.label, "exec")


@pytest.mark.timeout(SNIPPET_TIMEOUT)
def test_getting_started_trains_registers_and_predicts(workspace: Path) -> None:
    """getting_started.md's snippets trained, registered version 1 as champion, and predicted (asserts inside)."""
    assert (workspace / "mlflow.db").is_file()
    versions = sorted((workspace / "kedro_classifier" / "data" / "06_models" / "classifier.pkl").iterdir())
    assert len(versions) == 1


@pytest.mark.timeout(SNIPPET_TIMEOUT)
def test_other_pages_snippets_run(workspace: Path) -> None:
    """Every other page's snippets run against the model getting_started.md registered."""
    assert PAGES_WITH_SNIPPETS, "no page besides getting_started.md has Python snippets: the extractor is broken"
    run_pages(PAGES_WITH_SNIPPETS, workspace)
