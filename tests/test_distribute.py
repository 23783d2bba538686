"""Tests for tfp_vae.distribute, and one replica against two.

`MirroredStrategy` gets two replicas on a CPU split into two logical devices,
which must happen before TensorFlow runs any op: those tests run
`_replica_equivalence_main.py` in a process of its own.
"""

import json
import os
import subprocess
import sys
import tempfile
from unittest import mock

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tfp_vae import distribute

_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_TESTS_DIR)
_HELPER = os.path.join(_TESTS_DIR, '_replica_equivalence_main.py')

_VALID_TF_CONFIG = json.dumps({
    'cluster': {'worker': ['127.0.0.1:12345', '127.0.0.1:12346']},
    'task': {'type': 'worker', 'index': 0}})


def run_helper(test, mode):
  """Runs the two-CPU helper in `mode`; returns its JSON report."""
  output = os.path.join(tempfile.mkdtemp(), 'report.json')
  environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  environment.pop('TF_CONFIG', None)
  completed = subprocess.run(
      [sys.executable, _HELPER, mode, output], capture_output=True, text=True,
      env=environment, cwd=_REPO, timeout=600)
  test.assertEqual(completed.returncode, 0, completed.stderr[-5000:])
  with open(output) as f:
    return json.load(f)


class _FakeResolver:
  """What `is_chief` reads from a multi-worker strategy's cluster resolver."""

  def __init__(self, cluster, task_type, task_id):
    self._cluster = cluster
    self.task_type = task_type
    self.task_id = task_id

  def cluster_spec(self):
    return tf.train.ClusterSpec(self._cluster)


class _FakeStrategy:

  def __init__(self, cluster_resolver):
    self.cluster_resolver = cluster_resolver


class MakeStrategyTest(tf.test.TestCase, parameterized.TestCase):

  def test_default_is_the_default_strategy(self):
    strategy = distribute.make_strategy('default')
    self.assertIs(strategy, tf.distribute.get_strategy())
    self.assertEqual(strategy.num_replicas_in_sync, 1)
    self.assertTrue(distribute.is_chief(strategy))
    self.assertTrue(distribute.supports_jit_compile(strategy))

  def test_one_device_runs_on_one_device(self):
    strategy = distribute.make_strategy('one_device')
    self.assertIsInstance(strategy, tf.distribute.OneDeviceStrategy)
    self.assertEqual(strategy.num_replicas_in_sync, 1)
    self.assertLen(strategy.extended.worker_devices, 1)
    self.assertTrue(distribute.is_chief(strategy))
    self.assertTrue(distribute.supports_jit_compile(strategy))

  def test_mirrored_on_an_unsplit_cpu_has_one_replica(self):
    strategy = distribute.make_strategy('mirrored')
    self.assertIsInstance(strategy, tf.distribute.MirroredStrategy)
    self.assertEqual(strategy.num_replicas_in_sync,
                     max(1, len(tf.config.list_logical_devices('GPU'))))
    # One per process, however often it is asked for (see make_strategy).
    self.assertIs(distribute.make_strategy('mirrored'), strategy)

  def test_an_unknown_name_is_refused_naming_the_flag(self):
    with self.assertRaisesRegex(ValueError, r"--strategy='mirror'.*mirrored"):
      distribute.make_strategy('mirror')

  def test_multi_worker_without_tf_config_names_the_flag_and_variable(self):
    with mock.patch.dict(os.environ):
      os.environ.pop('TF_CONFIG', None)
      with self.assertRaisesRegex(ValueError,
                                  r'--strategy=multi_worker.*TF_CONFIG'):
        distribute.make_strategy('multi_worker')
    with mock.patch.dict(os.environ, {'TF_CONFIG': ''}):
      with self.assertRaisesRegex(ValueError,
                                  r'--strategy=multi_worker.*TF_CONFIG'):
        distribute.make_strategy('multi_worker')

  @parameterized.named_parameters(
      ('not_json', '{"cluster": '),
      ('not_an_object', '["worker"]'),
      ('no_cluster', '{"task": {"type": "worker", "index": 0}}'),
      ('no_workers', '{"cluster": {}, "task": {"type": "worker", '
                     '"index": 0}}'),
      ('no_task', '{"cluster": {"worker": ["127.0.0.1:1"]}}'),
      ('index_outside_the_workers',
       '{"cluster": {"worker": ["127.0.0.1:1"]}, '
       '"task": {"type": "worker", "index": 1}}'),
      ('index_not_a_number',
       '{"cluster": {"worker": ["127.0.0.1:1"]}, '
       '"task": {"type": "worker", "index": "0"}}'),
      ('negative_index',
       '{"cluster": {"worker": ["127.0.0.1:1"]}, '
       '"task": {"type": "worker", "index": -1}}'))
  def test_multi_worker_with_a_bad_tf_config_is_refused(self, tf_config):
    with mock.patch.dict(os.environ, {'TF_CONFIG': tf_config}):
      with self.assertRaisesRegex(ValueError,
                                  r'--strategy=multi_worker.*TF_CONFIG'):
        distribute.make_strategy('multi_worker')

  def test_a_non_positive_number_of_cpu_devices_is_refused(self):
    with self.assertRaisesRegex(ValueError, 'num_devices.*0'):
      distribute.split_cpu_into_logical_devices(0)


