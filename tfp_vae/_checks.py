"""Argument checks: one copy of each, raising `ValueError` naming the value.

Two families, for the two kinds of caller:

* Arguments of library functions and layers (`check_positive_int(value,
  name)`, ...): the message names the Python argument,
  "`latent_size` must be a positive integer; got 0.", and the check returns
  the value converted to a Python int or float. numpy integers are accepted.
* Settings a user types as flags (`check_flag_positive_int(value, flag)`,
  `fail_flag(flag, value, must)`): the message names the flag,
  "--latent_dim=0 is invalid: latent_dim must be a positive integer.",
  because config fields and `scripts/` flags share their names. Config
  fields must stay plain JSON values, so these refuse numpy scalars unless
  told otherwise (`allow_numpy=True`, for function arguments that mirror a
  flag).

Nothing here imports TensorFlow: configs and flags use it before any
TensorFlow op may run.
"""

import math
import numbers

__all__ = [
    'check_choice',
    'check_flag_choice',
    'check_flag_int_at_least',
    'check_flag_integer',
    'check_flag_non_negative_number',
    'check_flag_number',
    'check_flag_positive_int',
    'check_flag_positive_int_tuple',
    'check_int_at_least',
    'check_integer',
    'check_positive_float',
    'check_positive_int',
    'check_positive_int_sequence',
    'fail_flag',
    'is_integer',
]


def is_integer(value, allow_numpy=True):
  """True for an int (or a numpy integer if `allow_numpy`), never a bool."""
  # bool is an int subclass: `True` as a size or a seed is always a mistake.
  if isinstance(value, bool):
    return False
  if allow_numpy:
    # numbers.Integral covers int and every numpy integer type.
    return isinstance(value, numbers.Integral)
  return isinstance(value, int)


################################################################################
# Library arguments.
################################################################################


def check_positive_int(value, name):
  """Returns `value` as an int; raises ValueError unless it is one > 0."""
  if not is_integer(value):
    raise ValueError(f'`{name}` must be a positive integer; got {value!r}.')
  if value <= 0:
    raise ValueError(f'`{name}` must be a positive integer; got {value}.')
  return int(value)


def check_positive_int_sequence(value, name):
  """Returns `value` as a tuple of ints; raises ValueError unless each > 0.

  For layer widths (`flow_hidden_units`): a non-empty sequence of positive
  integers, numpy integers accepted.
  """
  try:
    values = tuple(value)
  except TypeError:
    values = ()
  if not values or any(not is_integer(v) or v <= 0 for v in values):
    raise ValueError(f'`{name}` must be a non-empty sequence of positive '
                     f'integers; got {value!r}.')
  return tuple(int(v) for v in values)


def check_int_at_least(value, name, lowest):
  """Returns `value` as an int; raises ValueError unless it is >= `lowest`."""
  if not is_integer(value) or value < lowest:
    raise ValueError(f'`{name}` must be an integer >= {lowest}; got '
                     f'{value!r}.')
  return int(value)


def check_positive_float(value, name, allow_zero=False):
  """Returns `value` as a float; raises ValueError unless finite and > 0.

  With `allow_zero`, 0 is accepted too.
  """
  try:
    value = float(value)
  except (TypeError, ValueError):
    raise ValueError(f'`{name}` must be a number; got {value!r}.') from None
  if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
    bound = '>= 0' if allow_zero else '> 0'
    raise ValueError(f'`{name}` must be finite and {bound}; got {value}.')
  return value


def check_choice(value, choices, name):
  """Returns `value`; raises ValueError unless it is one of `choices`."""
  if value not in choices:
    raise ValueError(
        f'`{name}` must be one of {sorted(choices)}; got {value!r}.')
  return value


def check_integer(value, name):
  """Returns `value` as an int (a seed, say); raises ValueError otherwise."""
  if not is_integer(value):
    raise ValueError(f'`{name}` must be an integer; got {value!r}.')
  return int(value)


################################################################################
# Flags and config fields.
################################################################################


def fail_flag(flag, value, must):
  """Raises ValueError('--flag=value is invalid: flag must <must>.')."""
  raise ValueError(f'--{flag}={value!r} is invalid: {flag} must {must}.')


def check_flag_positive_int(value, flag):
  """Checks that the flag's `value` is an int > 0."""
  if not is_integer(value, allow_numpy=False) or value <= 0:
    fail_flag(flag, value, 'be a positive integer')


def check_flag_int_at_least(value, flag, lowest, allow_numpy=False):
  """Checks that the flag's `value` is an int >= `lowest` (0: a count)."""
  if not is_integer(value, allow_numpy) or value < lowest:
    fail_flag(flag, value, f'be an integer >= {lowest}')


def check_flag_integer(value, flag, allow_numpy=False):
  """Checks that the flag's `value` is an int of any sign (a seed)."""
  if not is_integer(value, allow_numpy):
    fail_flag(flag, value, 'be an integer')


def check_flag_number(value, flag, allow_zero=False):
  """Checks that the flag's `value` is a finite number > 0 (>= 0 if allowed)."""
  ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
        and math.isfinite(value) and (value > 0 or (allow_zero and value == 0)))
  if not ok:
    fail_flag(flag, value,
              'be a finite number ' + ('>= 0' if allow_zero else '> 0'))


def check_flag_non_negative_number(value, flag):
  """Checks that the flag's `value` is a finite number >= 0 (0: "off")."""
  check_flag_number(value, flag, allow_zero=True)


def check_flag_choice(value, flag, choices):
  """Checks that the flag's `value` is one of `choices`."""
  if value not in choices:
    fail_flag(flag, value, f'be one of {", ".join(choices)}')


def check_flag_positive_int_tuple(value, flag):
  """Checks that the flag's `value` is a non-empty tuple of ints > 0."""
  if (not isinstance(value, tuple) or not value or
      any(not is_integer(v, allow_numpy=False) or v <= 0 for v in value)):
    fail_flag(flag, value, 'be a non-empty list of positive integers '
              '(comma-separated on the command line, e.g. 512,512)')
