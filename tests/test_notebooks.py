"""Notebook hygiene: every .ipynb is stored without outputs and is in sync with its py:percent pair."""
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for d in ("notebooks", "book") for p in (ROOT / d).rglob("*.ipynb")
                   if ".ipynb_checkpoints" not in p.parts)


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found under notebooks/ or book/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_has_no_outputs_and_a_kernelspec(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("kernelspec", {}).get("name"), f"{path.name}: no kernelspec"
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them (outputs belong in results/ and the book)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_in_sync_with_py_percent_pair(path):
    pair = path.with_suffix(".py")
    assert pair.exists(), f"{path.name}: its jupytext pair {pair.name} is missing (run make sync-notebooks)"
    from_ipynb = nbformat.read(path, as_version=4)
    from_py = jupytext.read(pair)
    cells = lambda nb: [(c.cell_type, c.source.strip()) for c in nb.cells]  # noqa: E731
    assert cells(from_ipynb) == cells(from_py), (
        f"{path.name} and {pair.name} differ: edit one, then run `make sync-notebooks`"
    )
