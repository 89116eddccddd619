"""A minimal YAML writer for the provisioning files.

The project does not depend on a YAML library, and the provisioning files only hold
mappings, lists, numbers, booleans and strings. Strings are written as JSON string
literals (a subset of YAML's double-quoted style) unless they are plainly safe;
multi-line strings (the Flux queries) become literal blocks so a reviewer reads the
query as it runs.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["dump"]

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-/ ]*")
# Words a YAML 1.1 parser (Grafana's) would read as something other than a string.
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        plain = (_PLAIN.fullmatch(value) and value.lower() not in _RESERVED
                 and not value.endswith(" "))
        return value if plain else json.dumps(value, ensure_ascii=False)
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _block(value: str, indent: int) -> list[str] | None:
    # A literal block keeps every character except trailing whitespace on a line
    # and leading space on the first one; fall back to a quoted scalar for those.
    lines = value.split("\n")
    if len(lines) < 2 or lines[0].startswith(" ") or any(l != l.rstrip() for l in lines):
        return None
    chomp = "|" if value.endswith("\n") else "|-"
    body = lines[:-1] if value.endswith("\n") else lines
    pad = " " * indent
    return [chomp, *[(pad + line) if line else "" for line in body]]


def _emit(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            out.extend(_entry(f"{pad}{_scalar(str(key))}:", item, indent))
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                nested = _emit(item, indent + 2)
                out.append(f"{pad}- {nested[0].lstrip()}")
                out.extend(nested[1:])
            else:
                out.extend(_entry(f"{pad}-", item, indent))
    else:
        raise TypeError("top level must be a mapping or a list")
    return out


def _entry(head: str, item: Any, indent: int) -> list[str]:
    if isinstance(item, (dict, list)) and item:
        return [head, *_emit(item, indent + 2)]
    if isinstance(item, dict):
        return [f"{head} {{}}"]
    if isinstance(item, list):
        return [f"{head} []"]
    if isinstance(item, str):
        block = _block(item, indent + 2)
        if block:
            return [f"{head} {block[0]}", *block[1:]]
    return [f"{head} {_scalar(item)}"]


def dump(document: dict[str, Any]) -> str:
    """YAML text of ``document`` (block style, keys in insertion order)."""
    return "\n".join(_emit(document, 0)) + "\n"
