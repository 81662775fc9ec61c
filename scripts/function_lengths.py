#!/usr/bin/env python3
"""Lists Rust functions longer than a limit: `python3 scripts/function_lengths.py [--max 120] [DIR ...]`.

A function runs from its `fn` line to the line of the brace that closes its body (braces in
strings, chars and comments are skipped). With no directories it checks the `src/` of the runtime
and actors crates, which issue 15 keeps under 120 lines per function; exits 1 when any is over.
"""

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(async\s+)?(unsafe\s+)?(const\s+)?fn\s+([A-Za-z0-9_]+)")


def strip(line: str, in_block: bool) -> tuple[str, bool]:
    """The line without comments, strings and char literals (which may hold braces)."""
    out, i = [], 0
    while i < len(line):
        if in_block:
            end = line.find("*/", i)
            if end < 0:
                return "".join(out), True
            i, in_block = end + 2, False
            continue
        c = line[i]
        if line.startswith("//", i):
            break
        if line.startswith("/*", i):
            in_block, i = True, i + 2
            continue
        if c == '"':
            i += 1
            while i < len(line) and line[i] != '"':
                i += 2 if line[i] == "\\" else 1
            i += 1
            continue
        if c == "'" and re.match(r"'(\\.|[^\\'])'", line[i:]):
            i += len(re.match(r"'(\\.|[^\\'])'", line[i:]).group(0))
            continue
        out.append(c)
        i += 1
    return "".join(out), in_block


def functions(path: Path):
    """(name, first line, length) of every function with a body in `path`."""
    lines = path.read_text().splitlines()
    clean, in_block = [], False
    for line in lines:
        text, in_block = strip(line, in_block)
        clean.append(text)
    for start, line in enumerate(clean):
        match = FN.match(line)
        if not match:
            continue
        depth, opened = 0, False
        for end in range(start, len(clean)):
            for c in clean[end]:
                if c == "{":
                    depth, opened = depth + 1, True
                elif c == "}":
                    depth -= 1
                elif c == ";" and not opened and depth == 0:
                    break  # a declaration without a body (trait method)
            else:
                if opened and depth == 0:
                    yield match.group(6), start + 1, end - start + 1
                    break
                continue
            break


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max", type=int, default=120)
    parser.add_argument("dirs", nargs="*")
    args = parser.parse_args()
    dirs = [Path(d) for d in args.dirs] or [ROOT / "runtime/src", ROOT / "actors/src"]
    over = []
    for d in dirs:
        for path in sorted(Path(d).rglob("*.rs")):
            for name, line, length in functions(path):
                if length > args.max:
                    over.append((length, f"{path.relative_to(ROOT)}:{line}", name))
    for length, where, name in sorted(over, reverse=True):
        print(f"{length:5} lines  {name}  ({where})")
    print(f"{len(over)} function(s) over {args.max} lines")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
