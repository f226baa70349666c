"""tools/install_torch.py picks the torch wheel a new user's machine needs."""

import importlib.util
import subprocess
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parent.parent / "tools" / "install_torch.py"
_spec = importlib.util.spec_from_file_location("install_torch", _PATH)
install_torch = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(install_torch)


@pytest.fixture
def machine(monkeypatch):
    """A fake machine: set its facts, read back the pip command that would run."""
    facts = {"version": None, "system": "Linux", "gpu": False, "index_up": True}
    commands = []
    monkeypatch.setattr(install_torch, "installed_version", lambda: facts["version"])
    monkeypatch.setattr(install_torch.platform, "system", lambda: facts["system"])
    monkeypatch.setattr(install_torch, "has_nvidia_gpu", lambda: facts["gpu"])
    monkeypatch.setattr(install_torch, "reachable", lambda url: facts["index_up"])
    monkeypatch.setattr(
        install_torch.subprocess,
        "run",
        lambda cmd, **kw: commands.append(cmd) or subprocess.CompletedProcess(cmd, 0),
    )
    return facts, commands


def test_linux_without_gpu_gets_the_cpu_wheel(machine):
    facts, commands = machine
    assert install_torch.main("torch>=2.5") == 0
    assert commands[-1][-3:] == ["torch>=2.5", "--index-url", install_torch.CPU_INDEX]


def test_gpu_or_mac_gets_pypi_wheel(machine):
    facts, commands = machine
    facts["gpu"] = True
    install_torch.main("torch>=2.5")
    facts["gpu"], facts["system"] = False, "Darwin"
    install_torch.main("torch>=2.5")
    assert [c[-1] for c in commands] == ["torch>=2.5", "torch>=2.5"]  # no --index-url


def test_unreachable_cpu_index_falls_back_to_pypi(machine):
    facts, commands = machine
    facts["index_up"] = False
    install_torch.main("torch==2.13.0")
    assert commands[-1][-1] == "torch==2.13.0"


def test_a_new_enough_torch_is_kept(machine):
    facts, commands = machine
    facts["version"] = "2.13.0+cpu"  # a local version label, as the CPU wheels have
    assert install_torch.main("torch>=2.5") == 0
    assert commands == []
    facts["version"] = "2.4.1"  # too old: installs
    install_torch.main("torch>=2.5")
    assert len(commands) == 1


def test_spec_must_name_torch(machine):
    with pytest.raises(SystemExit, match="SPEC='numpy' must be a requirement on torch"):
        install_torch.main("numpy")
