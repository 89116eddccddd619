"""Overlapped: a failed write in flight at close is raised, or held while the run stops."""

from __future__ import annotations

import pytest
from bytewax.outputs import StatelessSinkPartition

from connectors.outage import ask_stop, clear_stop, take_held
from connectors.overlap import Overlapped


class _Refusing(StatelessSinkPartition[int]):
    def __init__(self) -> None:
        self.closed = False

    def write_batch(self, items: list[int]) -> None:
        raise ValueError(f"refused {items}")

    def close(self) -> None:
        self.closed = True


def test_a_failed_write_is_raised_at_close() -> None:
    inner = _Refusing()
    part = Overlapped(inner, "test")
    part.write_batch([1])
    with pytest.raises(ValueError, match=r"refused \[1\]"):
        part.close()
    assert inner.closed and take_held() is None


def test_a_failed_write_is_held_when_the_close_comes_with_a_stop() -> None:
    inner = _Refusing()
    part = Overlapped(inner, "test")
    part.write_batch([2])
    ask_stop()
    try:
        part.close()  # raising here, while bytewax unwinds, would abort the process
        held = take_held()
    finally:
        clear_stop()
    assert inner.closed
    assert isinstance(held, ValueError) and str(held) == "refused [2]"
    assert take_held() is None
