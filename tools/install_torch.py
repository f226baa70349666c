"""Install PyTorch for this machine, before the project (``make install`` runs this).

- torch already installed and new enough (Colab, a conda env): keep it.
- An NVIDIA GPU (``nvidia-smi`` works), or macOS/Windows: the default wheel from PyPI.
- Linux without an NVIDIA GPU: the CPU-only wheel from PyTorch's index (about 200 MB
  instead of the 2-3 GB of CUDA libraries PyPI's Linux wheel pulls in). If that index is
  unreachable, PyPI's wheel, with a note.

Usage: ``python tools/install_torch.py [SPEC]``, SPEC defaults to ``torch>=2.5``; e.g.
``torch==2.13.0`` pins the version this project's CI tests with.
"""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import subprocess
import sys
import urllib.request

from packaging.requirements import Requirement

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def installed_version() -> str | None:
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def has_nvidia_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


def reachable(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=5)
        return True
    except OSError:
        return False


def main(spec: str = "torch>=2.5") -> int:
    requirement = Requirement(spec)
    if requirement.name != "torch":
        raise SystemExit(f"SPEC={spec!r} must be a requirement on torch, like 'torch>=2.5'")
    version = installed_version()
    if version is not None and requirement.specifier.contains(version.split("+")[0]):
        print(f"torch {version} is installed and satisfies {spec!r}: keeping it")
        return 0
    pip = [sys.executable, "-m", "pip", "install", spec]
    if platform.system() != "Linux" or has_nvidia_gpu():
        print(f"Installing {spec} from PyPI (GPU or non-Linux machine)")
    elif reachable(CPU_INDEX + "/"):
        print(f"No NVIDIA GPU: installing the CPU-only {spec} from {CPU_INDEX}")
        pip += ["--index-url", CPU_INDEX]
    else:
        print(f"No NVIDIA GPU, but {CPU_INDEX} is unreachable: installing {spec} from PyPI")
    print(" ".join(pip), flush=True)
    return subprocess.run(pip).returncode


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
