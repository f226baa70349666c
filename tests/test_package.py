"""The package itself: light to import, no import cycles, and its public names."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import tutorial_lib


def imported_modules(code: str) -> set[str]:
    """The modules (dotted names) a fresh interpreter has imported after running ``code``."""
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


@pytest.mark.parametrize(
    "code",
    [
        "import tutorial_lib",
        # What chapter 01 imports.
        "from tutorial_lib import assets, set_seed\nfrom tutorial_lib.plotting import heatmap",
        # What `python -m tutorial_lib list` runs.
        "from tutorial_lib.__main__ import main",
    ],
)
def test_light_imports_do_not_load_transformers(code):
    assert "transformers" not in imported_modules(code)


def test_import_tutorial_lib_does_not_even_load_torch():
    assert "torch" not in imported_modules("import tutorial_lib")


def test_the_model_needs_neither_loading_nor_generation():
    # loading and generation build on phi3; phi3 imports neither (no cycle).
    modules = imported_modules("import tutorial_lib.phi3")
    assert "tutorial_lib.loading" not in modules
    assert "tutorial_lib.generation" not in modules
    assert "transformers" not in modules


def test_public_names_resolve_lazily():
    for name in tutorial_lib.__all__:
        assert getattr(tutorial_lib, name) is not None
    from tutorial_lib.generation import generate

    assert tutorial_lib.generate is generate
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = tutorial_lib.nope


# --------------------------------------------------------------------------------------
# The import graph: module-level imports only, and no cycle
# --------------------------------------------------------------------------------------
PACKAGE = Path(tutorial_lib.__file__).parent

# Function-level imports of another tutorial_lib module, each with its reason: none today.
# (A function-level import is how a cycle hides; a real need goes here, explained.)
FUNCTION_LEVEL_ALLOWED: dict[tuple[str, str], str] = {}


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _package_imports(module: str, node: ast.ImportFrom) -> list[str]:
    """The tutorial_lib modules a relative ``from ... import ...`` names ("__init__" for the
    package itself)."""
    if node.level != 1:
        raise AssertionError(f"{module}: only `from .x import` is used, got level {node.level}")
    if node.module:
        return [node.module.split(".")[0]]
    # `from . import assets, DEFAULT_MODEL`: a module, or a name of the package's __init__.
    return [a.name if (PACKAGE / f"{a.name}.py").is_file() else "__init__" for a in node.names]


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module -> modules it imports at module level, module -> modules imported in
    functions), over tutorial_lib's own modules; ``if TYPE_CHECKING:`` blocks are skipped
    (they never run)."""
    top: dict[str, set[str]] = {}
    in_functions: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        module = path.stem
        top[module], in_functions[module] = set(), set()

        def visit(node: ast.AST, in_function: bool, module: str = module) -> None:
            for child in ast.iter_child_nodes(node):
                if _is_type_checking(child):
                    continue
                inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
                if isinstance(child, ast.ImportFrom) and child.level:
                    target = in_functions if inside else top
                    target[module].update(_package_imports(module, child))
                if isinstance(child, ast.Import):
                    names = [a.name for a in child.names if a.name.startswith("tutorial_lib")]
                    assert not names, f"{module}: import tutorial_lib modules relatively: {names}"
                if isinstance(child, ast.ImportFrom) and not child.level:
                    assert not (child.module or "").startswith("tutorial_lib"), module
                visit(child, inside)

        visit(ast.parse(path.read_text()), False)
    return top, in_functions


def test_no_module_imports_another_inside_a_function():
    _, in_functions = import_graph()
    found = {(m, t) for m, targets in in_functions.items() for t in targets}
    assert found <= set(FUNCTION_LEVEL_ALLOWED), sorted(found - set(FUNCTION_LEVEL_ALLOWED))


def test_the_module_level_import_graph_has_no_cycle():
    top, _ = import_graph()
    done: set[str] = set()

    def walk(module: str, path: tuple[str, ...]) -> None:
        if module in path:
            raise AssertionError(f"import cycle: {' -> '.join((*path, module))}")
        if module in done:
            return
        for imported in sorted(top.get(module, ())):
            walk(imported, (*path, module))
        done.add(module)

    for module in top:
        walk(module, ())


def test_the_graph_sees_a_cycle_and_a_function_level_import(tmp_path, monkeypatch):
    # The checks above would catch what they are for: a planted pair of modules.
    (tmp_path / "a.py").write_text("from .b import x\n\ndef f():\n    from .c import y\n")
    (tmp_path / "b.py").write_text("from typing import TYPE_CHECKING\nfrom .a import f\n")
    (tmp_path / "c.py").write_text("if TYPE_CHECKING:\n    from .a import f\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path)
    top, in_functions = import_graph()
    assert top == {"a": {"b"}, "b": {"a"}, "c": set()}
    assert in_functions["a"] == {"c"}
    with pytest.raises(AssertionError, match="import cycle: a -> b -> a"):
        test_the_module_level_import_graph_has_no_cycle()


def test_the_model_does_not_import_loading_or_generation():
    top, _ = import_graph()
    assert top["phi3"] == {"cache", "moe", "rope", "validation"}
    assert "phi3" in top["loading"] and "phi3" in top["generation"]  # they build on it
    assert top["generation"] >= {"cache", "phi3"}


# --------------------------------------------------------------------------------------
# Chapters 01-03 use no transformers; their plotting and controls need no torch either
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "module",
    ["tutorial_lib.controls", "tutorial_lib.bpe", "tutorial_lib.plotting", "tutorial_lib.assets"],
)
def test_torch_free_modules(module):
    modules = imported_modules(f"import {module}")
    assert "torch" not in modules and "transformers" not in modules


CHAPTER_IMPORTS = {
    # The tutorial_lib import lines of chapters 01-03 (notebooks/0N_*.ipynb, cell 2).
    "01": "from tutorial_lib import assets, set_seed\nfrom tutorial_lib.plotting import heatmap",
    "02": "from tutorial_lib import assets, set_seed\n"
    "from tutorial_lib.controls import show, word_neighbours\n"
    "from tutorial_lib.embeddings import load_glove, neighbour_rows, plot_word_groups\n"
    "from tutorial_lib.plotting import heatmap, top_k_bar",
    "03": "from tutorial_lib import set_seed\n"
    "from tutorial_lib.controls import date_attention, show\n"
    "from tutorial_lib.plotting import heatmap\n"
    "from tutorial_lib.seq2seq import Seq2Seq, Vocabulary, train_seq2seq, translate",
}


@pytest.mark.parametrize("chapter", sorted(CHAPTER_IMPORTS))
def test_chapters_01_to_03_do_not_load_transformers(chapter):
    modules = imported_modules(CHAPTER_IMPORTS[chapter])
    assert "transformers" not in modules
    # Nor the model, its loading or generation.
    assert not {"tutorial_lib.phi3", "tutorial_lib.loading", "tutorial_lib.generation"} & modules
