"""Check the built book: every toc page exists as HTML, search works, and key pages render.

Pages are screenshotted with headless Chromium and checked to be non-blank, with their title
present in the rendered DOM. On every page, every figure has a real alt text, and no cell
output is wider than the text column (measured in Chromium at a 1280-px-wide window).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
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


# --------------------------------------------------------------------------------------
# Figures: a real alt text on every image of a page's content


class _ArticleImages(HTMLParser):
    """Collects the (alt, src) of every <img> inside the page's <article>."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0  # how many <article> elements we are inside
        self.images: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "article":
            self.depth += 1
        elif tag == "img" and self.depth:
            attributes = dict(attrs)
            self.images.append((attributes.get("alt") or "", attributes.get("src") or ""))

    def handle_endtag(self, tag):
        if tag == "article" and self.depth:
            self.depth -= 1


def check_figure_alt_texts(page: str) -> list[str]:
    """Problems with the alt texts of the figures of one built page (none: an empty list).

    A real alt text says what the figure shows. Without one, myst-nb falls back to the image's
    file name, a content hash such as ``52d9ef4d...a59.png``.
    """
    parser = _ArticleImages()
    parser.feed((HTML / f"{page}.html").read_text(encoding="utf-8"))
    problems = []
    for number, (alt, src) in enumerate(parser.images, start=1):
        stem = Path(src).stem
        if len(alt.split()) < 3 or alt == stem or re.fullmatch(r"[0-9a-f]{16,}(\.\w+)?", alt):
            problems.append(f"{page}: figure {number} ({Path(src).name}) has no real alt text")
    return problems


# --------------------------------------------------------------------------------------
# Outputs that fit the column

OUTPUT_WINDOW = "1280,1600"  # the narrowest common desktop window: the text column is ~750 px
# Runs in the page once it has loaded: every cell output box, and every box inside it, must
# neither scroll sideways (content wider than the box) nor reach past the text column.
_MEASURE_JS = r"""
window.addEventListener("load", () => {
  const article = document.querySelector("article.bd-article");
  const right = article ? article.getBoundingClientRect().right : Infinity;
  const cells = [...document.querySelectorAll("div.cell")];
  const wide = [];
  document.querySelectorAll("div.cell_output").forEach((area) => {
    const boxes = [area, ...area.querySelectorAll("pre, table, div, img")];
    for (const box of boxes) {
      const scrolls = box.clientWidth > 0 && box.scrollWidth > box.clientWidth + 1;
      const sticksOut = box.getBoundingClientRect().right > right + 1;
      if (scrolls || sticksOut) {
        wide.push({cell: cells.indexOf(area.closest("div.cell")) + 1,
                   tag: box.tagName.toLowerCase(),
                   width: Math.max(box.scrollWidth, Math.ceil(box.getBoundingClientRect().width)),
                   room: box.clientWidth,
                   text: (box.innerText || "").trim().split("\n")[0].slice(0, 50)});
        break;  // one report per output
      }
    }
  });
  const result = document.createElement("script");
  result.type = "application/json";
  result.id = "check-book-widths";
  result.textContent = JSON.stringify({column: article ? article.clientWidth : 0, wide: wide});
  document.body.appendChild(result);
});
"""


def measure_output_widths(page: str) -> dict:
    """Load one built page in Chromium and measure its cell outputs against the column.

    The page is copied with the measuring script added and a <base> pointing at the original,
    so that its styles load exactly as for a reader. Returns {"column": px, "wide": [...]}.
    """
    source = HTML / f"{page}.html"
    text = source.read_text(encoding="utf-8")
    head = f'<base href="{source.as_uri()}"><script>{_MEASURE_JS}</script>'
    text = text.replace("<head>", "<head>" + head, 1)
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "page.html"
        copy.write_text(text, encoding="utf-8")
        dom = chromium(
            f"--window-size={OUTPUT_WINDOW}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            copy.as_uri(),
        ).stdout
    found = re.search(
        r'<script type="application/json" id="check-book-widths">(.*?)</script>', dom, re.S
    )
    if found is None:
        raise RuntimeError(f"{page}: the width measurement did not run in Chromium")
    return json.loads(found.group(1))  # a script's text is not HTML-escaped


def check_output_widths(page: str) -> list[str]:
    """Problems with cell outputs wider than the text column on one page (none: empty)."""
    try:
        measured = measure_output_widths(page)
    except RuntimeError as error:
        return [str(error)]
    return [
        f"{page}: the output of code cell {w['cell']} (In [{w['cell']}]) is {w['width']} px wide "
        f"in a {w['room']} px <{w['tag']}>: {w['text']!r}"
        for w in measured["wide"]
    ]


def main() -> int:
    errors = []
    for page in toc_files():
        if not (HTML / f"{page}.html").is_file():
            errors.append(f"missing page: _build/html/{page}.html")
    for needed in ("search.html", "searchindex.js"):
        if not (HTML / needed).is_file():
            errors.append(f"search is missing: _build/html/{needed}")

    for page in toc_files():  # every figure says what it shows
        if (HTML / f"{page}.html").is_file():
            errors += check_figure_alt_texts(page)

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
        for page in toc_files():  # cell outputs within the text column
            if (HTML / f"{page}.html").is_file():
                errors += check_output_widths(page)
    for e in errors:
        print("error:", e, file=sys.stderr)
    print(f"{len(toc_files())} toc pages checked, {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
