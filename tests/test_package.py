"""The package itself: light to import, no import cycles, and its public names."""

import subprocess
import sys

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
