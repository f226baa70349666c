"""Tidy executed notebooks before committing them: ``python tools/normalize_notebooks.py [NB ...]``.

`jupyter execute` records per-cell timestamps (``metadata.execution``) that change on every run
and only add noise to diffs; this removes them. It also drops widget metadata that lacks its
``state`` key, which GitHub's notebook viewer refuses to render. Without arguments it tidies
every notebook in ``notebooks/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent


def normalize(path: Path) -> bool:
    """Tidy one notebook in place; return whether anything changed."""
    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        if "execution" in cell.metadata:
            del cell.metadata["execution"]
            changed = True
    widgets = nb.metadata.get("widgets")
    if widgets is not None:
        state = widgets.get("application/vnd.jupyter.widget-state+json", {})
        if "state" not in state:
            del nb.metadata["widgets"]
            changed = True
    if changed:
        nbformat.write(nb, path)
    return changed


def main(argv: list[str]) -> int:
    paths = [Path(p) for p in argv] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in paths:
        if normalize(path):
            print(f"tidied {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
