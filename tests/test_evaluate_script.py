"""End-to-end runs of scripts/evaluate.py on a tiny trained model."""

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap

from absl.testing import parameterized
import pytest
import tensorflow as tf

from tfp_vae import training
from tfp_vae.config import ModelConfig
from tfp_vae.config import TrainConfig

import _test_data

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SCRIPT = os.path.join(_REPO, 'scripts', 'evaluate.py')

_METRIC_KEYS = ('log_likelihood', 'log_likelihood_stderr', 'elbo',
                'elbo_stderr', 'kl', 'kl_stderr', 'nll', 'nll_stderr', 'gap',
                'gap_stderr', 'active_units', 'mean_abs_offdiag_correlation',
                'kl_to_diagonal', 'num_examples', 'num_importance_samples',
                'latent_dim', 'posterior', 'model_dir', 'checkpoint_path',
                'dataset', 'split', 'max_examples', 'seed', 'seconds',
                'effective_sample_size', 'gaps')


def _tiny_configs(model_dir, strategy='default'):
  return (ModelConfig(hidden_units=(32,), latent_dim=2),
          TrainConfig(dataset='binarized_mnist',
                      data_dir=_test_data.data_dir('binarized_mnist'),
                      max_train_examples=300, epochs=1, batch_size=50,
                      model_dir=model_dir, jit_compile=False,
                      strategy=strategy))


def _run(*args, env=None):
  environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', **(env or {}))
  return subprocess.run([sys.executable, _SCRIPT, *args], capture_output=True,
                        text=True, env=environment, cwd=_REPO, timeout=300)


