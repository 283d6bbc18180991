"""Argument checks: one policy for the whole package.

Every public constructor and function checks its arguments with these helpers
when it is called, so a bad value fails at once, not in the middle of `fit`.
The policy:

- numpy scalars are accepted wherever Python numbers are (`np.float32(1e-5)`,
  `np.int64(10)`), and returned as Python numbers;
- `bool` is not a number and not an integer (`True` is rejected where an
  integer is expected), and strings are never converted;
- numbers must be finite;
- the error is a `TypeError` for a value of the wrong type and a `ValueError`
  for a value of the right type out of range; its message names the argument,
  the value received and what is accepted.
"""

import numbers
import os
import tempfile

import keras
import numpy as np


def _fail(error, name, value, accepted):
    raise error(f"`{name}` must be {accepted}; received {name}={value!r}.")


def _bounds_text(minimum, maximum, min_inclusive, max_inclusive):
    parts = []
    if minimum is not None:
        parts.append(f"{'>=' if min_inclusive else '>'} {minimum}")
    if maximum is not None:
        parts.append(f"{'<=' if max_inclusive else '<'} {maximum}")
    return " and ".join(parts)


def _in_bounds(value, minimum, maximum, min_inclusive, max_inclusive):
    if minimum is not None and (value < minimum if min_inclusive else value <= minimum):
        return False
    if maximum is not None and (value > maximum if max_inclusive else value >= maximum):
        return False
    return True


def is_integer(value):
    """True for Python and numpy integers, False for `bool` and everything else."""
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value):
    """True for Python and numpy real numbers, False for `bool` and everything else."""
    return isinstance(value, (numbers.Real, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def integer(name, value, minimum=None, maximum=None, allow_none=False):
    """`value` as a Python int, checked against the inclusive bounds given."""
    if value is None and allow_none:
        return None
    accepted = "an integer" + (" or None" if allow_none else "")
    bounds = _bounds_text(minimum, maximum, True, True)
    if bounds:
        accepted = f"an integer {bounds}" + (" or None" if allow_none else "")
    if not is_integer(value):
        _fail(TypeError, name, value, accepted)
    value = int(value)
    if not _in_bounds(value, minimum, maximum, True, True):
        _fail(ValueError, name, value, accepted)
    return value


def number(name, value, minimum=None, maximum=None, min_inclusive=True, max_inclusive=True, allow_none=False,
           accepted=None):
    """`value` as a finite Python float, checked against the bounds given (`accepted`: the message's
    own words for what is accepted, instead of the bounds)."""
    if value is None and allow_none:
        return None
    if accepted is None:
        bounds = _bounds_text(minimum, maximum, min_inclusive, max_inclusive)
        accepted = "a finite number" + (f" {bounds}" if bounds else "") + (" or None" if allow_none else "")
    if not is_number(value):
        _fail(TypeError, name, value, accepted)
    try:
        value = float(value)
    except OverflowError:  # an integer (or fraction) beyond float range: the right type, out of range
        _fail(ValueError, name, value, accepted)
    if not np.isfinite(value) or not _in_bounds(value, minimum, maximum, min_inclusive, max_inclusive):
        _fail(ValueError, name, value, accepted)
    return value


def boolean(name, value):
    """`value` as a Python bool; only `True`, `False` and numpy booleans are accepted."""
    if not isinstance(value, (bool, np.bool_)):
        _fail(TypeError, name, value, "True or False")
    return bool(value)


def one_of(name, value, choices):
    """The choice `value` equals, when it is one of `choices` (compared with `==` between values of one
    type, so `True` is not `1`; a numpy string counts as the `str` it holds)."""
    for choice in choices:
        kind = str if isinstance(choice, str) else type(choice)
        if (isinstance(value, str) if kind is str else type(value) is kind) and value == choice:
            return choice
    listed = ", ".join(repr(choice) for choice in choices)
    _fail(ValueError, name, value, f"one of {listed}")


def seed(name, value):
    """A seed: None or a non-negative integer."""
    return integer(name, value, minimum=0, allow_none=True)


def model(name, value):
    """`value` itself when it is a `keras.Model`; a TypeError otherwise."""
    if not isinstance(value, keras.Model):
        _fail(TypeError, name, value, "a keras.Model")
    return value


def _path(name, value, accepted, allow_none):
    """`value` as an absolute path (None when allowed and given); TypeError unless a str or os.PathLike."""
    if value is None and allow_none:
        return None, accepted
    accepted += " or None" if allow_none else ""
    if not isinstance(value, (str, os.PathLike)):
        _fail(TypeError, name, value, accepted)
    return os.path.abspath(os.fspath(value)), accepted


def writable_file(name, value, allow_none=False):
    """A path whose directory exists now, so that writing it later during `fit` cannot fail for that."""
    path, accepted = _path(name, value, "a path (str or os.PathLike) in an existing directory", allow_none)
    if path is None:
        return None
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise ValueError(
            f"`{name}` must be {accepted}; received {name}={value!r}, whose directory {directory!r} does not "
            "exist. Create it first (os.makedirs) or pass another path."
        )
    if not _can_make_directory_in(directory):
        raise ValueError(f"`{name}` must be a path in a writable directory; {directory!r} is not writable.")
    return value


def writable_directory(name, value, allow_none=False):
    """A directory that exists and is writable, or can be created (its nearest existing parent is writable)."""
    path, accepted = _path(name, value, "a directory path (str or os.PathLike)", allow_none)
    if path is None:
        return None
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not _can_make_directory_in(existing):
        raise ValueError(
            f"`{name}` must be a directory that exists or can be created; received {name}={value!r}, "
            f"and {existing!r} is not a writable directory."
        )
    return value


def _can_make_directory_in(directory):
    # os.access says yes to root everywhere, also where nothing can be made
    # (/proc, a read-only mount): make and remove an empty directory instead.
    try:
        tempfile.TemporaryDirectory(dir=directory).cleanup()
    except OSError:
        return False
    return True


def finite_array(name, value, allow_none=False):
    """`value` as a non-empty numpy array of finite numbers (each array of a structure is checked)."""
    if value is None and allow_none:
        return None
    accepted = "array data (a numpy array or a structure of arrays)" + (" or None" if allow_none else "")
    leaves = keras.tree.flatten(value)
    if not leaves:
        _fail(ValueError, name, value, "non-empty " + accepted)
    for leaf in leaves:
        if leaf is None:  # np.asarray(None) is a 0-d object array: it would pass as one sample
            _fail(TypeError, name, value, accepted)
        array = np.asarray(leaf)
        if array.size == 0 or (array.ndim and array.shape[0] == 0):
            raise ValueError(f"`{name}` must hold at least one sample; received an array of shape {array.shape}.")
        if np.issubdtype(array.dtype, np.number) and not np.all(np.isfinite(array)):
            bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
            raise ValueError(f"`{name}` must be finite; received an array with {bad} NaN or infinite value(s).")
    return value
