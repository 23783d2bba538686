"""Tests of tfp_vae.comparison and an end-to-end run of compare_posteriors.py."""

import dataclasses
import functools
import glob
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import types
import unittest

from absl.testing import parameterized
import numpy as np
import pytest
import tensorflow as tf

from tfp_vae import comparison
from tfp_vae.config import ModelConfig
from tfp_vae.config import TrainConfig

import _test_data

try:
  from scipy import stats as scipy_stats  # Only to check known values.
except ImportError:  # pragma: no cover
  scipy_stats = None

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SCRIPT = os.path.join(_REPO, 'scripts', 'compare_posteriors.py')


def _needs_scipy(test):
  return unittest.skipIf(scipy_stats is None, 'scipy is not installed')(test)



def _format_report(config, records, missing=()):
  """`comparison.format_report` of `records` on a made-up small dataset."""
  summary, differences = comparison.report.summary_and_differences(
      records, config.posteriors)
  return comparison.format_report(
      config, records, summary, differences,
      {'name': 'binarized_mnist', 'binarization': 'static',
       'num_train': 100, 'num_test': 50, 'num_evaluated': 50},
      {'cpu_count': 2, 'usable_cpus': 2, 'cpu_model': 'cpu', 'gpus': 0,
       'tensorflow': '2', 'tensorflow_probability': '0.25'}, [], 60.0,
      missing=missing)

