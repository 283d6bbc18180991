"""keras_actkit._validation on its own: the one argument policy, helper by helper.

The policy (the module's docstring): numpy scalars are accepted wherever Python
numbers are and come back as Python numbers; `bool` is neither a number nor an
integer; strings are never converted; numbers must be finite; a wrong type is a
TypeError, a right type out of range a ValueError; the message names the
argument, the value received and what is accepted. The callers' own checks are
in test_bad_input.py; here each helper is called directly.
"""

import fractions
import os

import keras
import numpy as np
import pytest

from keras_actkit import _validation


def _message(error, call):
    with pytest.raises(error) as info:
        call()
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"  # not a subclass
    return str(info.value)


# ---------------------------------------------------------------- is_integer / is_number

# value -> (is an integer, is a number), from Python's and numpy's own type semantics.
KINDS = [
    (3, True, True), (-7, True, True), (np.int8(3), True, True), (np.int64(3), True, True),
    (np.uint32(3), True, True), (2.5, False, True), (3.0, False, True), (np.float32(2.5), False, True),
    (np.float16(1), False, True), (fractions.Fraction(1, 3), False, True), (float("nan"), False, True),
    (True, False, False), (False, False, False), (np.bool_(True), False, False), ("3", False, False),
    (b"3", False, False), (None, False, False), (1 + 2j, False, False), (np.complex64(1), False, False),
    (np.array(3), False, False), ([3], False, False),
]


@pytest.mark.parametrize("value, integer, number", KINDS, ids=[repr(k[0]) for k in KINDS])
def test_what_counts_as_an_integer_and_a_number(value, integer, number):
    assert _validation.is_integer(value) is integer
    assert _validation.is_number(value) is number


# ---------------------------------------------------------------- integer


@pytest.mark.parametrize("value", [np.int8(5), np.int64(5), np.uint16(5), 5])
def test_integer_returns_a_python_int(value):
    result = _validation.integer("n", value, minimum=1, maximum=5)
    assert type(result) is int and result == 5


@pytest.mark.parametrize("value", [True, np.bool_(False), 5.0, np.float32(5), "5", [5], None])
def test_integer_of_the_wrong_type_is_a_type_error_naming_it(value):
    message = _message(TypeError, lambda: _validation.integer("steps", value, minimum=1))
    assert message == f"`steps` must be an integer >= 1; received steps={value!r}."


def test_integer_bounds_are_inclusive_and_out_of_range_is_a_value_error():
    assert _validation.integer("n", 1, minimum=1, maximum=3) == 1
    assert _validation.integer("n", 3, minimum=1, maximum=3) == 3
    below = _message(ValueError, lambda: _validation.integer("n", np.int64(0), minimum=1, maximum=3))
    assert below == "`n` must be an integer >= 1 and <= 3; received n=0."  # shown as the Python int
    above = _message(ValueError, lambda: _validation.integer("n", 4, minimum=1, maximum=3))
    assert above == "`n` must be an integer >= 1 and <= 3; received n=4."
    assert _validation.integer("n", -(10 ** 30)) == -(10 ** 30)  # no bounds: any integer


def test_integer_none_only_when_allowed_and_then_said():
    assert _validation.integer("n", None, minimum=1, allow_none=True) is None
    message = _message(TypeError, lambda: _validation.integer("n", "x", minimum=1, allow_none=True))
    assert message == "`n` must be an integer >= 1 or None; received n='x'."
    message = _message(TypeError, lambda: _validation.integer("n", None))
    assert message == "`n` must be an integer; received n=None."


def test_seed_is_none_or_a_non_negative_integer():
    assert _validation.seed("seed", None) is None
    assert _validation.seed("seed", 0) == 0
    result = _validation.seed("seed", np.uint64(2 ** 40))
    assert type(result) is int and result == 2 ** 40
    assert "received seed=-1" in _message(ValueError, lambda: _validation.seed("seed", -1))
    assert "received seed=True" in _message(TypeError, lambda: _validation.seed("seed", True))
    assert ">= 0 or None" in _message(TypeError, lambda: _validation.seed("seed", 1.0))


# ---------------------------------------------------------------- number


@pytest.mark.parametrize("value, expected", [
    (np.float32(0.1), 0.10000000149011612),  # the float32's exact value, not 0.1
    (np.float64(0.25), 0.25), (np.int64(2), 2.0), (2, 2.0), (fractions.Fraction(1, 4), 0.25),
])
def test_number_returns_a_python_float(value, expected):
    result = _validation.number("x", value)
    assert type(result) is float and result == expected


@pytest.mark.parametrize("value", [True, np.bool_(True), "0.5", b"1", None, 1j, np.array(0.5), [0.5]])
def test_number_of_the_wrong_type_is_a_type_error_naming_it(value):
    message = _message(TypeError, lambda: _validation.number("lr", value, minimum=0, min_inclusive=False))
    assert message == f"`lr` must be a finite number > 0; received lr={value!r}."


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -np.inf, np.float32("nan"), np.float16("inf")])
def test_non_finite_numbers_are_a_value_error_even_without_bounds(value):
    message = _message(ValueError, lambda: _validation.number("beta", value))
    assert message == f"`beta` must be a finite number; received beta={float(value)!r}."


