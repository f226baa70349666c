"""Command line: ``python -m tutorial_lib fetch [NAME ...|--all]`` and ``... list``."""

from __future__ import annotations

import argparse
import sys
import time

from . import assets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tutorial_lib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download and prepare assets into the cache")
    fetch.add_argument(
        "names", nargs="*", metavar="NAME", help=f"one of: {', '.join(assets.ASSETS)}"
    )
    fetch.add_argument("--all", action="store_true", help="fetch every asset")
    sub.add_parser("list", help="list assets: name, size, cached or not, source package")
    args = parser.parse_args(argv)

    if args.command == "list":
        print(f"cache: {assets.cache_dir()}")
        print(f"{'name':<28}{'cached':<8}{'size':>10}  source")
        for row in assets.list_assets():
            size = f"{row['size_mb']} MB" if row["size_mb"] is not None else "-"
            print(
                f"{row['name']:<28}{'yes' if row['cached'] else 'no':<8}{size:>10}  {row['source']}"
            )
        return 0

    names = list(assets.ASSETS) if args.all else args.names
    if not names:
        parser.error("fetch needs asset names or --all")
    for name in names:
        try:
            start = time.perf_counter()
            path = assets.fetch(name)
        except (ValueError, assets.AssetError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"{name}: {path} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
