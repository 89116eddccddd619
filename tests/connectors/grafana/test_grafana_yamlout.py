"""The small YAML writer used for the provisioning files."""

from __future__ import annotations

import pytest

from connectors.grafana.yamlout import dump


def test_scalars_are_plain_only_when_unambiguous() -> None:
    text = dump({"a": "plain text", "b": "yes", "c": "5m", "d": "${ENV}", "e": 0.7, "f": True,
                 "g": None, "h": "x: y", "i": [], "j": {}})
    assert text == (
        'a: plain text\nb: "yes"\nc: "5m"\nd: "${ENV}"\ne: 0.7\nf: true\ng: null\n'
        'h: "x: y"\ni: []\nj: {}\n'
    )


def test_lists_of_mappings_and_multiline_strings() -> None:
    text = dump({"rules": [{"uid": "r1", "query": "from(x)\n  |> last()"}, "s"]})
    assert text == "rules:\n  - uid: r1\n    query: |-\n      from(x)\n        |> last()\n  - s\n"


def test_multiline_string_that_a_block_cannot_hold_is_quoted() -> None:
    assert dump({"q": "trailing \nspace"}) == 'q: "trailing \\nspace"\n'


def test_unsupported_values_are_refused() -> None:
    with pytest.raises(TypeError):
        dump({"when": object()})
