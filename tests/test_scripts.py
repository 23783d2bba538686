"""What the scripts share: one name and default per concept, flags grouped by
purpose in --help, console commands that work outside the checkout.

The scripts' flags are read in a subprocess per script (absl's flags are
global to a process); nothing here imports TensorFlow.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from absl.testing import absltest
from absl.testing import parameterized

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SCRIPTS = ('train', 'evaluate', 'sample', 'compare_posteriors')

# Flags several scripts define with different defaults on purpose.
_DIFFERENT_ON_PURPOSE = {
    # Required where a script reads a trained run; train.py names one from
    # the model-defining settings.
    'model_dir',
    # Each script writes different things to a different place.
    'output_dir',
}

# Prints {flag: [default, help, group]} of the script named by argv[1].
_DUMP_FLAGS = r'''
import importlib.util, json, sys
path = sys.argv[1]
sys.argv = [path]
spec = importlib.util.spec_from_file_location('script_under_test', path)
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module  # Where absl looks for a defining module.
spec.loader.exec_module(module)
_flags = sys.modules['_flags']
groups = {n: g for g, names in _flags.FLAG_GROUPS for n in names}
own = _flags.script_flags('script_under_test')
print(json.dumps({name: [flag.default_as_str, flag.help, groups.get(name)]
                  for name, flag in own.items()}))
'''


def _script_flags(script):
  path = os.path.join(_REPO, 'scripts', f'{script}.py')
  result = subprocess.run(
      [sys.executable, '-c', _DUMP_FLAGS, path], capture_output=True,
      text=True, check=True, cwd=_REPO, timeout=120,
      env=dict(os.environ, PYTHONPATH=_REPO))
  return json.loads(result.stdout)


class FlagConsistencyTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.flags = {script: _script_flags(script) for script in _SCRIPTS}

  def test_a_flag_name_has_one_default_in_every_script(self):
    by_name = {}
    for script, script_flags in self.flags.items():
      for name, (default, _, _) in script_flags.items():
        by_name.setdefault(name, {})[script] = default
    for name, defaults in by_name.items():
      if name not in _DIFFERENT_ON_PURPOSE:
        self.assertLen(set(defaults.values()), 1,
                       msg=f'--{name} has defaults {defaults}')

  def test_the_same_concept_has_the_same_name(self):
    # K of the importance-sampled log-likelihood, and the evaluation subset.
    for script in ('train', 'evaluate', 'compare_posteriors'):
      self.assertIn('num_importance_samples', self.flags[script])
    for script in ('evaluate', 'compare_posteriors'):
      self.assertIn('max_examples', self.flags[script])
      # The gap analysis, defined once (`_flags.define_gap_flags`).
      for name in ('gaps', 'gap_examples', 'gap_max_steps', 'gap_samples'):
        self.assertIn(name, self.flags[script])
    # Every script compiles with XLA, so every one takes the shared cache.
    for script in _SCRIPTS:
      self.assertIn('xla_cache_dir', self.flags[script])
    # The old name of compare_posteriors.py is an alias only.
    self.assertStartsWith(
        self.flags['compare_posteriors']['max_eval_examples'][1],
        'Alias for --max_examples')

  def test_every_flag_has_a_purpose_group(self):
    for script, script_flags in self.flags.items():
      ungrouped = sorted(n for n, (_, _, group) in script_flags.items()
                         if group is None)
      self.assertEmpty(ungrouped, msg=f'{script}.py: add them to '
                       '_flags.FLAG_GROUPS')


class XlaCacheFlagTest(parameterized.TestCase):
  """--xla_cache_dir that cannot be used: an error naming the flag."""

  @parameterized.parameters(*_SCRIPTS)
  def test_an_unusable_directory_is_an_error_naming_the_flag(self, script):
    not_a_directory = os.path.join(tempfile.mkdtemp(), 'file')
    with open(not_a_directory, 'w'):
      pass
    # Flags each script needs to reach main(); none is read before the
    # cache is enabled.
    needed = {'evaluate': ['--model_dir=unused'],
              'sample': ['--model_dir=unused']}.get(script, [])
    process = subprocess.run(
        [sys.executable, os.path.join(_REPO, 'scripts', f'{script}.py'),
         f'--xla_cache_dir={not_a_directory}', *needed],
        capture_output=True, text=True, cwd=tempfile.mkdtemp(), timeout=120,
        env=dict(os.environ, PYTHONPATH=_REPO))
    self.assertNotEqual(process.returncode, 0)
    self.assertIn('error: --xla_cache_dir:', process.stderr)
    self.assertIn(not_a_directory, process.stderr)
    self.assertNotIn('Traceback', process.stderr)


class HelpTest(parameterized.TestCase):

  @parameterized.parameters(*_SCRIPTS)
  def test_help_lists_flags_by_purpose_and_exits_0(self, script):
    result = subprocess.run(
        [sys.executable, os.path.join(_REPO, 'scripts', f'{script}.py'),
         '--help'], capture_output=True, text=True, cwd=_REPO, timeout=120,
        env=dict(os.environ, PYTHONPATH=_REPO))
    self.assertEqual(result.returncode, 0, result.stderr)
    headings = [line[:-1] for line in result.stdout.splitlines()
                if line.endswith(':') and not line.startswith(' ')]
    self.assertNotIn('other', headings)
    self.assertIn('output', headings)
    if script == 'train':
      self.assertEqual(headings, [
          "Flags, by purpose (--helpfull lists absl's own as well)", 'model',
          'objective', 'data', 'training', 'evaluation', 'output',
          'infrastructure'])

  def test_help_does_not_import_tensorflow(self):
    for script in _SCRIPTS:
      path = os.path.join(_REPO, 'scripts', f'{script}.py')
      code = ('import runpy, sys\n'
              f'sys.argv = [{path!r}, "--help"]\n'
              'try:\n'
              '  runpy.run_path(sys.argv[0], run_name="__main__")\n'
              'except SystemExit:\n'
              '  pass\n'
              'print("tensorflow imported:", "tensorflow" in sys.modules)\n')
      result = subprocess.run([sys.executable, '-c', code],
                              capture_output=True, text=True, cwd=_REPO,
                              timeout=120, env=dict(os.environ,
                                                    PYTHONPATH=_REPO))
      self.assertIn('--model_dir', result.stdout, script)
      self.assertTrue(result.stdout.rstrip().endswith(
          'tensorflow imported: False'), result.stdout[-500:] + result.stderr)


class ConsoleCommandsTest(absltest.TestCase):
  """A wheel of the package installs tfp-vae-* commands that run anywhere."""

  def test_installed_commands_answer_help_outside_the_checkout(self):
    root = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, root, ignore_errors=True)
    # A copy of what a wheel is built from, so that building leaves nothing
    # in the checkout.
    source = os.path.join(root, 'source')
    os.makedirs(source)
    for name in ('setup.cfg', 'pyproject.toml', 'README.md'):
      shutil.copy(os.path.join(_REPO, name), source)
    for name in ('tfp_vae', 'scripts'):
      shutil.copytree(os.path.join(_REPO, name), os.path.join(source, name),
                      ignore=shutil.ignore_patterns('__pycache__'))
    pip = [sys.executable, '-m', 'pip', '-q', '--no-input',
           '--disable-pip-version-check']
    wheels, site = os.path.join(root, 'wheels'), os.path.join(root, 'site')
    # No network: no dependencies, no build isolation, no index.
    subprocess.run([*pip, 'wheel', '--no-deps', '--no-build-isolation',
                    '--no-index', '-w', wheels, source], check=True,
                   capture_output=True, cwd=root, timeout=300)
    (wheel,) = os.listdir(wheels)
    subprocess.run([*pip, 'install', '--no-deps', '--no-index', '--target',
                    site, os.path.join(wheels, wheel)], check=True,
                   capture_output=True, cwd=root, timeout=300)
    outside = os.path.join(root, 'elsewhere')
    os.makedirs(outside)
    environment = dict(os.environ, PYTHONPATH=site)
    for command, expected in (('tfp-vae-train', '--posterior'),
                              ('tfp-vae-evaluate', '--num_importance_samples'),
                              ('tfp-vae-compare', '--posteriors'),
                              ('tfp-vae-sample', '--num_prior_samples')):
      result = subprocess.run([os.path.join(site, 'bin', command), '--help'],
                              capture_output=True, text=True, cwd=outside,
                              env=environment, timeout=120)
      self.assertEqual(result.returncode, 0, f'{command}: {result.stderr}')
      self.assertIn(expected, result.stdout, command)
      self.assertIn('\noutput:\n', result.stdout, command)


if __name__ == '__main__':
  absltest.main()
