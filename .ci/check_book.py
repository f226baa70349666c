"""Check the built book: every toc page exists as HTML, search works, and key pages render.

Pages are screenshotted with headless Chromium and checked to be non-blank, with their title
present in the rendered DOM.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib.image as mpimg
import yaml

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
# (page, texts that must all appear in the rendered page)
RENDER_CHECKS = [
    ("book/intro", ["How Transformer LLMs Work"]),
    ("notebooks/01_bag_of_words", ["Bag of words"]),
    # The colored tokens render as HTML spans (not as escaped text or ANSI codes).
    (
        "notebooks/05_tokenizers",
        ["gpt-2: 48 tokens, vocabulary 50,257", "background:#fde2a7", "Qwen2: byte-level BPE"],
    ),
]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part.get("chapters", [])]
    return files


def chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )


def main() -> int:
    errors = []
    for page in toc_files():
        if not (HTML / f"{page}.html").is_file():
            errors.append(f"missing page: _build/html/{page}.html")
    for needed in ("search.html", "searchindex.js"):
        if not (HTML / needed).is_file():
            errors.append(f"search is missing: _build/html/{needed}")

    if shutil.which("chromium") is None:
        errors.append("chromium is not installed: cannot check that pages render")
    else:
        shots = ROOT / "_build" / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        for page, texts in RENDER_CHECKS:
            url = (HTML / f"{page}.html").as_uri()
            png = shots / (page.replace("/", "_") + ".png")
            chromium(f"--screenshot={png}", "--window-size=1280,1600", url)
            dom = chromium("--dump-dom", url).stdout
            if not png.is_file():
                errors.append(f"{page}: no screenshot")
                continue
            pixels = mpimg.imread(png)[..., :3]  # (height, width, 3) floats in [0, 1]
            inked = float((pixels.mean(axis=-1) < 0.9).mean())  # share of non-white pixels
            print(f"{page}: screenshot {pixels.shape[1]}x{pixels.shape[0]}, {inked:.1%} inked")
            if inked < 0.02:
                errors.append(f"{page}: the screenshot is blank ({inked:.1%} non-white pixels)")
            for text in texts:
                if text not in dom:
                    errors.append(f"{page}: {text!r} is not in the rendered page")
    for e in errors:
        print("error:", e, file=sys.stderr)
    print(f"{len(toc_files())} toc pages checked, {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
