"""The committed notebooks as files: in the book, renderable on GitHub, free of run noise.

nbval (run by ``pytest`` on ``notebooks/``) checks what the cells compute; this checks the
files around them.
"""

from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def toc_files() -> set[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return {chapter["file"] for part in toc["parts"] for chapter in part["chapters"]}


def test_every_notebook_is_a_chapter_of_the_book():
    missing = [nb.stem for nb in NOTEBOOKS if f"notebooks/{nb.stem}" not in toc_files()]
    assert NOTEBOOKS and missing == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_renders_on_github_and_has_no_run_noise(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    # GitHub's viewer refuses ("Invalid Notebook") widget metadata without its state.
    widgets = nb.metadata.get("widgets")
    if widgets is not None:
        assert "state" in widgets["application/vnd.jupyter.widget-state+json"]
    # Per-cell timestamps change on every run: tools/normalize_notebooks.py removes them.
    timed = [i for i, cell in enumerate(nb.cells) if "execution" in cell.metadata]
    assert timed == [], f"run `python tools/normalize_notebooks.py {path.name}`"
    # Committed with outputs: every code cell was executed, in order.
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1))