class StatisticsTest(tf.test.TestCase, parameterized.TestCase):

  @_needs_scipy
  def test_t_quantile_matches_scipy(self):
    cases = [(0.975, df) for df in range(1, 31)] + [
        (probability, df) for df in (1, 3, 45, 1000)
        for probability in (0.95, 0.5, 0.025)]
    for probability, df in cases:
      with self.subTest(probability=probability, df=df):
        self.assertAllClose(comparison.t_quantile(probability, df),
                            scipy_stats.t.ppf(probability, df),
                            rtol=1e-8, atol=1e-10)

  def test_t_quantile_known_values(self):
    # Textbook table: t_{0.975} for df 1, 2, 10.
    self.assertAllClose(comparison.t_quantile(0.975, 1), 12.7062047, rtol=1e-7)
    self.assertAllClose(comparison.t_quantile(0.975, 2), 4.30265273, rtol=1e-7)
    self.assertAllClose(comparison.t_quantile(0.975, 10), 2.22813885,
                        rtol=1e-7)

  @parameterized.parameters((0.0, 3), (1.0, 3), (0.5, 0))
  def test_t_quantile_refuses_bad_arguments(self, probability, df):
    with self.assertRaises(ValueError):
      comparison.t_quantile(probability, df)

  def test_summarize_over_seeds(self):
    stats = comparison.summarize_over_seeds([1.0, 2.0, 3.0, 4.0])
    self.assertAllClose(stats['mean'], 2.5)
    self.assertAllClose(stats['std'], math.sqrt(5.0 / 3.0))  # ddof = 1
    self.assertEqual((stats['min'], stats['max'], stats['num_seeds']),
                     (1.0, 4.0, 4))

  def test_summarize_one_seed_has_no_spread(self):
    stats = comparison.summarize_over_seeds([-90.5])
    self.assertEqual(stats['mean'], -90.5)
    self.assertIsNone(stats['std'])

  def test_summarize_missing_metric(self):
    stats = comparison.summarize_over_seeds([1.0, None])
    self.assertIsNone(stats['mean'])
    self.assertEqual(stats['num_seeds'], 2)

  @_needs_scipy
  def test_paired_difference_is_a_paired_t_interval(self):
    values = [-90.1, -91.4, -89.8, -90.9]
    baseline = [-91.0, -91.9, -90.2, -92.0]
    result = comparison.paired_difference(values, baseline)
    differences = np.subtract(values, baseline)
    expected = scipy_stats.ttest_rel(values, baseline).confidence_interval(
        0.95)
    self.assertEqual(result['method'], 't over seeds')
    self.assertAllClose(result['mean'], differences.mean())
    self.assertAllClose(result['std'], differences.std(ddof=1))
    self.assertAllClose([result['ci_low'], result['ci_high']],
                        [expected.low, expected.high])
    self.assertAllClose(result['per_seed'], differences)

  def test_paired_difference_two_seeds_known_value(self):
    # d = (1, 3): mean 2, sd sqrt(2), half-width t_{0.975,1} * sqrt(2)/sqrt(2).
    result = comparison.paired_difference([2.0, 5.0], [1.0, 2.0])
    self.assertAllClose(result['mean'], 2.0)
    self.assertAllClose(result['half_width'], 12.706204736174705)
    self.assertAllClose(result['ci_low'], 2.0 - 12.706204736174705)

  def test_paired_difference_pairs_by_seed(self):
    # A large shared seed effect cancels in the pairing.
    baseline = [-100.0, -80.0, -90.0]
    values = [b + 1.0 for b in baseline]
    result = comparison.paired_difference(values, baseline)
    self.assertAllClose(result['mean'], 1.0)
    self.assertAllClose(result['half_width'], 0.0)

  def test_one_seed_falls_back_to_standard_errors(self):
    result = comparison.paired_difference([-90.0], [-91.0], [0.3], [0.4])
    self.assertEqual(result['method'], 'normal from standard errors')
    self.assertAllClose(result['mean'], 1.0)
    # 1.959964 * sqrt(0.3**2 + 0.4**2) = 1.959964 * 0.5
    self.assertAllClose(result['half_width'], 0.5 * 1.959963984540054)
    self.assertAllClose([result['ci_low'], result['ci_high']],
                        [1.0 - 0.979981992, 1.0 + 0.979981992])

  def test_one_seed_without_standard_errors_has_no_interval(self):
    result = comparison.paired_difference([3.0], [2.0])
    self.assertEqual(result['method'], 'none')
    self.assertAllClose(result['mean'], 1.0)
    self.assertIsNone(result['ci_low'])

  def test_paired_difference_missing_values(self):
    result = comparison.paired_difference([None, None], [1.0, 2.0])
    self.assertIsNone(result['mean'])
    self.assertIsNone(result['half_width'])

  def test_paired_difference_refuses_unequal_lengths(self):
    with self.assertRaisesRegex(ValueError, 'same length'):
      comparison.paired_difference([1.0, 2.0], [1.0])

  @parameterized.parameters(
      ([10.0, 2.0, 4.0], 3.0),  # The first (compiling) epoch is left out.
      ([5.0], 5.0),
      ([], None))
  def test_seconds_per_epoch(self, epoch_seconds, expected):
    self.assertEqual(comparison.seconds_per_epoch(epoch_seconds), expected)


