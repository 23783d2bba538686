"""End-to-end runs of scripts/train.py on a few hundred binarized MNIST images.

Each test runs the script as a user would, `python scripts/train.py ...`, in
a subprocess. Data: a seeded random subset (--max_train_examples) of the
test session's small binarized MNIST files (tests/_test_data.py), whose rows
are sorted by class like the real ones.
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

from absl.testing import parameterized
import numpy as np
import pytest
import tensorflow as tf

from tfp_vae import runs
from tfp_vae.config import ModelConfig

import _test_data

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SCRIPT = os.path.join(_REPO, 'scripts', 'train.py')


def _small_run():
  """Flags of a small run: 300 images in batches of 50, 6 steps per epoch."""
  return ['--dataset=binarized_mnist',
          f'--data_dir={_test_data.data_dir("binarized_mnist")}',
          '--max_train_examples=300', '--batch_size=50', '--nojit_compile',
          '--steps_per_execution=2']


_STEPS_PER_EPOCH = 6
_PLOTS = ('learning_curves', 'reconstructions', 'prior_samples',
          'latent_scatter', 'latent_manifold')


def run_script(*args):
  environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  environment.pop('TF_CONFIG', None)
  return subprocess.run([sys.executable, _SCRIPT, *args], capture_output=True,
                        text=True, env=environment, cwd=_REPO, timeout=600)


def read_json(*path):
  with open(os.path.join(*path)) as f:
    return json.load(f)


def png_size(path):
  """(width, height) from a PNG's header; raises AssertionError if not one."""
  with open(path, 'rb') as f:
    header = f.read(24)
  assert header[:8] == b'\x89PNG\r\n\x1a\n', f'{path} is not a PNG'
  assert header[12:16] == b'IHDR', f'{path} has no PNG header chunk'
  return struct.unpack('>II', header[16:24])


