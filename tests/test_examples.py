"""Runs each script in examples/ on small data; every check must pass.

Each example prints its checks against a known truth (value, tolerance,
PASS/FAIL) and returns exit status 1 when one fails, so a run that returns 0
and prints no FAIL has met every check it states.
"""

import contextlib
import importlib.util
import io
import os
import sys
import tempfile

import tensorflow as tf

EXAMPLES_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'examples')


def load_example(name):
  """The example script `examples/<name>.py` as a module."""
  spec = importlib.util.spec_from_file_location(
      f'examples_{name}', os.path.join(EXAMPLES_DIR, f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  # Registered as imported modules are, so AutoGraph can read its source.
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


class ExamplesTest(tf.test.TestCase):

  def run_example(self, name, argv):
    """Runs the example's `main(argv)`; returns what it printed."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
      status = load_example(name).main(argv)
    printed = output.getvalue()
    self.assertEqual(status, 0, msg=printed)
    self.assertNotIn('FAIL', printed)
    self.assertIn('All checks passed.', printed)
    return printed

  def test_bayesian_linear_regression(self):
    printed = self.run_example('bayesian_linear_regression',
                               ['--num_steps=400'])
    # Four checks of the full-covariance fit, three of the diagonal one.
    self.assertEqual(printed.count('PASS'), 7)
    self.assertIn('full_cov KL(q || exact posterior)', printed)

  def test_heteroscedastic_regression_writes_its_plot(self):
    plot_path = os.path.join(tempfile.mkdtemp(), 'correlation.png')
    printed = self.run_example(
        'heteroscedastic_regression',
        ['--num_examples=4000', '--epochs=20', f'--plot_path={plot_path}'])
    self.assertEqual(printed.count('PASS'), 3)
    with open(plot_path, 'rb') as f:
      self.assertEqual(f.read(8), b'\x89PNG\r\n\x1a\n')

  def test_mixture_density_network(self):
    printed = self.run_example('mixture_density_network',
                               ['--num_examples=2000', '--epochs=20'])
    self.assertEqual(printed.count('PASS'), 3)

  def test_examples_refuse_bad_flags_naming_them(self):
    for name, flag in [('bayesian_linear_regression', '--num_steps=0'),
                       ('heteroscedastic_regression', '--epochs=-1'),
                       ('mixture_density_network', '--num_components=0')]:
      errors = io.StringIO()
      with contextlib.redirect_stderr(errors), self.assertRaises(SystemExit):
        load_example(name).main([flag])
      self.assertIn(flag.split('=')[0], errors.getvalue())


if __name__ == '__main__':
  tf.test.main()