@pytest.mark.usefixtures('dataset_files')
class EvaluateScriptTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp()
    cls.model_dir = os.path.join(cls.root, 'run')
    training.train(*_tiny_configs(cls.model_dir), verbose=0)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()

  def _check_results(self, results, num_examples, split):
    self.assertCountEqual(results, _METRIC_KEYS)
    self.assertEqual(results['num_examples'], num_examples)
    self.assertEqual(results['split'], split)
    self.assertEqual(results['dataset'], 'binarized_mnist')
    for name in ('log_likelihood', 'elbo', 'kl', 'nll', 'gap'):
      self.assertIsInstance(results[name], float, name)
    self.assertGreaterEqual(results['log_likelihood'],
                            results['elbo'] - 0.5)
    self.assertAllClose(results['gap'],
                        results['log_likelihood'] - results['elbo'],
                        atol=1e-3)
    self.assertLess(results['log_likelihood'], 0.0)
    ess = results['effective_sample_size']
    self.assertEqual(ess['num_examples'], num_examples)
    self.assertBetween(ess['min'], 1. - 1e-6,
                       results['num_importance_samples'] + 1e-6)
    self.assertBetween(ess['fraction_below_threshold'], 0., 1.)

  def test_evaluates_a_random_subset_and_writes_json(self):
    result = _run(f'--model_dir={self.model_dir}',
                  '--num_importance_samples=50', '--max_examples=120',
                  '--batch_size=50', '--seed=3')
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertIn('log p(x), importance sampled', result.stdout)
    self.assertIn('+-', result.stdout)
    path = os.path.join(self.model_dir, 'evaluation_test.json')
    with open(path) as f:
      results = json.load(f)
    self._check_results(results, 120, 'test')
    self.assertEqual(results['num_importance_samples'], 50)
    self.assertEqual(results['max_examples'], 120)
    self.assertEqual(results['seed'], 3)
    # Readable by all, as every file of a model directory (runs.FILE_MODE).
    self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o644)

  def test_output_flag_and_validation_split(self):
    output = os.path.join(self.root, 'validation_metrics.json')
    result = _run(f'--model_dir={self.model_dir}', '--split=validation',
                  '--num_importance_samples=20', f'--output={output}',
                  '--jit_compile=false')
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    with open(output) as f:
      results = json.load(f)
    # max_train_examples=300 also subsets the validation split.
    self._check_results(results, 300, 'validation')

  @parameterized.named_parameters(
      ('zero_samples', ['--num_importance_samples=0'],
       'num_importance_samples'),
      ('negative_samples', ['--num_importance_samples=-5'],
       'num_importance_samples'),
      ('zero_batch', ['--batch_size=0'], 'batch_size'),
      ('negative_max_examples', ['--max_examples=-1'], 'max_examples'),
      ('unknown_split', ['--split=holdout'], 'split'),
      ('output_in_missing_directory',
       ['--output=/nonexistent/dir/metrics.json'], 'output'),
      ('zero_gap_examples', ['--gaps', '--gap_examples=0'], 'gap_examples'),
      ('zero_gap_steps', ['--gaps', '--gap_max_steps=0'], 'gap_max_steps'),
      ('zero_gap_samples', ['--gaps', '--gap_samples=0'], 'gap_samples'),
  )
  def test_bad_flag_stops_naming_the_flag(self, args, flag_name):
    result = _run(f'--model_dir={self.model_dir}', *args)
    self.assertNotEqual(result.returncode, 0)
    self.assertIn(f'--{flag_name}', result.stderr)
    self.assertNotIn('Evaluating', result.stderr)

  def test_gaps_prints_and_saves_the_gap_table(self):
    output = os.path.join(self.root, 'gaps.json')
    result = _run(f'--model_dir={self.model_dir}', '--gaps',
                  '--gap_examples=8', '--gap_max_steps=40', '--gap_samples=2',
                  '--num_importance_samples=50', '--max_examples=20',
                  f'--output={output}')
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertIn('approximation gap = log p(x) - ELBO[q*]', result.stdout)
    self.assertIn('ESS of the importance weights', result.stdout)
    with open(output) as f:
      results = json.load(f)
    self._check_results(results, 20, 'test')
    report = results['gaps']
    self.assertEqual(report['num_examples'], 8)
    self.assertEqual(report['settings']['max_steps'], 40)
    self.assertEqual(report['settings']['num_samples'], 2)
    self.assertEqual(report['settings']['num_importance_samples'], 50)
    summary = report['summary']
    # The two gaps add up to the inference gap, example by example, so
    # their means do too.
    self.assertAllClose(summary['approximation_gap']['mean'] +
                        summary['amortization_gap']['mean'],
                        summary['inference_gap']['mean'], atol=1e-9)

  def test_gaps_of_a_deterministic_model_are_refused(self):
    model_dir = os.path.join(self.root, 'deterministic')
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(self.model_dir, 'config.json')) as f:
      saved = json.load(f)
    saved['model']['posterior'] = 'deterministic'
    with open(os.path.join(model_dir, 'config.json'), 'w') as f:
      json.dump(saved, f)
    result = _run(f'--model_dir={model_dir}', '--gaps')
    self.assertNotEqual(result.returncode, 0)
    self.assertIn('error: --gaps=True', result.stderr)
    self.assertIn('deterministic', result.stderr)

  def test_model_dir_without_config_names_the_path(self):
    empty_dir = os.path.join(self.root, 'empty')
    os.makedirs(empty_dir, exist_ok=True)
    result = _run(f'--model_dir={empty_dir}')
    self.assertNotEqual(result.returncode, 0)
    self.assertIn('--model_dir', result.stderr)
    self.assertIn(os.path.join(empty_dir, 'config.json'), result.stderr)

  def test_missing_model_dir_is_refused(self):
    result = _run()
    self.assertNotEqual(result.returncode, 0)
    self.assertIn('--model_dir', result.stderr)

  def test_model_trained_with_mirrored_strategy(self):
    # Train on two logical CPU devices in a fresh process (devices must be
    # split before TensorFlow starts), then evaluate without any strategy.
    model_dir = os.path.join(self.root, 'mirrored')
    model_config, train_config = _tiny_configs(model_dir, strategy='mirrored')
    program = textwrap.dedent(f'''
        from tfp_vae import distribute, training
        from tfp_vae.config import ModelConfig, TrainConfig
        distribute.split_cpu_into_logical_devices(2)
        training.train(ModelConfig.from_json({model_config.to_json()!r}),
                       TrainConfig.from_json({train_config.to_json()!r}),
                       verbose=0)
        ''')
    trained = subprocess.run([sys.executable, '-c', program],
                             capture_output=True, text=True, cwd=_REPO,
                             env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'),
                             timeout=300)
    self.assertEqual(trained.returncode, 0, trained.stderr[-3000:])
    result = _run(f'--model_dir={model_dir}', '--num_importance_samples=20',
                  '--max_examples=50')
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    with open(os.path.join(model_dir, 'evaluation_test.json')) as f:
      self._check_results(json.load(f), 50, 'test')


if __name__ == '__main__':
  tf.test.main()