@pytest.mark.usefixtures('dataset_files')
class TrainScriptTest(tf.test.TestCase, parameterized.TestCase):

  def new_directory(self):
    directory = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
    return directory

  def assert_succeeded(self, result):
    self.assertEqual(result.returncode, 0,
                     f'stdout:\n{result.stdout[-3000:]}\n'
                     f'stderr:\n{result.stderr[-5000:]}')

  def test_trains_with_a_flagfile_and_resumes_when_asked_for_more_epochs(self):
    root = self.new_directory()
    model_dir = os.path.join(root, 'run')
    flagfile = os.path.join(root, 'small.flags')
    with open(flagfile, 'w') as f:
      f.write('\n'.join(_small_run() + [
          '# A 2-D latent, so the latent manifold is drawn too.',
          '--latent_dim=2', '--hidden_units=32', '--posterior=full_cov',
          '--seed=3']) + '\n')
    command = [f'--flagfile={flagfile}', f'--model_dir={model_dir}']

    first = run_script(*command, '--epochs=2')
    self.assert_succeeded(first)
    self.assertIn(model_dir, first.stdout)

    # config.json: the flags of the flagfile and the command line, with the
    # image shape of the loaded data.
    saved = read_json(model_dir, runs.CONFIG_FILE)
    self.assertEqual(saved['model']['latent_dim'], 2)
    self.assertEqual(saved['model']['hidden_units'], [32])
    self.assertEqual(saved['model']['image_shape'], [28, 28, 1])
    self.assertEqual(saved['model']['seed'], 3)
    self.assertEqual(saved['train']['epochs'], 2)
    self.assertEqual(saved['train']['max_train_examples'], 300)
    self.assertEqual(saved['train']['model_dir'], model_dir)
    self.assertFalse(saved['train']['jit_compile'])
    model_config, train_config = runs.read_configs(model_dir)
    self.assertEqual(model_config.posterior, 'full_cov')
    self.assertEqual(train_config.batch_size, 50)

    # Metrics per epoch, final test metrics, checkpoints, model and plots.
    history = read_json(model_dir, runs.HISTORY_FILE)
    self.assertEqual([row['epoch'] for row in history], [1, 2])
    self.assertEqual([row['step'] for row in history],
                     [_STEPS_PER_EPOCH, 2 * _STEPS_PER_EPOCH])
    for row in history:
      for name in ('loss', 'elbo', 'kl', 'nll', 'val_loss', 'val_elbo',
                   'val_kl', 'val_nll'):
        self.assertTrue(np.isfinite(row[name]), name)
    # 784 Bernoulli pixels: an untrained model scores about -784 log 2.
    self.assertBetween(history[-1]['val_elbo'], -784 * np.log(2) - 50, 0)
    final = read_json(model_dir, runs.FINAL_METRICS_FILE)
    self.assertAllClose(final['elbo'], -(final['nll'] + final['kl']),
                        rtol=1e-5)
    self.assertIn('elbo', first.stdout)
    checkpoint = tf.train.latest_checkpoint(
        os.path.join(model_dir, runs.CHECKPOINT_DIR))
    self.assertEqual(os.path.basename(checkpoint),
                     f'ckpt-{2 * _STEPS_PER_EPOCH}')
    self.assertTrue(os.path.exists(os.path.join(model_dir,
                                                runs.MODEL_FILE)))
    for name in _PLOTS:
      width, height = png_size(os.path.join(model_dir, runs.PLOTS_DIR,
                                            name + '.png'))
      self.assertGreater(width * height, 10_000, name)

    # The same command with more epochs resumes: two epochs are not redone.
    second = run_script(*command, '--epochs=3')
    self.assert_succeeded(second)
    resumed_history = read_json(model_dir, runs.HISTORY_FILE)
    self.assertEqual([row['epoch'] for row in resumed_history], [1, 2, 3])
    self.assertEqual([row['step'] for row in resumed_history],
                     [_STEPS_PER_EPOCH * e for e in (1, 2, 3)])
    self.assertEqual(resumed_history[:2], history)  # rows left as they were
    self.assertEqual(read_json(model_dir, runs.CONFIG_FILE)['train'][
        'epochs'], 3)
    loaded = runs.load_trained_model(model_dir, source='checkpoint')
    self.assertEqual(int(loaded.model.optimizer.iterations.numpy()),
                     3 * _STEPS_PER_EPOCH)
    self.assertNotEqual(read_json(model_dir, runs.FINAL_METRICS_FILE),
                        final)

  @parameterized.named_parameters(
      ('low_rank', ['--posterior=low_rank', '--posterior_rank=2']),
      ('iaf', ['--posterior=iaf', '--flow_steps=2', '--flow_hidden_units=8',
               '--kl=mc']))
  def test_new_family_trains_resumes_exactly_and_evaluates(self, family):
    root = self.new_directory()
    command = _small_run() + ['--latent_dim=2', '--hidden_units=32',
                              '--seed=4'] + family
    resumed_dir = os.path.join(root, 'resumed')
    straight_dir = os.path.join(root, 'straight')
    self.assert_succeeded(run_script(*command, f'--model_dir={resumed_dir}',
                                     '--epochs=1'))
    self.assert_succeeded(run_script(*command, f'--model_dir={resumed_dir}',
                                     '--epochs=2'))
    self.assert_succeeded(run_script(*command, f'--model_dir={straight_dir}',
                                     '--epochs=2'))
    model_config, _ = runs.read_configs(resumed_dir)
    self.assertEqual(model_config.posterior, family[0].split('=')[1])
    # Resuming after epoch 1 gives what an uninterrupted run gives.
    resumed = read_json(resumed_dir, runs.HISTORY_FILE)
    straight = read_json(straight_dir, runs.HISTORY_FILE)
    for name in ('loss', 'elbo', 'kl', 'nll', 'val_elbo'):
      self.assertAllClose([row[name] for row in resumed],
                          [row[name] for row in straight], rtol=1e-6,
                          msg=name)
    resumed_weights = runs.load_trained_model(
        resumed_dir, source='checkpoint').model.get_weights()
    straight_weights = runs.load_trained_model(
        straight_dir, source='checkpoint').model.get_weights()
    for resumed_weight, straight_weight in zip(resumed_weights,
                                               straight_weights):
      self.assertAllClose(resumed_weight, straight_weight, rtol=1e-6,
                          atol=1e-7)
    for name in _PLOTS:
      self.assertTrue(os.path.exists(os.path.join(
          resumed_dir, runs.PLOTS_DIR, name + '.png')), name)

    evaluated = subprocess.run(
        [sys.executable, os.path.join(_REPO, 'scripts', 'evaluate.py'),
         f'--model_dir={resumed_dir}', '--num_importance_samples=20',
         '--max_examples=60', '--batch_size=30'],
        capture_output=True, text=True, cwd=_REPO, timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
    self.assert_succeeded(evaluated)
    results = read_json(resumed_dir, 'evaluation_test.json')
    self.assertEqual(results['posterior'], model_config.posterior)
    self.assertGreaterEqual(results['log_likelihood'], results['elbo'] - 1.0)
    for name in ('mean_abs_offdiag_correlation', 'kl_to_diagonal'):
      self.assertTrue(np.isfinite(results[name]), name)

  def test_a_conv_model_trains_on_28x28_images(self):
    model_dir = os.path.join(self.new_directory(), 'conv')
    result = run_script(*_small_run(), f'--model_dir={model_dir}', '--epochs=1',
                        '--architecture=conv', '--conv_filters=4,8',
                        '--latent_dim=2', '--posterior=diag')
    self.assert_succeeded(result)
    model_config, _ = runs.read_configs(model_dir)
    self.assertEqual(model_config.architecture, 'conv')
    self.assertEqual(model_config.conv_filters, (4, 8))
    history = read_json(model_dir, runs.HISTORY_FILE)
    self.assertLen(history, 1)
    self.assertTrue(np.isfinite(history[0]['val_elbo']))
    self.assertTrue(np.isfinite(
        read_json(model_dir, runs.FINAL_METRICS_FILE)['elbo']))

  @parameterized.named_parameters(
      ('analytic_kl_to_a_mixture', ['--kl=analytic', '--prior=mixture'],
       ['--kl', '--prior']),
      ('iwae_without_a_density', ['--objective=iwae',
                                  '--posterior=deterministic'],
       ['--objective', '--posterior']),
      ('conv_too_deep_for_the_images', ['--architecture=conv',
                                        '--conv_filters=4,8,16'],
       ['--architecture', '--conv_filters']),
      ('kl_warmup_in_steps_and_epochs', ['--kl_warmup_steps=10',
                                         '--kl_warmup_epochs=1'],
       ['--kl_warmup_steps=10', '--kl_warmup_epochs=1']),
      ('step_schedule_without_its_epochs', ['--learning_rate_schedule=step'],
       ['--learning_rate_schedule=step', '--learning_rate_decay_epochs']),
      ('floor_above_the_rate', ['--learning_rate_schedule=cosine',
                                '--min_learning_rate=0.1'],
       ['--min_learning_rate=0.1', '--learning_rate']))
  def test_an_impossible_combination_stops_before_any_work(self, flags,
                                                           named):
    root = self.new_directory()
    model_dir = os.path.join(root, 'run')
    # The data directory does not exist: had the script got as far as
    # loading data, it would complain about that instead.
    result = run_script('--dataset=binarized_mnist',
                        f'--data_dir={os.path.join(root, "no_data")}',
                        f'--model_dir={model_dir}', *flags)
    self.assertNotEqual(result.returncode, 0)
    message = result.stderr.strip().splitlines()[-1]
    for flag in named:
      self.assertIn(flag, message)
    self.assertNotIn('no_data', result.stderr)
    self.assertNotIn('Traceback', result.stderr)
    self.assertFalse(os.path.exists(model_dir))

  def test_conv_layers_must_divide_the_image_size(self):
    # Frey Face images are 28x20: two stride-2 layers divide them, three
    # do not (28 and 20 are not multiples of 8).
    ModelConfig(image_shape=(28, 20, 1), architecture='conv',
                conv_filters=(8, 16))
    with self.assertRaisesRegex(ValueError,
                                r'(?s)--architecture=conv.*--conv_filters='
                                r'8,16,32.*\(28, 20, 1\)'):
      ModelConfig(image_shape=(28, 20, 1), architecture='conv',
                  conv_filters=(8, 16, 32))


if __name__ == '__main__':
  tf.test.main()


# A line of TensorFlow's C++ logging (absl format) or of its pre-init notice.
_CPP_LOG_LINE = r'(?m)^([IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages)'


@pytest.mark.usefixtures('dataset_files')
class DailyUseTest(tf.test.TestCase):
  """What a default run prints, and what a rerun does."""

  def test_quiet_run_summary_finished_rerun_and_overwrite(self):
    root = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, root, ignore_errors=True)
    model_dir = os.path.join(root, 'run')
    flags = [*_small_run(), '--epochs=2', '--hidden_units=32',
             '--latent_dim=2', f'--model_dir={model_dir}']
    # As a user runs it: no TF_CPP_MIN_LOG_LEVEL in the environment.
    environment = {k: v for k, v in os.environ.items()
                   if k not in ('TF_CPP_MIN_LOG_LEVEL', 'TF_CONFIG')}

    def run(*extra):
      return subprocess.run([sys.executable, _SCRIPT, *flags, *extra],
                            capture_output=True, text=True, env=environment,
                            cwd=_REPO, timeout=600)

    first = run()
    self.assertEqual(first.returncode, 0, first.stderr[-3000:])
    output = first.stdout + first.stderr
    self.assertNotRegex(output, _CPP_LOG_LINE)
    self.assertNotIn('Ignoring Assert operator', output)
    self.assertIn('binarized_mnist: full_cov posterior, z=2', first.stdout)
    self.assertIn('Epoch 1 starts by compiling the training step',
                  first.stdout)
    # Not a terminal: one line per epoch, every metric to 2 decimals.
    self.assertRegex(first.stdout, r'(?m)^Epoch 2/2: .* steps/s; loss '
                     r'\d+\.\d\d, elbo -\d+\.\d\d')
    self.assertNotIn('e+0', first.stdout)
    for phase in ('Evaluating on the test set', 'Saving the model to',
                  'Writing plots to'):
      self.assertIn(phase, first.stdout)
    history = read_json(model_dir, runs.HISTORY_FILE)
    best = max(r['val_elbo'] for r in history)
    self.assertIn(f'validation ELBO: best {best:.2f}', first.stdout)
    test_elbo = read_json(model_dir, runs.FINAL_METRICS_FILE)['elbo']
    self.assertRegex(first.stdout,
                     rf'ELBO +{test_elbo:.2f}( \+- \d+\.\d\d)?\n')
    self.assertIn(f'python scripts/evaluate.py --model_dir={model_dir}',
                  first.stdout)

    # The same command again: finished, said at once, nothing changed.
    model_mtime = os.path.getmtime(os.path.join(model_dir, runs.MODEL_FILE))
    again = run()
    self.assertEqual(again.returncode, 0, again.stderr[-3000:])
    self.assertIn('already holds this run, finished after --epochs=2',
                  again.stdout)
    self.assertEqual(model_mtime, os.path.getmtime(
        os.path.join(model_dir, runs.MODEL_FILE)))

    # --overwrite moves the finished run aside and trains afresh.
    fresh = run('--overwrite', '--epochs=1')
    self.assertEqual(fresh.returncode, 0, fresh.stderr[-3000:])
    moved = [n for n in os.listdir(root) if n.startswith('run.old-')]
    self.assertLen(moved, 1)
    self.assertLen(read_json(root, moved[0], runs.HISTORY_FILE), 2)
    self.assertLen(read_json(model_dir, runs.HISTORY_FILE), 1)