class IsChiefTest(tf.test.TestCase, parameterized.TestCase):

  WORKERS = {'worker': ['127.0.0.1:1', '127.0.0.1:2']}
  WITH_CHIEF = {'chief': ['127.0.0.1:0'], **WORKERS}

  @parameterized.named_parameters(
      ('first_worker', WORKERS, 'worker', 0, True),
      ('second_worker', WORKERS, 'worker', 1, False),
      ('chief', WITH_CHIEF, 'chief', 0, True),
      ('first_worker_beside_a_chief', WITH_CHIEF, 'worker', 0, False),
      ('evaluator', WORKERS, 'evaluator', 0, False))
  def test_one_worker_writes(self, cluster, task_type, task_id, expected):
    strategy = _FakeStrategy(_FakeResolver(cluster, task_type, task_id))
    self.assertEqual(distribute.is_chief(strategy), expected)

  def test_a_resolver_without_a_task_is_a_single_worker(self):
    self.assertTrue(distribute.is_chief(
        _FakeStrategy(_FakeResolver({}, None, None))))


class TwoLogicalCpusTest(tf.test.TestCase):
  """MirroredStrategy over a CPU split in two, in a process of its own."""

  def test_mirrored_strategy_has_a_replica_on_each_logical_cpu(self):
    report = run_helper(self, 'strategies')
    self.assertEqual(report['logical_cpus'], 2)
    mirrored = report['mirrored']
    self.assertEqual(mirrored['num_replicas'], 2)
    self.assertEqual([d.rsplit('/', 1)[-1] for d in mirrored['devices']],
                     ['device:CPU:0', 'device:CPU:1'])
    self.assertTrue(mirrored['is_chief'])
    self.assertEqual(report['default']['num_replicas'], 1)
    self.assertEqual(report['one_device']['num_replicas'], 1)
    # Too late to split differently once TensorFlow has started.
    self.assertIsNotNone(report['split_again_error'])
    # XLA cannot run replicas on logical CPUs: refused by name, before the
    # model directory is made.
    self.assertFalse(mirrored['supports_jit_compile'])
    self.assertTrue(report['default']['supports_jit_compile'])
    self.assertIsNotNone(report['jit_compile_error'])
    self.assertIn('--jit_compile', report['jit_compile_error'])
    self.assertIn('--strategy=mirrored', report['jit_compile_error'])
    self.assertFalse(report['jit_compile_model_dir_made'])
    # The default, --jit_compile=auto, trains there without XLA: one note.
    self.assertIs(report['jit_auto_saved'], False)
    self.assertLen(report['jit_auto_notes'], 1)

  def test_one_and_two_replicas_make_the_same_updates(self):
    """Same model, seed and global batches: the same training, to rounding.

    Each replica computes its half of the global batch; its sampling noise is
    its slice of a draw for the whole global batch, and its loss is divided
    by the global batch size. Then the two replicas' gradients sum to the one
    replica's. Covered: even (16 = 8 + 8) and uneven (15 = 8 + 7) splits,
    evaluation sets whose last batch splits unevenly, input noise, KL
    warm-up, several samples, IWAE, a trainable mixture prior, and the
    low-rank and IAF posteriors.
    """
    report = run_helper(self, 'training')
    self.assertLen(report, 4)
    for case, result in report.items():
      with self.subTest(case):
        self.assertEqual(result['num_replicas'], [1, 2])
        self.assertEqual(result['iterations'][0], result['iterations'][1])
        self.assertGreater(result['iterations'][0], 0)
        self.assertEqual(result['num_variables'][0],
                         result['num_variables'][1])
        self.assertTrue(result['same_shapes'])
        # Adam moves a weight by up to its learning rate per step whatever
        # the size of its gradient, so a gradient that nearly cancels (a
        # mixture logit's) carries the summation order's rounding into the
        # whole step: the scale is the weight's value or its total motion.
        motion = result['learning_rate'] * result['iterations'][0]
        for name, difference in result['differences'].items():
          # Summation order differs, nothing else: 1e-5 of the scale.
          self.assertLessEqual(
              difference['max_abs_difference'],
              1e-5 * (difference['max_abs_value'] + motion) + 1e-12,
              f'{case}: {name} {difference}')
        one, two = result['history']
        self.assertCountEqual(one, two)
        for name in one:
          self.assertAllClose(one[name], two[name], rtol=1e-5,
                              msg=f'{case}: {name}')
        one, two = result['test_metrics']
        self.assertCountEqual(one, two)
        for name in one:
          self.assertAllClose(one[name], two[name], rtol=1e-5,
                              msg=f'{case}: test {name}')
        self.assertTrue(np.isfinite(one['elbo']))


if __name__ == '__main__':
  tf.test.main()