@pytest.mark.parametrize("min_inclusive, max_inclusive, text", [
    (True, True, ">= 0 and <= 1"), (False, True, "> 0 and <= 1"),
    (True, False, ">= 0 and < 1"), (False, False, "> 0 and < 1"),
])
def test_number_bounds_open_or_closed_at_each_end(min_inclusive, max_inclusive, text):
    def check(value):
        return _validation.number("p", value, 0, 1, min_inclusive, max_inclusive)

    assert check(0.5) == 0.5
    for edge, inclusive in ((0.0, min_inclusive), (1.0, max_inclusive)):
        if inclusive:
            assert check(edge) == edge
        else:
            assert _message(ValueError, lambda: check(edge)) == f"`p` must be a finite number {text}; received p={edge!r}."
    # Just outside either end: always refused.
    for outside in (np.nextafter(0.0, -1.0), np.nextafter(1.0, 2.0)):
        assert f"received p={float(outside)!r}" in _message(ValueError, lambda: check(outside))


def test_number_bound_on_one_side_only_and_none_when_allowed():
    assert _validation.number("x", -1e300, maximum=1.0) == -1e300
    assert "must be a finite number <= 1.0;" in _message(ValueError, lambda: _validation.number("x", 2, maximum=1.0))
    assert _validation.number("x", None, allow_none=True) is None
    message = _message(TypeError, lambda: _validation.number("x", "a", minimum=0, allow_none=True))
    assert message == "`x` must be a finite number >= 0 or None; received x='a'."


# ---------------------------------------------------------------- boolean, one_of, model


@pytest.mark.parametrize("value, expected", [(True, True), (False, False), (np.bool_(True), True),
                                             (np.bool_(False), False)])
def test_boolean_accepts_python_and_numpy_booleans(value, expected):
    assert _validation.boolean("verbose", value) is expected


@pytest.mark.parametrize("value", [1, 0, np.int64(1), 1.0, "True", "yes", None])
def test_boolean_refuses_numbers_and_strings(value):
    message = _message(TypeError, lambda: _validation.boolean("verbose", value))
    assert message == f"`verbose` must be True or False; received verbose={value!r}."


def test_one_of_compares_type_and_value():
    choices = ("uniform", "truncated_normal")
    assert _validation.one_of("distribution", "uniform", choices) == "uniform"
    message = _message(ValueError, lambda: _validation.one_of("distribution", "normal", choices))
    assert message == ("`distribution` must be one of 'uniform', 'truncated_normal'; "
                       "received distribution='normal'.")
    # 1 == True and 1 == 1.0 in Python; a choice of 1 still refuses them (bool is not an int).
    for value in (True, 1.0):
        assert "one of 1, 2" in _message(ValueError, lambda: _validation.one_of("k", value, (1, 2)))
    assert _validation.one_of("k", 2, (1, 2)) == 2


def test_one_of_takes_a_numpy_string_as_the_str_it_holds():
    # e.g. a rule name read back from an array (np.array(["onset"])[0] is an np.str_).
    chosen = _validation.one_of("rule", np.str_("onset"), ("valley", "onset"))
    assert chosen == "onset" and type(chosen) is str
    assert "one of 'valley'" in _message(ValueError, lambda: _validation.one_of("rule", np.str_("x"), ("valley",)))
    assert "one of 'valley'" in _message(ValueError, lambda: _validation.one_of("rule", b"valley", ("valley",)))


def test_model_accepts_a_keras_model_only():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert _validation.model("model", model) is model
    layer = keras.layers.Dense(1)
    for value in ("model", layer, None):
        message = _message(TypeError, lambda: _validation.model("model", value))
        assert message == f"`model` must be a keras.Model; received model={value!r}."


# ---------------------------------------------------------------- paths


def test_writable_file_needs_an_existing_writable_directory(tmp_path):
    path = tmp_path / "out.npz"
    assert _validation.writable_file("path", path) is path  # returned as given, str or PathLike
    assert _validation.writable_file("path", str(path)) == str(path)
    assert _validation.writable_file("path", None, allow_none=True) is None
    missing = str(tmp_path / "missing" / "out.npz")
    message = _message(ValueError, lambda: _validation.writable_file("path", missing))
    assert f"received path={missing!r}" in message and repr(str(tmp_path / "missing")) in message
    assert "does not exist" in message
    message = _message(TypeError, lambda: _validation.writable_file("path", 3, allow_none=True))
    assert message == "`path` must be a path (str or os.PathLike) in an existing directory or None; received path=3."
    # /proc exists and takes no new file or directory, even as root.
    assert "not writable" in _message(ValueError, lambda: _validation.writable_file("path", "/proc/out.npz"))


