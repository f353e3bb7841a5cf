"""Exit non-zero if robustbench's installed files differ from its own RECORD.

torchattacks 3.5.1's wheel ships an old top-level ``robustbench/`` package;
installed after robustbench it silently replaces robustbench's modules while
pip still reports robustbench 1.1.1. Comparing hashes with robustbench's
RECORD detects that without importing anything.
"""
import base64
import hashlib
import sys
from importlib import metadata


def main() -> int:
    dist = metadata.distribution("robustbench")
    bad = []
    for f in dist.files or []:
        if not f.hash or not str(f).startswith("robustbench/"):
            continue
        path = f.locate()
        try:
            digest = hashlib.new(f.hash.mode, path.read_bytes()).digest()
        except FileNotFoundError:
            bad.append(f"{f} (missing)")
            continue
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != f.hash.value:
            bad.append(str(f))
    if bad:
        print(f"robustbench files differ from its RECORD: {', '.join(bad[:5])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
