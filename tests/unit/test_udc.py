"""The user-data comparison in C (auditor/store/_udc.c) answers what the Python reference in
auditor.store.userdata_values answers, for any maps: the same keys, with the very value
objects of the later map; the same big-number verdict; the same errors; no crash and no leak
on odd input (values whose == misbehaves or mutates the maps)."""

from __future__ import annotations

import math
import shutil
import sysconfig
import tracemalloc
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from auditor.evidence import native
from auditor.store import userdata_values

try:
    from auditor.store import _udc
except ImportError:  # no compiler at install time: only the Python path exists
    _udc = None  # type: ignore[assignment]

needs_native = pytest.mark.skipif(_udc is None, reason="auditor.store._udc is not built")

# JSON's values as parsers give them, plus the ones that compare oddly in Python: NaN (not
# equal to itself), -0.0 (equal to 0.0), 1 / 1.0 / True (equal, of three types), integers
# and floats around 2**53 and beyond 64 bits.
_ints = st.integers(-(2**70), 2**70) | st.integers(-3, 3) | st.integers(2**53 - 2, 2**53 + 2)
_floats = st.floats() | st.sampled_from(
    [0.0, -0.0, 1.0, float(2**53), -float(2**53), 1e300, math.nan, math.inf, -math.inf]
)
_scalars = st.none() | st.booleans() | _ints | _floats | st.text(max_size=8)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
_keys = st.sampled_from(["Case", "Step", "Flag", "Note", "", "é", "k" * 40]) | st.text(max_size=4)
_maps = st.dictionaries(_keys, _values, max_size=8)


def _same(c: dict[str, Any] | None, py: dict[str, Any] | None) -> bool:
    """Equal answers: None for both, or the same keys in the same order with the same value
    objects (== would call NaN unequal and 1 equal to True)."""
    if c is None or py is None:
        return c is py
    return list(c) == list(py) and all(c[k] is py[k] for k in c)


def _compiler() -> str | None:
    command = (sysconfig.get_config_var("CC") or "cc").split()
    return shutil.which(command[0]) if command else None


def test_the_extension_is_built_where_a_compiler_is_and_used_unless_switched_off() -> None:
    if native.SWITCHED_OFF:
        assert userdata_values.NATIVE is None
        pytest.skip("AUDITOR_NATIVE=0: the C comparison is switched off on purpose")
    if _compiler() is None:
        pytest.skip("no C compiler here: the install used the Python comparison (README)")
    assert _udc is not None
    assert userdata_values.NATIVE is not None


@needs_native
@settings(max_examples=150, deadline=None)
@given(_maps, _maps, st.data())
@example({"Flag": True}, {"Flag": 1}, None)
@example({"n": 1}, {"n": 1.0}, None)
@example({"n": 0.0}, {"n": -0.0}, None)
@example({"n": math.nan}, {"n": math.nan}, None)
@example({"a": [math.nan]}, {"a": [math.nan]}, None)
@example({}, {}, None)
def test_diff_in_c_answers_what_python_answers(
    before: dict[str, Any], after: dict[str, Any], data: st.DataObject | None
) -> None:
    if data is not None:
        # later maps mostly repeat the earlier one's keys and values, as GWS's do
        kept = data.draw(st.lists(st.sampled_from(sorted(before)), unique=True)) if before else []
        after = {**{k: before[k] for k in kept}, **after}
    assert _udc is not None
    assert _same(_udc.diff(before, after), userdata_values.diff_py(before, after))
    same_object = dict(after)  # a value identical to the one before (one parse, two maps)
    assert _same(_udc.diff(after, same_object), userdata_values.diff_py(after, same_object))


@needs_native
@settings(max_examples=100, deadline=None)
@given(_maps)
@example({"n": float(2**53)})
@example({"n": -float(2**53)})
@example({"n": float(2**53) - 1})
@example({"n": math.inf, "m": math.nan})
@example({"n": 2**80})
def test_inexact_in_c_answers_what_python_answers(values: dict[str, Any]) -> None:
    assert _udc is not None
    assert _udc.inexact(values) is userdata_values.inexact_py(values)


@needs_native
def test_a_type_change_alone_is_a_change_in_both() -> None:
    assert _udc is not None
    for impl in (_udc.diff, userdata_values.diff_py):
        assert impl({"Flag": True}, {"Flag": 1}) == {"Flag": 1}
        assert impl({"n": 1}, {"n": 1.0}) == {"n": 1.0}
        assert impl({"n": 1, "s": "x"}, {"n": 1, "s": "x"}) is None


@needs_native
def test_anything_but_exact_dicts_is_refused_by_c_and_left_to_python() -> None:
    class Sub(dict[str, Any]):
        pass

    assert _udc is not None
    for before, after in (({}, []), (None, {}), (Sub(a=1), {"a": 2}), ({"a": 1}, Sub(a=2))):
        with pytest.raises(TypeError):
            _udc.diff(before, after)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _udc.diff({})  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        _udc.inexact([1.0])  # type: ignore[arg-type]
    if userdata_values.NATIVE is None:
        return  # AUDITOR_NATIVE=0: the writer calls the Python reference itself
    diff, inexact = userdata_values.NATIVE
    assert diff(Sub(a=1), {"a": 2}) == {"a": 2}
    assert inexact(Sub(a=float(2**60))) is True


class _Raises:
    def __ne__(self, other: object) -> bool:
        raise ValueError("no comparing")

    __hash__ = None  # type: ignore[assignment]


class _Mutates:
    """A value whose comparison empties the map being compared: C must hold its references
    and stop as Python's iteration does, not read freed memory."""

    def __init__(self, victim: dict[str, Any]) -> None:
        self.victim = victim

    def __ne__(self, other: object) -> bool:
        self.victim.clear()
        return True

    __hash__ = None  # type: ignore[assignment]


@needs_native
def test_errors_and_mutation_in_comparisons_end_as_in_python() -> None:
    assert _udc is not None
    for impl in (_udc.diff, userdata_values.diff_py):
        with pytest.raises(ValueError, match="no comparing"):
            impl({"a": _Raises()}, {"a": _Raises()})
        after: dict[str, Any] = {"a": None, "b": 2, "c": 3}
        before: dict[str, Any] = {"a": None}
        after["a"] = _Mutates(after)
        before["a"] = _Mutates(after)  # (the left operand's __ne__ runs)
        with pytest.raises(RuntimeError, match="changed size"):
            impl(before, after)
        # the map before emptied under it: a lookup finds nothing more, no error
        after = {"a": None, "b": 2}
        before = {"a": None, "b": 1}
        after["a"] = _Mutates(before)
        before["a"] = _Mutates(before)
        assert list(impl(before, after) or {}) == ["a", "b"]


@needs_native
def test_200_000_comparisons_leave_no_memory_behind() -> None:
    assert _udc is not None
    before = {"Case": "C-4711", "Priority": 2, "Note0": "waiting", "Big": 1.5}
    after = {"Case": "C-4711", "Priority": 3, "Note0": "waiting", "Note1": "escalated"}
    for _ in range(10_000):  # warm the allocator
        _udc.diff(before, after)
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for _ in range(200_000):
            _udc.diff(before, after)
            _udc.diff(after, after)
            _udc.inexact(after)
        grown = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert grown < 10_000, f"{grown} bytes left after 200,000 calls"