class ComparisonConfigTest(tf.test.TestCase, parameterized.TestCase):

  def _config(self, **kwargs):
    return comparison.ComparisonConfig(
        model=ModelConfig(latent_dim=2),
        train=TrainConfig(dataset='binarized_mnist', model_dir='/tmp/x',
                          seed=5), **kwargs)

  @parameterized.named_parameters(
      ('one_posterior', {'posteriors': ('diag',)}, '--posteriors'),
      ('duplicate', {'posteriors': ('diag', 'diag')}, '--posteriors'),
      ('unknown', {'posteriors': ('diag', 'flow')}, '--posteriors'),
      ('zero_seeds', {'seeds': 0}, '--seeds'),
      ('zero_samples', {'num_importance_samples': 0},
       '--num_importance_samples'),
      ('negative_subset', {'max_eval_examples': -1}, '--max_eval_examples'),
      ('no_output_dir', {'output_dir': ''}, '--output_dir'),
      ('negative_gap_examples', {'gap_examples': -1}, '--gap_examples'),
      ('zero_gap_steps', {'gap_max_steps': 0}, '--gap_max_steps'),
      ('zero_gap_samples', {'gap_samples': 0}, '--gap_samples'),
  )
  def test_bad_settings_name_the_flag(self, kwargs, flag):
    with self.assertRaisesRegex(ValueError, flag):
      self._config(**kwargs)

  def test_a_family_the_model_refuses_names_the_flag(self):
    with self.assertRaisesRegex(ValueError, '--objective=iwae'):
      comparison.ComparisonConfig(
          model=ModelConfig(objective='iwae'), train=TrainConfig(),
          posteriors=('diag', 'deterministic'))

  def test_json_round_trip(self):
    config = self._config(posteriors=('full_cov', 'diag'), seeds=2)
    self.assertEqual(comparison.ComparisonConfig.from_json(config.to_json()),
                     config)

  def test_runs_differ_only_in_posterior_within_a_seed(self):
    config = self._config(seeds=2, output_dir='/tmp/out')
    specs = comparison.run_configs(config, image_shape=(28, 28, 1))
    self.assertEqual([(s.posterior, s.seed) for s in specs],
                     [('diag', 5), ('full_cov', 5), ('diag', 6),
                      ('full_cov', 6)])
    self.assertEqual(specs[0].train_config.model_dir,
                     os.path.join('/tmp/out', 'runs', 'diag-seed5'))
    for first, second in (specs[:2], specs[2:]):
      self.assertEqual(first.model_config.differences(second.model_config),
                       [('posterior', 'diag', 'full_cov')])
      self.assertEqual(first.train_config.differences(
          second.train_config, ignore=('model_dir',)), [])
      self.assertEqual(first.model_config.seed, first.train_config.seed)
    self.assertEqual(specs[0].train_config.num_importance_samples, 0)

  def test_runs_dir(self):
    config = self._config(runs_dir='/tmp/elsewhere')
    self.assertEqual(comparison.run_configs(config)[1].train_config.model_dir,
                     '/tmp/elsewhere/full_cov-seed5')

  def test_differences_pair_the_seeds_both_families_have(self):
    # An assembled study: diag has seeds 0 and 1, full_cov only seed 1, iaf
    # none yet.
    def run(posterior, seed, value):
      return types.SimpleNamespace(
          posterior=posterior, seed=seed, seconds_per_epoch=1.0,
          metrics={'log_likelihood': value, 'log_likelihood_stderr': 0.1})
    records = [run('diag', 0, -90.0), run('diag', 1, -91.0),
               run('full_cov', 1, -90.5)]
    summary, differences = comparison.report.summary_and_differences(
        records, ('diag', 'full_cov', 'iaf'))
    self.assertEqual(summary['diag']['log_likelihood']['num_seeds'], 2)
    self.assertEqual(summary['iaf']['log_likelihood']['num_seeds'], 0)
    self.assertEqual(list(differences), ['full_cov - diag'])
    difference = differences['full_cov - diag']['log_likelihood']
    self.assertEqual(difference['per_seed'], [0.5])  # seed 1 only
    self.assertEqual(difference['method'], 'normal from standard errors')

  def test_each_difference_row_says_how_its_interval_was_made(self):
    # An assembled study: full_cov pairs 2 seeds with diag, iaf only one, so
    # their rows' intervals are made differently, and the report says which
    # is which (not one rule for all).
    config = comparison.ComparisonConfig(
        model=ModelConfig(latent_dim=2, kl='mc'),
        train=TrainConfig(dataset='binarized_mnist', model_dir='/tmp/x',
                          seed=5), posteriors=('diag', 'full_cov', 'iaf'),
        seeds=2)
    metrics = {'log_likelihood_stderr': 0.3, 'elbo': -95.0,
               'elbo_stderr': 0.3, 'kl': 5.0, 'kl_stderr': 0.1, 'gap': 5.0,
               'gap_stderr': 0.1, 'active_units': 2}
    records = [comparison.RunRecord(
        posterior=p, seed=seed, model_dir=f'/runs/{p}-{seed}', reused=False,
        epochs_trained=20, epoch_seconds=[3.0, 1.0], seconds_per_epoch=1.0,
        train_seconds=4.0, evaluation_reused=False, evaluation_seconds=1.0,
        metrics=dict(metrics, log_likelihood=value), history={})
               for p, seed, value in (('diag', 5, -90.0), ('diag', 6, -91.0),
                                      ('full_cov', 5, -89.0),
                                      ('full_cov', 6, -89.5),
                                      ('iaf', 5, -89.8))]
    report = _format_report(config, records, missing=[('iaf', 6)])
    self.assertIn('full_cov − diag: a t-interval over the 2 paired seeds '
                  '(1 degree of freedom); iaf − diag: one paired seed, a '
                  'normal interval from the standard errors', report)

  def test_report_with_one_seed_says_how_the_interval_was_made(self):
    config = self._config(seeds=1)
    metrics = {'log_likelihood': -90.0, 'log_likelihood_stderr': 0.3,
               'elbo': -95.0, 'elbo_stderr': 0.3, 'kl': 5.0,
               'kl_stderr': 0.1, 'gap': 5.0, 'gap_stderr': 0.1,
               'active_units': 2}
    records = [comparison.RunRecord(
        posterior=p, seed=5, model_dir=f'/runs/{p}', reused=False,
        epochs_trained=20, epoch_seconds=[3.0, 1.0],
        seconds_per_epoch=1.0, train_seconds=4.0, evaluation_reused=False,
        evaluation_seconds=1.0,
        metrics=dict(metrics, log_likelihood=-90.0 + offset), history={})
               for p, offset in (('diag', 0.0), ('full_cov', 0.5))]
    report = _format_report(config, records)
    self.assertIn('standard errors over the test examples', report)
    self.assertIn('| diag | -90.00 |', report)
    half_width = 1.959963984540054 * math.sqrt(0.3**2 + 0.3**2)
    self.assertIn(f'| **full_cov − diag** | +0.50 [{0.5 - half_width:+.2f}, '
                  f'{0.5 + half_width:+.2f}]', report)
    self.assertIn('| 2 CPUs', report)
    # Without gap reports there is no gap section.
    self.assertNotIn('approximation gap', report)

  def test_gap_table_pairs_the_families_gaps(self):
    config = self._config(seeds=2, gap_examples=10)

    def gap_report(approximation, amortization):
      def entry(mean):
        return {'mean': mean, 'standard_error': 0.1, 'num_examples': 10}
      quantities = {'log_likelihood': -90., 'log_likelihood_amortized': -91.,
                    'log_likelihood_optimized': -90.,
                    'elbo_amortized': -90. - approximation - amortization,
                    'elbo_optimized': -90. - approximation,
                    'inference_gap': approximation + amortization,
                    'approximation_gap': approximation,
                    'amortization_gap': amortization}
      return {'num_examples': 10,
              'summary': {k: entry(v) for k, v in quantities.items()}}

    records = []
    for seed, shift in ((5, 0.), (6, 0.2)):
      for posterior, approximation in (('diag', 1.5), ('full_cov', 0.5)):
        metrics = {'gaps': gap_report(approximation + shift, 3. + shift)}
        metrics.update(comparison.report.gap_metrics(metrics))
        records.append(comparison.RunRecord(
            posterior=posterior, seed=seed, model_dir='/runs', reused=False,
            epochs_trained=1, epoch_seconds=[1.], seconds_per_epoch=1.,
            train_seconds=1., evaluation_reused=False,
            evaluation_seconds=1., metrics=metrics, history={}))
    summary, differences = comparison.report.summary_and_differences(
        records, config.posteriors)
    difference = differences['full_cov - diag']['gaps_approximation_gap']
    # Paired by seed: both seeds differ by exactly -1, so the t-interval
    # over seeds has width 0.
    self.assertAllClose(difference['per_seed'], [-1., -1.])
    self.assertEqual(difference['method'], 't over seeds')
    self.assertAllClose([difference['ci_low'], difference['ci_high']],
                        [-1., -1.])
    self.assertAllClose(summary['diag']['gaps_inference_gap']['mean'],
                        1.6 + 3.1)
    report = _format_report(config, records)
    self.assertIn('approximation vs amortization', report)
    self.assertIn('t-interval over the 2 paired seeds', report)
    gap_rows = report.split('approximation vs amortization')[1]
    self.assertIn('| **full_cov − diag** |', gap_rows)
    self.assertIn('-1.00 [-1.00, -1.00]', gap_rows)


