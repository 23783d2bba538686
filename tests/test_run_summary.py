"""Tests of tfp_vae.run_summary: default directory names and the summary."""

import json
import os
import shutil
import tempfile

from absl.testing import absltest
from absl.testing import parameterized

from tfp_vae import names
from tfp_vae import run_summary
from tfp_vae.config import ModelConfig
from tfp_vae.config import TrainConfig


class DefaultModelDirTest(parameterized.TestCase):

  def test_same_settings_same_directory_and_it_names_the_model(self):
    model, train = ModelConfig(latent_dim=2), TrainConfig(epochs=3)
    model_dir = run_summary.default_model_dir(model, train)
    self.assertEqual(model_dir, run_summary.default_model_dir(
        ModelConfig(latent_dim=2), TrainConfig(epochs=3)))
    self.assertRegex(model_dir,
                     r'^runs/fashion_mnist-full_cov-z2-[0-9a-f]{8}$')

  @parameterized.parameters(
      ({'latent_dim': 3}, {}), ({'hidden_units': (64,)}, {}),
      ({'posterior': 'diag'}, {}), ({}, {'learning_rate': 3e-4}),
      ({}, {'seed': 1}), ({}, {'batch_size': 64}))
  def test_a_model_setting_changes_the_directory(self, model_change,
                                                 train_change):
    base = run_summary.default_model_dir(ModelConfig(), TrainConfig())
    changed = run_summary.default_model_dir(ModelConfig(**model_change),
                                            TrainConfig(**train_change))
    self.assertNotEqual(base, changed)

  @parameterized.parameters(({'epochs': 50},), ({'strategy': 'mirrored'},),
                            ({'checkpoint_every_steps': 10},))
  def test_a_resumable_setting_keeps_the_directory(self, train_change):
    # The same command with more --epochs must find and resume its run.
    self.assertEqual(
        run_summary.default_model_dir(ModelConfig(), TrainConfig()),
        run_summary.default_model_dir(ModelConfig(),
                                      TrainConfig(**train_change)))


class SummaryTest(absltest.TestCase):

  def test_best_and_final_validation_elbo_and_two_decimals(self):
    history = [{'epoch': 1, 'val_elbo': -130.0}, {'epoch': 2,
                                                 'val_elbo': -122.7451},
               {'epoch': 3, 'val_elbo': -125.5}]
    lines = run_summary.summary_lines(
        'runs/x', history, {'elbo': -122.7451, 'elbo_stderr': 0.6712,
                            'kl': 25.123456, 'active_units': 7,
                            'loss': 122.7451, 'num_examples': 100},
        wall_seconds=125.4)
    text = '\n'.join(lines)
    self.assertIn('best -122.75 (epoch 2), final -125.50 (epoch 3)', text)
    self.assertRegex(text, r'ELBO +-122\.75 \+- 0\.67\n')
    self.assertRegex(text, r'KL\(q\(z\|x\) \|\| p\(z\)\) +25\.12\n')
    self.assertRegex(text, r'active units +7\n')
    # The loss (-ELBO) and bookkeeping stay in final_metrics.json.
    self.assertNotIn('loss', text)
    self.assertNotIn('num_examples', text)
    self.assertNotIn('e+0', text)
    self.assertIn('wall time: 2m05s', text)
    self.assertIn('python scripts/evaluate.py --model_dir=runs/x', text)
    self.assertIn('python scripts/sample.py --model_dir=runs/x', text)
    self.assertIn('tensorboard --logdir runs/x/tensorboard', text)


  def test_early_stopping_names_the_epoch_kept_and_why_the_run_ended(self):
    history = [{'epoch': e, 'val_elbo': -100.0 + min(e, 3)}
               for e in range(1, 7)]  # Best at epoch 3, none better after.
    stopped = '\n'.join(run_summary.summary_lines(
        'runs/x', history, {}, early_stopping_patience=3))
    self.assertIn('stopped early after epoch 6: no better validation ELBO '
                  'for 3 epochs', stopped)
    self.assertIn("model and test metrics: epoch 3's weights", stopped)
    # Patience not run out: the epoch kept, but no early stop.
    going = '\n'.join(run_summary.summary_lines(
        'runs/x', history, {}, early_stopping_patience=4))
    self.assertNotIn('stopped early', going)
    self.assertIn("epoch 3's weights", going)
    # Without early stopping the last epoch's weights are kept: neither line.
    plain = '\n'.join(run_summary.summary_lines('runs/x', history, {}))
    self.assertNotIn('stopped early', plain)
    self.assertNotIn("weights", plain)


class ReadFinishedRunTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.model_dir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.model_dir)

  def _write(self, name, value):
    with open(os.path.join(self.model_dir, name), 'w') as f:
      json.dump(value, f)

  def test_finished_only_with_final_model_and_metrics(self):
    self._write(names.CONFIG_FILE, {'model': ModelConfig().to_dict(),
                                    'train': TrainConfig(epochs=4).to_dict()})
    self._write(names.HISTORY_FILE, [{'epoch': 1, 'val_elbo': -1.0}])
    self._write(names.FINAL_METRICS_FILE, {'elbo': -1.0})
    # Training deletes model.keras when it (re)starts and writes it last.
    self.assertIsNone(run_summary.read_finished_run(self.model_dir))
    with open(os.path.join(self.model_dir, names.MODEL_FILE), 'w') as f:
      f.write('not read')
    finished = run_summary.read_finished_run(self.model_dir)
    self.assertEqual(finished.epochs, 4)
    self.assertEqual(finished.test_metrics, {'elbo': -1.0})


if __name__ == '__main__':
  absltest.main()
