"""Helpers shared by the test modules (pytest puts tests/ on sys.path)."""

import itertools


def named_product(**axes):
  """`parameterized.product` with test names made of the values.

  Example: `named_product(posterior=['diag', 'full_cov'], dtype=['float32'])`
  gives two cases, named 'diag_float32' and 'full_cov_float32'.
  """
  cases = []
  for values in itertools.product(*axes.values()):
    case = dict(zip(axes, values))
    case['testcase_name'] = '_'.join(str(v) for v in values)
    cases.append(case)
  return cases
