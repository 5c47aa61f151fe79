"""``python -m itcollect.config --markdown > docs/config.md`` (the reference page), or
``--default`` (the commented default ``itcollect.toml``, as ``init`` writes it)."""

from __future__ import annotations

import argparse
import sys

from itcollect.config.render import default_config_text, markdown_reference


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m itcollect.config", description=__doc__)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--markdown", action="store_true", help="the Markdown reference (docs/config.md)")
    what.add_argument("--default", action="store_true", help="the commented default itcollect.toml")
    args = parser.parse_args(argv)
    sys.stdout.write(markdown_reference() if args.markdown else default_config_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
