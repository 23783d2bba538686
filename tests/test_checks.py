"""Tests for tfp_vae._checks: what each check accepts, and its message."""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tfp_vae import _checks


class ArgumentChecksTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(1, 7, np.int64(3), np.int32(2))
  def test_positive_int_returns_a_python_int(self, value):
    checked = _checks.check_positive_int(value, 'latent_size')
    self.assertIs(type(checked), int)
    self.assertEqual(checked, value)

  @parameterized.parameters(
      (0, r'`latent_size` must be a positive integer; got 0\.'),
      (-2, r'`latent_size` must be a positive integer; got -2\.'),
      (2.0, r'`latent_size` must be a positive integer; got 2\.0\.'),
      (True, r'`latent_size` must be a positive integer; got True\.'),
      ('3', r"`latent_size` must be a positive integer; got '3'\."))
  def test_positive_int_refuses(self, value, message):
    with self.assertRaisesRegex(ValueError, message):
      _checks.check_positive_int(value, 'latent_size')

  @parameterized.parameters((0.5, False), (3, False), (0., True),
                            (np.float32(1e-5), False))
  def test_positive_float_returns_a_python_float(self, value, allow_zero):
    checked = _checks.check_positive_float(value, 'min_scale', allow_zero)
    self.assertIs(type(checked), float)
    self.assertAllClose(checked, value)

  @parameterized.parameters(
      (0., False, r'`min_scale` must be finite and > 0; got 0\.0\.'),
      (-1., True, r'`min_scale` must be finite and >= 0; got -1\.0\.'),
      (float('nan'), True, r'`min_scale` must be finite and >= 0; got nan\.'),
      (float('inf'), False, r'`min_scale` must be finite and > 0; got inf\.'),
      ('small', False, r"`min_scale` must be a number; got 'small'\."),
      (None, False, r'`min_scale` must be a number; got None\.'))
  def test_positive_float_refuses(self, value, allow_zero, message):
    with self.assertRaisesRegex(ValueError, message):
      _checks.check_positive_float(value, 'min_scale', allow_zero)

  def test_choice(self):
    self.assertEqual(_checks.check_choice('exp', ('softplus', 'exp'),
                                          'scale_transform'), 'exp')
    with self.assertRaisesRegex(
        ValueError, r"`scale_transform` must be one of \['exp', "
        r"'softplus'\]; got 'relu'\."):
      _checks.check_choice('relu', ('softplus', 'exp'), 'scale_transform')

  def test_int_at_least(self):
    self.assertEqual(_checks.check_int_at_least(0, 'count', 0), 0)
    self.assertIs(type(_checks.check_int_at_least(np.int64(2), 'count', 1)),
                  int)
    for value in (-1, 0.5, False):
      with self.assertRaisesRegex(
          ValueError, rf'`count` must be an integer >= 0; got {value!r}\.'):
        _checks.check_int_at_least(value, 'count', 0)

  def test_integer(self):
    self.assertEqual(_checks.check_integer(-4, 'seed'), -4)
    self.assertIs(type(_checks.check_integer(np.int64(4), 'seed')), int)
    for value in (1.5, True, None):
      with self.assertRaisesRegex(
          ValueError, rf'`seed` must be an integer; got {value!r}\.'):
        _checks.check_integer(value, 'seed')


  def test_check_positive_int_sequence(self):
    self.assertEqual(
        _checks.check_positive_int_sequence([64, np.int32(8)], 'units'),
        (64, 8))
    for value in ((), (8, 0), (8, 2.5), (True,), 5, None):
      with self.assertRaisesRegex(
          ValueError, r'`units` must be a non-empty sequence of positive '
          r'integers; got '):
        _checks.check_positive_int_sequence(value, 'units')


class FlagChecksTest(tf.test.TestCase, parameterized.TestCase):

  def assert_flag_error(self, check, value, message, *args, **kwargs):
    with self.assertRaises(ValueError) as raised:
      check(value, 'the_flag', *args, **kwargs)
    self.assertEqual(str(raised.exception),
                     f'--the_flag={value!r} is invalid: the_flag must '
                     f'{message}.')

  def test_fail_flag_names_the_flag_and_value(self):
    self.assert_flag_error(
        lambda value, flag: _checks.fail_flag(flag, value, 'be a path'), '',
        'be a path')

  def test_positive_int(self):
    _checks.check_flag_positive_int(1, 'the_flag')
    for value in (0, -1, 1.0, True, np.int64(1)):  # Configs hold plain ints.
      self.assert_flag_error(_checks.check_flag_positive_int, value,
                             'be a positive integer')

  def test_int_at_least(self):
    _checks.check_flag_int_at_least(0, 'the_flag', 0)
    _checks.check_flag_int_at_least(np.int64(5), 'the_flag', 1,
                                    allow_numpy=True)
    self.assert_flag_error(_checks.check_flag_int_at_least, -1,
                           'be an integer >= 0', 0)
    self.assert_flag_error(_checks.check_flag_int_at_least, 0,
                           'be an integer >= 1', 1)
    self.assert_flag_error(_checks.check_flag_int_at_least, np.int64(5),
                           'be an integer >= 1', 1)

  def test_integer(self):
    _checks.check_flag_integer(-3, 'the_flag')
    _checks.check_flag_integer(np.int64(3), 'the_flag', allow_numpy=True)
    for value in (1.5, False, np.int64(3)):
      self.assert_flag_error(_checks.check_flag_integer, value,
                             'be an integer')

  def test_number(self):
    _checks.check_flag_number(1e-3, 'the_flag')
    _checks.check_flag_number(2, 'the_flag')
    _checks.check_flag_non_negative_number(0.0, 'the_flag')
    for value in (0, -0.1, float('nan'), float('inf'), True, '1'):
      self.assert_flag_error(_checks.check_flag_number, value,
                             'be a finite number > 0')
    self.assert_flag_error(_checks.check_flag_non_negative_number, -1.0,
                           'be a finite number >= 0')

  def test_choice(self):
    _checks.check_flag_choice('iwae', 'the_flag', ('elbo', 'iwae'))
    self.assert_flag_error(_checks.check_flag_choice, 'vae',
                           'be one of elbo, iwae', ('elbo', 'iwae'))

  def test_positive_int_tuple(self):
    _checks.check_flag_positive_int_tuple((512, 256), 'the_flag')
    for value in ((), [512], (512, 0), (512, 2.0), (True,)):
      self.assert_flag_error(
          _checks.check_flag_positive_int_tuple, value,
          'be a non-empty list of positive integers (comma-separated on the '
          'command line, e.g. 512,512)')


class IsIntegerTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(
      (3, True, True), (np.int16(3), True, False), (True, False, False),
      (np.bool_(True), False, False), (3.0, False, False), ('3', False, False))
  def test_is_integer(self, value, with_numpy, plain):
    self.assertEqual(_checks.is_integer(value), with_numpy)
    self.assertEqual(_checks.is_integer(value, allow_numpy=False), plain)


if __name__ == '__main__':
  tf.test.main()
