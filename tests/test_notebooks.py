"""The committed notebooks as files: in the book, renderable on GitHub, free of run noise.

nbval (run by ``pytest`` on ``notebooks/``) checks what the cells compute; this checks the
files around them.
"""

import re
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


# What a chapter's first markdown cell may name as the producer of its outputs: the book's
# models and data sets, or a model trained in the chapter itself.
OUTPUT_SOURCES = (
    "SmolLM2",
    "Phi-3",
    "MiniLM",
    "GloVe",
    "word2vec",
    "Lee",  # the Lee background corpus (gensim's test data)
    "tokenizer",
    "trained here",
    "no pretrained model",
)
CHAPTER_HEADINGS = ("## Summary", "## Try it yourself", "## Sources")


def paragraphs(markdown: str) -> list[str]:
    """The paragraphs of a markdown text (split at blank lines), on one line each."""
    return [re.sub(r"\s+", " ", p) for p in re.split(r"\n\s*\n", markdown)]


def has_figure(cell) -> bool:
    return any("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_chapter_has_the_book_structure(path):
    nb = nbformat.read(path, as_version=4)
    markdown = [cell.source for cell in nb.cells if cell.cell_type == "markdown"]
    headings = {line.strip() for text in markdown for line in text.splitlines()}
    missing = [h for h in CHAPTER_HEADINGS if h not in headings]
    assert missing == [], f"{path.name} lacks the headings {missing}"
    # Each chapter makes at least one thing visible.
    assert any(has_figure(cell) for cell in nb.cells), f"{path.name} has no figure"
    # The first markdown cell says what produced the outputs, in a paragraph such as
    # "Outputs below come from SmolLM2-135M-Instruct on a CPU" (the README's Contributing).
    stated = [
        s
        for s in paragraphs(markdown[0])
        if re.search(r"\boutputs?\b", s, re.IGNORECASE)
        and any(name.lower() in s.lower() for name in OUTPUT_SOURCES)
    ]
    assert stated, (
        f"{path.name}: no paragraph of the first markdown cell contains 'outputs' and names "
        f"what produced them (one of {', '.join(OUTPUT_SOURCES)})"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_every_figure_has_alt_text(path):
    nb = nbformat.read(path, as_version=4)
    lacking = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not has_figure(cell):
            continue
        alt = cell.metadata.get("mystnb", {}).get("image", {}).get("alt", "")
        # A real alt text is a sentence about the figure, not a placeholder or a file name.
        if len(alt.split()) < 5 or re.search(r"\.(png|svg|jpe?g)\b", alt):
            lacking.append(index)
    assert lacking == [], (
        f"{path.name}: the figure cells {lacking} need cell metadata "
        '{"mystnb": {"image": {"alt": "<one sentence on what the figure shows>"}}}'
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_figures_are_drawn_at_retina_resolution(path):
    # `%config InlineBackend.figure_formats = ["retina"]` saves each PNG at twice its size and
    # records the size to show it at; a plain PNG has no such metadata and renders blurred.
    nb = nbformat.read(path, as_version=4)
    blurred = [
        index
        for index, cell in enumerate(nb.cells)
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
        and "width" not in out.get("metadata", {}).get("image/png", {})
    ]
    assert blurred == [], (
        f"{path.name}: the figures of cells {blurred} are not retina; run "
        '`%config InlineBackend.figure_formats = ["retina"]` in the imports cell'
    )
