"""Cell metadata: cell ids and labels of the documented character set, numbers within bounds."""

from __future__ import annotations

import pytest

from connectors.meta import LIMITS, NAME_MAX_CHARS, meta_from_mapping, name_error
from connectors.wire import CellMeta, MetaError

_OCV = [[0.4 + 0.005 * k for k in range(101)], [0.45 + 0.005 * k for k in range(101)]]
_GENERIC = {"capacity_mah": 2.0, "v_min": 0.3, "v_max": 1.0, "ocv": _OCV}


@pytest.mark.parametrize("name", ["A1", "cell 7", "x,y=z", "Zelle-Ä/7 (#2)", "電池:01", "a" * NAME_MAX_CHARS])
def test_names_of_the_character_set_pass(name: str) -> None:
    assert name_error("cell id", name) is None


@pytest.mark.parametrize(("name", "words"), [
    ("x\\y", "'\\\\' (U+005C)"), ("x\\", "U+005C"), ('a"b', "U+0022"), ("a\x00b", "U+0000"), ("a\nb", "U+000A"),
    ("\ud800x", "U+D800"), ("a$b", "U+0024"), ("a{b}", "U+007B"), ("a<b", "U+003C"), ("a\u00a0b", "U+00A0"),
    (" a", "space"), ("a ", "space"), ("", "1 to 200"), ("a" * (NAME_MAX_CHARS + 1), "got 201"), (7, "string"),
])
def test_names_outside_it_say_which_character(name: object, words: str) -> None:
    problem = name_error("cell id", name)
    assert problem is not None and words in problem


@pytest.mark.parametrize("field", ["mass_mg", "c_rate"])
@pytest.mark.parametrize("value", [1e300, 10 ** 400, float("nan"), float("inf"), 0, -1.0, 1e-9])
def test_numbers_out_of_bounds_are_refused(field: str, value: float) -> None:
    data = {"preset": "mgh2", "mass_mg": 1.0, field: value}
    with pytest.raises(MetaError, match=field):
        meta_from_mapping("A1", data)


def test_numbers_at_their_bounds_are_accepted() -> None:
    low, high = LIMITS["mass_mg"]
    for mass in (low, high):
        meta = meta_from_mapping("A1", {"preset": "mgh2", "mass_mg": mass, "c_rate": LIMITS["c_rate"][1]})
        assert meta.mass_mg == mass and meta.params().capacity_mah > 0


@pytest.mark.parametrize(("generic", "words"), [
    ({**_GENERIC, "ocv": [[10 ** 400] * 101, _OCV[1]]}, "generic.ocv"),
    ({**_GENERIC, "ocv": [[1e300] * 101, _OCV[1]]}, "within -1 .. 6 V"),
    ({**_GENERIC, "ocv": [_OCV[0][:-1], _OCV[1]]}, "two lists of 101"),
    ({**_GENERIC, "ocv": [[True] * 101, _OCV[1]]}, "generic.ocv"),
    ({**_GENERIC, "capacity_mah": 1e300}, "generic.capacity_mah"),
    ({**_GENERIC, "v_max": 10 ** 400}, "generic.v_max"),
])
def test_generic_cells_are_bounded_too(generic: dict, words: str) -> None:
    with pytest.raises(MetaError, match=words.replace(".", r"\.")):
        meta_from_mapping("A1", {"generic": generic})


def test_a_valid_generic_cell_passes() -> None:
    meta = meta_from_mapping("A1", {"generic": _GENERIC, "mass_mg": 50.0})
    assert meta == CellMeta(cell="A1", mass_mg=50.0, generic={**_GENERIC, "v_min": 0.3, "v_max": 1.0, "capacity_mah": 2.0})


@pytest.mark.parametrize(("data", "words"), [
    ({"composition": "MgH2=1e308,Mg2NiH4=1e308", "mass_mg": 1.0}, "no capacity"),
    ({"composition": "MgH2=0.5\x1f,Nd2H5=0.5", "mass_mg": 1.0}, "U+001F"),
    ({"preset": "mgh2\\", "mass_mg": 1.0}, "U+005C"),
])
def test_labels_and_compositions_that_cannot_make_a_cell(data: dict, words: str) -> None:
    with pytest.raises(MetaError, match=words.replace("+", r"\+")):
        meta_from_mapping("A1", data)


def test_config_cell_ids_follow_the_same_rule() -> None:
    with pytest.raises(MetaError, match="U\\+005C"):
        meta_from_mapping("x\\y", {"preset": "mgh2", "mass_mg": 1.0})