def _script_flags():
  return (
      '--dataset=binarized_mnist',
      f'--data_dir={_test_data.data_dir("binarized_mnist")}',
      # The file is sorted by class: train on random subsets.
      '--max_train_examples=200', '--batch_size=50', '--latent_dim=2',
      '--epochs=1', '--seeds=2', '--num_importance_samples=20',
      '--max_eval_examples=60', '--hidden_units=32', '--nojit_compile')


def _read_results(output_dir):
  with open(os.path.join(output_dir, 'results.json')) as f:
    return json.load(f)


def _run_script(*args):
  environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.run([sys.executable, _SCRIPT, *args], capture_output=True,
                        text=True, env=environment, cwd=_REPO, timeout=600)


@pytest.mark.usefixtures('dataset_files')
class CompareScriptTest(tf.test.TestCase):

  def test_bad_posteriors_flag_stops_naming_the_flag(self):
    result = _run_script('--posteriors=diag', '--output_dir=' +
                         os.path.join(tempfile.mkdtemp(), 'out'))
    self.assertNotEqual(result.returncode, 0)
    self.assertIn('--posteriors', result.stderr)

  def test_compares_the_four_families_with_densities(self):
    # The ladder diag < low_rank < full_cov < iaf, one seed, one epoch; the
    # IAF needs the Monte Carlo KL, which the others then use too.
    root = tempfile.mkdtemp()
    output_dir = os.path.join(root, 'report')
    flags = [f for f in _script_flags() if not f.startswith('--seeds')]
    result = _run_script(
        *flags, '--seeds=1', '--posteriors=diag,low_rank,full_cov,iaf',
        '--kl=mc', '--posterior_rank=1', '--flow_hidden_units=8',
        f'--output_dir={output_dir}', f'--runs_dir={root}/runs')
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    results = _read_results(output_dir)
    self.assertCountEqual([run['posterior'] for run in results['runs']],
                          ['diag', 'low_rank', 'full_cov', 'iaf'])
    for run in results['runs']:
      metrics = run['metrics']
      self.assertGreaterEqual(metrics['log_likelihood'],
                              metrics['elbo'] - 1.0, run['posterior'])
      self.assertTrue(np.isfinite(metrics['kl_to_diagonal']))
    self.assertIn('iaf - diag', results['differences'])
    for name in ('posterior_ellipses', 'reconstructions_iaf',
                 'latent_scatter_iaf', 'latent_scatter_low_rank'):
      path = os.path.join(output_dir, name + '.png')
      self.assertTrue(os.path.exists(path), path)

  def test_compares_and_then_reuses_the_runs(self):
    root = tempfile.mkdtemp()
    output_dir = os.path.join(root, 'report')
    runs_dir = os.path.join(root, 'runs')
    args = _script_flags() + (f'--output_dir={output_dir}',
                              f'--runs_dir={runs_dir}')
    first = _run_script(*args)
    self.assertEqual(first.returncode, 0, first.stderr[-3000:])

    with open(os.path.join(output_dir, 'report.md')) as f:
      report = f.read()
    table_rows = [line for line in report.splitlines()
                  if line.startswith('| ')]
    for posterior in ('diag', 'full_cov'):
      self.assertTrue(any(line.startswith(f'| {posterior} | -')
                          for line in table_rows), report)
    self.assertIn('| **full_cov − diag** |', report)
    self.assertIn('| latent size | 2 |', report)
    self.assertIn('| seeds | 2: 0, 1 |', report)
    self.assertIn('t-interval over the 2 paired seeds', report)

    results = _read_results(output_dir)
    self.assertContainsSubset(
        ['config', 'dataset', 'machine', 'runs', 'summary', 'differences'],
        list(results))
    self.assertLen(results['runs'], 4)
    for run in results['runs']:
      self.assertEqual(run['model_dir'], os.path.join(
          runs_dir, f'{run["posterior"]}-seed{run["seed"]}'))
      self.assertFalse(run['reused'])
      self.assertEqual(run['metrics']['num_examples'], 60)
      self.assertEqual(run['metrics']['num_importance_samples'], 20)
      self.assertGreaterEqual(run['metrics']['log_likelihood'],
                              run['metrics']['elbo'] - 1.0)
    self.assertContainsSubset(
        ['log_likelihood', 'elbo', 'kl', 'gap', 'active_units',
         'seconds_per_epoch'], list(results['summary']['full_cov']))
    difference = results['differences']['full_cov - diag']['log_likelihood']
    self.assertEqual(difference['method'], 't over seeds')
    self.assertLess(difference['ci_low'], difference['ci_high'])
    for name in ('learning_curves', 'posterior_ellipses',
                 'reconstructions_diag', 'reconstructions_full_cov',
                 'prior_samples_diag', 'prior_samples_full_cov',
                 'latent_scatter_diag', 'latent_scatter_full_cov'):
      path = os.path.join(output_dir, name + '.png')
      self.assertTrue(os.path.exists(path), path)
      self.assertIn(f']({name}.png)', report)
    self.assertFalse(os.path.exists(os.path.join(output_dir, 'runs')))

    # A second invocation reuses the runs and their evaluations: nothing is
    # trained, no checkpoint is rewritten, the numbers are the same.
    checkpoints = sorted(glob.glob(os.path.join(runs_dir, '*', 'checkpoints',
                                                '*')))
    self.assertNotEmpty(checkpoints)
    modified = {p: os.stat(p).st_mtime_ns for p in checkpoints}
    second = _run_script(*args)
    self.assertEqual(second.returncode, 0, second.stderr[-3000:])
    self.assertEqual(
        {p: os.stat(p).st_mtime_ns for p in checkpoints}, modified)
    reused = _read_results(output_dir)
    for before, after in zip(results['runs'], reused['runs']):
      self.assertTrue(after['reused'])
      self.assertTrue(after['evaluation_reused'])
      self.assertEqual(after['epoch_seconds'], before['epoch_seconds'])
      self.assertEqual(after['metrics'], before['metrics'])

    # A study assembled from the finished runs: a third seed is asked for
    # but not trained; the report says what is missing.
    assembled = _run_script(*[a for a in args if not a.startswith('--seeds')],
                            '--seeds=3', '--notrain_missing',
                            '--posteriors=diag,low_rank,full_cov')
    self.assertEqual(assembled.returncode, 0, assembled.stderr[-3000:])
    self.assertFalse(os.path.exists(os.path.join(runs_dir, 'diag-seed2')))
    partial = _read_results(output_dir)
    # low_rank has no run at all: no row, no curve, no difference.
    self.assertEqual(partial['missing_runs'],
                     [{'posterior': 'low_rank', 'seed': 0},
                      {'posterior': 'low_rank', 'seed': 1},
                      {'posterior': 'diag', 'seed': 2},
                      {'posterior': 'low_rank', 'seed': 2},
                      {'posterior': 'full_cov', 'seed': 2}])
    self.assertEqual([r['metrics'] for r in partial['runs']],
                     [r['metrics'] for r in results['runs']])
    self.assertEqual(partial['differences'], results['differences'])
    with open(os.path.join(output_dir, 'report.md')) as f:
      self.assertIn('**Incomplete: 4 of 9 runs.** Not yet trained: '
                    'low_rank seed 0, low_rank seed 1, diag seed 2, low_rank '
                    'seed 2, full_cov seed 2.', f.read())

    # Asking for the gap analysis reuses the runs, evaluates them again
    # (the saved evaluations have no gaps) and adds the gap table and its
    # pictures.
    third = _run_script(*args, '--gaps', '--gap_examples=5', '--gap_max_steps=20',
                        '--gap_samples=2')
    self.assertEqual(third.returncode, 0, third.stderr[-3000:])
    with_gaps = _read_results(output_dir)
    for run in with_gaps['runs']:
      self.assertTrue(run['reused'])
      self.assertFalse(run['evaluation_reused'])
      self.assertEqual(run['metrics']['gaps']['num_examples'], 5)
      self.assertAllClose(
          run['metrics']['gaps_approximation_gap'] +
          run['metrics']['gaps_amortization_gap'],
          run['metrics']['gaps_inference_gap'], atol=1e-9)
    with open(os.path.join(output_dir, 'report.md')) as f:
      report = f.read()
    self.assertIn('approximation vs amortization', report)
    for name in ('gaps', 'true_posteriors'):
      self.assertTrue(os.path.exists(os.path.join(output_dir, name + '.png')))
      self.assertIn(f']({name}.png)', report)

    # A study that spans sessions keeps only each run's small files: with
    # the models and checkpoints gone, the same command trains and evaluates
    # nothing, gives the same numbers, and lists the pictures the models
    # drew before (they show these very runs).
    for run_dir in glob.glob(os.path.join(runs_dir, '*')):
      for name in ('model.keras', 'checkpoints', 'tensorboard', 'plots'):
        path = os.path.join(run_dir, name)
        if os.path.isdir(path):
          shutil.rmtree(path)
        elif os.path.exists(path):
          os.remove(path)
    fourth = _run_script(*args, '--gaps', '--gap_examples=5',
                         '--gap_max_steps=20', '--gap_samples=2')
    self.assertEqual(fourth.returncode, 0, fourth.stderr[-3000:])
    self.assertEqual(glob.glob(os.path.join(runs_dir, '*', 'model.keras')), [])
    kept = _read_results(output_dir)
    for before, after in zip(with_gaps['runs'], kept['runs']):
      self.assertTrue(after['reused'])
      self.assertFalse(after['model_kept'])
      self.assertEqual(after['metrics'], before['metrics'])
      self.assertEqual(after['run_identity'], before['run_identity'])
    self.assertEqual(kept['pictures'], with_gaps['pictures'])
    with open(os.path.join(output_dir, 'report.md')) as f:
      kept_report = f.read()
    self.assertIn('no (results kept; model not)', kept_report)
    for name in ('learning_curves', 'gaps', 'true_posteriors',
                 'posterior_ellipses', 'reconstructions_diag',
                 'latent_scatter_full_cov'):
      self.assertIn(f']({name}.png)', kept_report)


