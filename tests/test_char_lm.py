"""tutorial_lib.char_lm and tools/train_tiny_char_model.py: chapter 10's tiny character model."""

import math
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tutorial_lib.char_lm import (
    CHECKPOINT,
    CharVocab,
    init_weights,
    lee_corpus,
    load_tiny_char_model,
    mean_loss,
    tiny_char_config,
)
from tutorial_lib.phi3 import Phi3ForCausalLM

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "train_tiny_char_model.py"


def test_vocab_round_trip_and_unknown_characters():
    vocab = CharVocab.from_text("hello, world")
    assert vocab.chars == " ,dehlorw" and len(vocab) == 9
    ids = vocab.encode("world, hello")
    assert ids.dtype == torch.long and vocab.decode(ids) == "world, hello"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        vocab.encode("Hello")


def test_config_defaults_are_the_chapters_live_model():
    config = tiny_char_config(81)
    model = Phi3ForCausalLM(config)
    # chapter 10 prints 404,224 parameters for its live 2-block model
    assert sum(p.numel() for p in model.parameters()) == 404_224
    assert config.max_position_embeddings == 64 and config.intermediate_size == 384
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied


def test_small_initial_weights_give_the_uniform_loss():
    # With std 0.02 every character is about equally likely: a loss of about ln V.
    torch.manual_seed(0)
    model = Phi3ForCausalLM(tiny_char_config(50, hidden_size=32, num_hidden_layers=1))
    init_weights(model)
    data = torch.randint(50, (2000,), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        loss = mean_loss(model, data, context=64, n_windows=20)
    assert abs(loss - math.log(50)) < 0.05


def test_mean_loss_is_cross_entropy_on_fixed_windows():
    torch.manual_seed(0)
    model = Phi3ForCausalLM(tiny_char_config(20, hidden_size=32, num_hidden_layers=1))
    data = torch.randint(20, (500,), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        # two windows: at the start and at the end of the data
        expected = torch.nn.functional.cross_entropy(
            torch.cat([model(data[None, s : s + 8]).logits[0] for s in (0, 491)]),
            torch.cat([data[s + 1 : s + 9] for s in (0, 491)]),
        ).item()
        assert mean_loss(model, data, context=8, n_windows=2) == pytest.approx(expected)


def test_the_checkpoint_ships_with_the_package():
    packaged = resources.files("tutorial_lib") / "data" / "tiny_char_lm.safetensors"
    assert packaged.is_file() and Path(str(packaged)) == CHECKPOINT
    assert CHECKPOINT.stat().st_size < 5_000_000  # small enough to commit


def test_the_checkpoint_loads_and_scores_what_the_script_printed():
    model, vocab, metadata = load_tiny_char_model()
    train_text, val_text = lee_corpus()
    assert vocab == CharVocab.from_text(train_text + val_text)  # the chapter's 81 characters
    assert model.lm_head.weight is model.model.embed_tokens.weight
    context = model.config.max_position_embeddings
    with torch.no_grad():
        loss = mean_loss(model, vocab.encode(val_text), context)
    # The script evaluated the same float16-rounded weights on the same windows.
    assert loss == pytest.approx(float(metadata["held_out_loss"]), abs=2e-3)
    assert metadata["command"].startswith("python tools/train_tiny_char_model.py")


def test_the_script_is_deterministic(tmp_path):
    args = ["--steps", "3", "--eval-every", "3", "--hidden-size", "32", "--layers", "1"]
    args += ["--heads", "2", "--kv-heads", "1"]
    runs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.safetensors"
        subprocess.run([sys.executable, str(SCRIPT), *args, "--out", str(out)], check=True)
        runs.append(load_file(str(out)))
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])  # bit for bit
