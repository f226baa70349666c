"""The lock (constraints.txt): what tools/lock.py writes, that it agrees with pyproject.toml,
and that `make install` uses it by default (LOCK= takes the newest allowed versions)."""

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("lock", ROOT / "tools" / "lock.py")
lock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lock)


def pins() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pairs = (line.split("==") for line in lines if line and not line.startswith("#"))
    return {canonicalize_name(name): version for name, version in pairs}


def test_lock_lines_drop_the_project_and_torch_and_sort():
    freeze = "\n".join(
        [
            "-e git+https://example.org/x.git@abc#egg=tutorial_lib",
            "Zipp==3.0",
            "torch==2.13.0+cpu",
            "numpy==2.4.6",
            "# a comment",
        ]
    )
    lines, torch = lock.lock_lines(freeze)
    assert lines == ["numpy==2.4.6", "Zipp==3.0"]
    assert torch == "2.13.0+cpu"
    with pytest.raises(SystemExit, match="not from an index"):
        lock.lock_lines("foo @ file:///tmp/foo.whl")


def test_every_direct_dependency_is_locked_within_its_declared_range():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = pins()
    for spec in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        if name == "torch":
            assert name not in locked  # chosen by TORCH_SPEC, for CPU or CUDA machines
            continue
        assert name in locked, f"{name} is not in constraints.txt: run make lock"
        assert requirement.specifier.contains(locked[name]), (name, locked[name])


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_install_uses_the_lock_unless_told_otherwise():
    def project_install(*args: str) -> str:
        cmd = ["make", "-n", "-C", str(ROOT), "install", "VENV=", *args]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        (line,) = [x for x in out.splitlines() if x.endswith('-e ".[dev]"')]
        return " ".join(line.replace('"', "").split())

    assert project_install().endswith("pip install --quiet -c constraints.txt -e .[dev]")
    assert project_install("LOCK=").endswith("pip install --quiet -e .[dev]")