class ReuseTest(tf.test.TestCase):
  """A run is reused only when it finished with the requested settings."""

  def test_finished_run_detection(self):
    root = tempfile.mkdtemp()
    config = comparison.ComparisonConfig(
        model=ModelConfig(latent_dim=2, hidden_units=(8,)),
        train=TrainConfig(dataset='binarized_mnist', model_dir=root,
                          epochs=3), output_dir=root, seeds=1)
    spec = comparison.run_configs(config)[0]
    # What the reuse check reads of the data: 1280 images, 10 batches.
    dataset = types.SimpleNamespace(binarization='static',
                                    train_images=np.zeros((1280, 1)))
    finished = functools.partial(
        comparison.runner._finished_history, dataset=dataset)  # pylint: disable=protected-access
    self.assertIsNone(finished(spec))  # Nothing there yet.
    model_dir = spec.train_config.model_dir
    os.makedirs(model_dir)
    with open(os.path.join(model_dir, 'config.json'), 'w') as f:
      json.dump({'model': spec.model_config.to_dict(),
                 'train': spec.train_config.to_dict()}, f)
    rows = [{'epoch': e, 'step': 10 * e, 'seconds': 1.0} for e in (1, 2, 3)]
    with open(os.path.join(model_dir, 'history.json'), 'w') as f:
      json.dump(rows, f)
    self.assertIsNone(finished(spec))  # No final model: still training.
    open(os.path.join(model_dir, 'model.keras'), 'w').close()
    self.assertEqual(finished(spec), rows)
    # Settings that change only how it runs do not matter; epochs do.
    self.assertEqual(finished(spec._replace(train_config=dataclasses.replace(
        spec.train_config, jit_compile=False, num_importance_samples=7))),
                     rows)
    self.assertIsNone(finished(spec._replace(train_config=dataclasses.replace(
        spec.train_config, epochs=4))))
    self.assertIsNone(finished(spec._replace(train_config=dataclasses.replace(
        spec.train_config, max_steps=20))))
    # config.json as a run writes it now, with the settings it resolved.
    with open(os.path.join(model_dir, 'config.json'), 'w') as f:
      json.dump({'model': dataclasses.replace(
                     spec.model_config, kl_warmup_steps=20).to_dict(),
                 'train': dataclasses.replace(
                     spec.train_config, binarization='static').to_dict()}, f)
    self.assertEqual(finished(spec._replace(model_config=dataclasses.replace(
        spec.model_config, kl_warmup_epochs=2))), rows)
    self.assertIsNone(finished(spec._replace(model_config=dataclasses.replace(
        spec.model_config, kl_warmup_epochs=3))))
    self.assertIsNone(finished(spec._replace(model_config=dataclasses.replace(
        spec.model_config, latent_dim=3))))

  def test_results_kept_without_the_model_are_reused_for_that_training_only(
      self):
    root = tempfile.mkdtemp()
    config = comparison.ComparisonConfig(
        model=ModelConfig(latent_dim=2, hidden_units=(8,)),
        train=TrainConfig(dataset='binarized_mnist', model_dir=root,
                          epochs=2), output_dir=root, seeds=1,
        num_importance_samples=10)
    spec = comparison.run_configs(config)[0]
    dataset = types.SimpleNamespace(binarization='static',
                                    train_images=np.zeros((1280, 1)))
    images = np.zeros((7, 28, 28, 1))
    kept = functools.partial(comparison.runner._kept_results, spec, dataset,  # pylint: disable=protected-access
                             images)
    model_dir = spec.train_config.model_dir
    os.makedirs(model_dir)
    with open(os.path.join(model_dir, 'config.json'), 'w') as f:
      json.dump({'model': spec.model_config.to_dict(),
                 'train': dataclasses.replace(
                     spec.train_config, binarization='static').to_dict()}, f)
    rows = [{'epoch': e, 'step': 10 * e, 'seconds': 1.0,
             'end_time': 1000.0 + e} for e in (1, 2)]
    with open(os.path.join(model_dir, 'history.json'), 'w') as f:
      json.dump(rows, f)
    self.assertEqual(comparison.runner.run_identity(rows),
                     {'epoch': 2, 'step': 20, 'end_time': 1002.0})
    self.assertIsNone(kept(config))  # No evaluation saved.
    settings = {'split': 'test', 'num_importance_samples': 10,
                'max_eval_examples': 0, 'num_examples': 7, 'seed': 0,
                'run': comparison.runner.run_identity(rows)}
    metrics = {'log_likelihood': -90.0}
    with open(os.path.join(model_dir, comparison.EVALUATION_FILE), 'w') as f:
      json.dump({'settings': settings, 'metrics': metrics}, f)
    self.assertEqual(kept(config), (rows, metrics))
    # Other evaluation settings, or the gap analysis, are not what was kept.
    self.assertIsNone(kept(dataclasses.replace(config,
                                               num_importance_samples=20)))
    self.assertIsNone(kept(dataclasses.replace(config, gap_examples=5)))
    # An evaluation of another training of the run (its last epoch ended at
    # another time) is not this one's.
    with open(os.path.join(model_dir, 'history.json'), 'w') as f:
      json.dump(rows[:1] + [dict(rows[1], end_time=2002.0)], f)
    self.assertIsNone(kept(config))
    # With the model there, the usual path (load, evaluate or reuse) runs.
    with open(os.path.join(model_dir, 'history.json'), 'w') as f:
      json.dump(rows, f)
    open(os.path.join(model_dir, 'model.keras'), 'w').close()
    self.assertIsNone(kept(config))


if __name__ == '__main__':
  tf.test.main()