def test_relative_paths_are_resolved_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _validation.writable_file("path", "out.npz") == "out.npz"
    os.mkdir("sub")
    assert _validation.writable_file("path", os.path.join("sub", "out.npz")) == os.path.join("sub", "out.npz")
    assert "does not exist" in _message(ValueError, lambda: _validation.writable_file("path", "nosub/out.npz"))


def test_writable_directory_exists_or_can_be_made(tmp_path):
    assert _validation.writable_directory("log_dir", tmp_path) is tmp_path
    deep = str(tmp_path / "a" / "b" / "c")
    assert _validation.writable_directory("log_dir", deep) == deep
    assert not os.path.exists(tmp_path / "a")  # checking makes nothing
    a_file = tmp_path / "file"
    a_file.write_text("")
    message = _message(ValueError, lambda: _validation.writable_directory("log_dir", str(a_file / "logs")))
    assert f"received log_dir={str(a_file / 'logs')!r}" in message and f"{str(a_file)!r} is not a writable" in message
    assert "not a writable" in _message(ValueError, lambda: _validation.writable_directory("log_dir", "/proc/x"))
    assert "received log_dir=1.5" in _message(TypeError, lambda: _validation.writable_directory("log_dir", 1.5))
    assert _validation.writable_directory("log_dir", None, allow_none=True) is None


# ---------------------------------------------------------------- finite_array


def test_finite_array_returns_the_data_unchanged():
    x = np.arange(6, dtype="float32").reshape(3, 2)
    assert _validation.finite_array("x", x) is x
    structure = {"a": x, "b": [x[:, 0], np.array(["t", "u", "v"])]}  # strings are not checked for NaN
    assert _validation.finite_array("x", structure) is structure
    assert _validation.finite_array("x", None, allow_none=True) is None


def test_finite_array_counts_the_non_finite_values_of_any_leaf():
    x = np.zeros((4, 3), "float32")
    bad = x.copy()
    bad[0, 0], bad[2, 1], bad[3, 2] = np.nan, np.inf, -np.inf
    message = _message(ValueError, lambda: _validation.finite_array("probe", {"ok": x, "bad": bad}))
    assert message == "`probe` must be finite; received an array with 3 NaN or infinite value(s)."
    message = _message(ValueError, lambda: _validation.finite_array("probe", [[1.0, float("nan")]]))
    assert "with 1 NaN" in message


@pytest.mark.parametrize("value, shown", [(np.zeros((0, 3)), "(0, 3)"), (np.zeros(0), "(0,)"),
                                          ([np.ones((2, 2)), np.zeros((0, 2))], "(0, 2)")])
def test_finite_array_needs_a_sample(value, shown):
    message = _message(ValueError, lambda: _validation.finite_array("x", value))
    assert message == f"`x` must hold at least one sample; received an array of shape {shown}."


@pytest.mark.parametrize("value", [None, (np.ones((2, 3)), None), {"x": None}])
def test_finite_array_refuses_none_where_data_is_needed(value):
    # np.asarray(None) is a 0-d array of one object: without the check None passed as one sample.
    message = _message(TypeError, lambda: _validation.finite_array("x", value))
    assert message == ("`x` must be array data (a numpy array or a structure of arrays); "
                       f"received x={value!r}.")
    assert "or None" in _message(TypeError, lambda: _validation.finite_array("x", [None], allow_none=True))


def test_finite_array_of_an_empty_structure():
    assert "non-empty array data" in _message(ValueError, lambda: _validation.finite_array("x", []))
    assert "non-empty array data" in _message(ValueError, lambda: _validation.finite_array("x", {}))


@pytest.mark.parametrize("value", [10 ** 400, -(10 ** 400), fractions.Fraction(10 ** 400, 3)],
                         ids=["1e400", "-1e400", "fraction"])
def test_a_number_beyond_float_range_is_a_value_error(value):
    # Regression: float(10**400) raised OverflowError, neither of the policy's two errors.
    message = _message(ValueError, lambda: _validation.number("tolerance", value, minimum=0.0))
    assert message.startswith("`tolerance` must be a finite number >= 0.0; received tolerance=")


def test_number_says_what_is_accepted_in_the_callers_words_and_keeps_the_bounds():
    words = "a finite number in [0, 1) (0 gives ReLU6)"
    assert _validation.number("slope", np.float32(0.5), minimum=0, maximum=1, max_inclusive=False,
                              accepted=words) == 0.5
    for value, error in ((1.0, ValueError), (10**400, ValueError), ("0.5", TypeError), (True, TypeError)):
        with pytest.raises(error) as raised:
            _validation.number("slope", value, minimum=0, maximum=1, max_inclusive=False, accepted=words)
        assert str(raised.value) == f"`slope` must be {words}; received slope={value!r}."
