"""`MultiWorkerMirroredStrategy`: two worker processes on 127.0.0.1.

Each worker is `tests/_worker_main.py` (`training.train` under `TF_CONFIG`),
which saves its final weights to a file of its own. Checks that the workers
end with identical weights, equal (to float rounding) to a one-process run
of the same configuration; that only the chief writes the model directory;
and that after one worker is killed, restarting both resumes from the last
checkpoint and ends the same way. Every process has a time limit and is
killed in `finally`, so a hung collective cannot hang the test run.

The two jobs train the two families whose posterior layers do the most:
an inverse autoregressive flow (MADE networks' variables in the posterior
layer, Monte Carlo KL) and a low-rank Gaussian. The diagonal and
full-covariance families differ from the low-rank one only in how a Dense
output is read, and run under `MirroredStrategy` in `test_distribute.py`.
"""

import atexit
import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types

import numpy as np
import pytest
import tensorflow as tf

from tfp_vae import distribute
from tfp_vae import runs
from tfp_vae import training
from tfp_vae.config import ModelConfig
from tfp_vae.config import TrainConfig

import _test_data

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_WORKER = os.path.join(_REPO, 'tests', '_worker_main.py')
_NUM_WORKERS = 2
# Generous: each process imports TensorFlow and the machine may be busy. A
# process still running then is hung (e.g. in a collective whose peer died).
_PROCESS_TIMEOUT_SECONDS = 400
# Runs a command with one directory mounted read-only (a private mount
# namespace): the non-chief worker sees the chief's model directory live,
# and any write it attempts there fails (EROFS), root or not.
_READ_ONLY_PREFIX = (
    'unshare', '--mount', '--propagation', 'private', 'sh', '-c',
    'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"')
_EPOCHS = 3
_STEPS_PER_EPOCH = 10


_FAMILIES = {
    'iaf': dict(posterior='iaf', kl='mc', flow_steps=2,
                flow_hidden_units=(8,)),
    'low_rank': dict(posterior='low_rank', posterior_rank=1),
}


def _configs(model_dir, strategy, family):
  # jit_compile=False: XLA has no collective ops on CPU (see
  # test_xla_is_refused_for_replicas_on_cpus).
  return (ModelConfig(hidden_units=(32,), latent_dim=2, seed=3,
                      **_FAMILIES[family]),
          TrainConfig(dataset='binarized_mnist',
                      data_dir=_test_data.data_dir('binarized_mnist'),
                      max_train_examples=200, batch_size=20, epochs=_EPOCHS,
                      model_dir=model_dir, strategy=strategy,
                      jit_compile=False, steps_per_execution=1,
                      checkpoint_every_steps=1, seed=3))


def _spec(model_dir, family):
  model_config, train_config = _configs(model_dir, 'multi_worker', family)
  return json.dumps({'model': model_config.to_dict(),
                     'train': train_config.to_dict()})


def _free_ports(count):
  sockets = []
  try:
    for _ in range(count):  # Held open together, so the ports differ.
      sock = socket.socket()
      sock.bind(('127.0.0.1', 0))
      sockets.append(sock)
    return [sock.getsockname()[1] for sock in sockets]
  finally:
    for sock in sockets:
      sock.close()


@functools.lru_cache(maxsize=None)
def _can_mount_read_only():
  """Whether `_READ_ONLY_PREFIX` works here (it needs mount privileges)."""
  directory = tempfile.mkdtemp()
  try:
    result = subprocess.run(
        [*_READ_ONLY_PREFIX, directory, 'sh', '-c',
         f'! touch {directory}/probe 2>/dev/null'],
        capture_output=True, timeout=30, check=False)
    return result.returncode == 0
  except (OSError, subprocess.SubprocessError):
    return False
  finally:
    shutil.rmtree(directory, ignore_errors=True)


@functools.lru_cache(maxsize=None)
def _one_process_weights(family):
  """Trainable weights of the same run with the default strategy."""
  root = tempfile.mkdtemp()
  atexit.register(shutil.rmtree, root, ignore_errors=True)
  model_dir = os.path.join(root, 'one_process')
  result = training.train(*_configs(model_dir, 'default', family), verbose=0)
  return [w.numpy() for w in result.model.trainable_weights]


def _load(path):
  with np.load(path) as arrays:
    return {name: arrays[name] for name in arrays.files}


def _checkpoint_steps(checkpoint_dir):
  if not os.path.isdir(checkpoint_dir):
    return []
  return sorted(int(name[len('ckpt-'):-len('.index')])
                for name in os.listdir(checkpoint_dir)
                if name.startswith('ckpt-') and name.endswith('.index'))


class _Cluster:
  """Starts the workers of one job; `stop()` kills whatever still runs."""

  def __init__(self, root, model_dir, attempt, family):
    self.root = root
    ports = _free_ports(_NUM_WORKERS)
    self.processes = []
    self.log_paths = []
    self.weight_paths = []
    for index in range(_NUM_WORKERS):
      tf_config = {'cluster': {'worker': [f'127.0.0.1:{port}'
                                          for port in ports]},
                   'task': {'type': 'worker', 'index': index}}
      home = os.path.join(root, 'home')
      env = dict(os.environ, TF_CONFIG=json.dumps(tf_config),
                 TF_CPP_MIN_LOG_LEVEL='2', HOME=home, MPLCONFIGDIR=home,
                 PYTHONDONTWRITEBYTECODE='1')
      log_path = os.path.join(root, 'out', f'worker{index}-{attempt}.log')
      weight_path = os.path.join(root, 'out', f'worker{index}-{attempt}.npz')
      command = [sys.executable, _WORKER, _spec(model_dir, family),
                 weight_path]
      if index > 0 and _can_mount_read_only():
        command = [*_READ_ONLY_PREFIX, model_dir, *command]
      with open(log_path, 'w') as log:
        self.processes.append(subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root))
      self.log_paths.append(log_path)
      self.weight_paths.append(weight_path)

  def log(self, index):
    with open(self.log_paths[index]) as f:
      return f.read()

  def logs_tail(self):
    return '\n'.join(f'--- worker {i} ---\n{self.log(i)[-4000:]}'
                     for i in range(_NUM_WORKERS))

  def wait(self, deadline):
    """Return codes, or None for those still running at `deadline`."""
    codes = []
    for process in self.processes:
      try:
        codes.append(process.wait(timeout=max(0.1, deadline - time.time())))
      except subprocess.TimeoutExpired:
        codes.append(None)
    return codes

  def stop(self):
    for process in self.processes:
      if process.poll() is None:
        process.kill()
        process.wait()


@contextlib.contextmanager
def _cluster(root, model_dir, attempt, family):
  cluster = _Cluster(root, model_dir, attempt, family)
  try:
    yield cluster
  finally:
    cluster.stop()


@pytest.mark.usefixtures('dataset_files')
class MultiWorkerTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.root = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
    for name in ('out', 'home'):
      os.makedirs(os.path.join(self.root, name))
    # Exists (empty) before the job, so that it can be mounted read-only
    # for the non-chief.
    self.model_dir = os.path.join(self.root, 'run')
    os.makedirs(self.model_dir)

  def _finish(self, cluster):
    codes = cluster.wait(time.time() + _PROCESS_TIMEOUT_SECONDS)
    self.assertEqual(codes, [0] * _NUM_WORKERS,
                     f'workers did not all finish (None: hung, killed after '
                     f'{_PROCESS_TIMEOUT_SECONDS}s):\n{cluster.logs_tail()}')
    return [_load(path) for path in cluster.weight_paths]

  def _check_identical_and_right(self, worker_arrays, family):
    chief, other = worker_arrays
    self.assertEqual(list(chief), list(other))
    for name in chief:
      self.assertTrue(np.array_equal(chief[name], other[name]),
                      f'{name} differs between the workers')
    # The step counter says the whole run was trained.
    iterations = [a for n, a in chief.items() if n.endswith('iteration:0')]
    self.assertEqual([int(i) for i in iterations],
                     [_EPOCHS * _STEPS_PER_EPOCH])
    # Two workers compute what one process does, up to the order of float
    # additions in the gradient all-reduce (30 Adam steps move some weights
    # by ~1e-6 that way).
    trainable = [a for n, a in chief.items() if ':trainable:' in n]
    expected = _one_process_weights(family)
    self.assertLen(trainable, len(expected))
    for got, want in zip(trainable, expected):
      self.assertAllClose(got, want, rtol=1e-5, atol=5e-6)
    # The chief's final model is the workers' model.
    loaded = runs.load_trained_model(self.model_dir, source='final')
    for got, want in zip(loaded.model.trainable_weights, trainable):
      self.assertTrue(np.array_equal(got.numpy(), want))

  def _check_only_the_chief_wrote(self):
    # Where it could be arranged, the non-chief saw the model directory
    # read-only, so that a write there would have failed it (and _finish).
    if not _can_mount_read_only():
      print('Note: no mount namespace here; the non-chief worker saw the '
            'model directory writable.')
    expected = {runs.CONFIG_FILE, runs.CHECKPOINT_DIR,
                runs.HISTORY_FILE, runs.METRICS_CSV_FILE,
                runs.FINAL_METRICS_FILE, runs.MODEL_FILE,
                runs.TENSORBOARD_DIR, runs.PLOTS_DIR}
    # ('.tmp-*': what a killed chief was writing; never read.)
    self.assertEqual({name for name in os.listdir(self.model_dir)
                      if not name.startswith('.tmp-')}, expected)
    with open(os.path.join(self.model_dir, runs.HISTORY_FILE)) as f:
      self.assertEqual([row['epoch'] for row in json.load(f)],
                       list(range(1, _EPOCHS + 1)))

  def test_two_workers_end_identical_and_only_the_chief_writes(self):
    with _cluster(self.root, self.model_dir, 0, 'iaf') as cluster:
      _one_process_weights('iaf')  # Meanwhile.
      worker_arrays = self._finish(cluster)
    self._check_identical_and_right(worker_arrays, 'iaf')
    self._check_only_the_chief_wrote()

  def test_after_a_worker_is_killed_both_restart_from_the_last_checkpoint(
      self):
    checkpoint_dir = os.path.join(self.model_dir, runs.CHECKPOINT_DIR)
    with _cluster(self.root, self.model_dir, 0, 'low_rank') as cluster:
      deadline = time.time() + _PROCESS_TIMEOUT_SECONDS
      while (max(_checkpoint_steps(checkpoint_dir), default=0) < 5 and
             time.time() < deadline and
             all(p.poll() is None for p in cluster.processes)):
        time.sleep(0.05)
      steps_at_kill = _checkpoint_steps(checkpoint_dir)
      self.assertTrue(all(p.poll() is None for p in cluster.processes),
                      f'a worker ended early:\n{cluster.logs_tail()}')
      self.assertGreaterEqual(max(steps_at_kill, default=0), 5,
                              cluster.logs_tail())
      cluster.processes[1].send_signal(signal.SIGKILL)
      # The chief loses its peer inside a collective: TensorFlow's
      # coordination service may end it with an error, or it hangs. Either
      # way it is killed after a while, as a cluster manager would.
      cluster.wait(time.time() + 30)
    self.assertLess(max(steps_at_kill), _EPOCHS * _STEPS_PER_EPOCH)
    self.assertFalse(os.path.exists(
        os.path.join(self.model_dir, runs.MODEL_FILE)))

    with _cluster(self.root, self.model_dir, 1, 'low_rank') as cluster:
      _one_process_weights('low_rank')  # Meanwhile.
      worker_arrays = self._finish(cluster)
      chief_log = cluster.log(0)
    self.assertRegex(chief_log, r'Resuming from \S+ckpt-\d+')
    resumed_step = int(chief_log.split('Resuming from ')[1].split(
        'ckpt-')[1].split(':')[0])
    self.assertGreaterEqual(resumed_step, 5)
    self._check_identical_and_right(worker_arrays, 'low_rank')
    self._check_only_the_chief_wrote()


class SupportsJitCompileTest(tf.test.TestCase):
  """XLA cannot compile a step replicated over CPUs: refuse, don't crash."""

  def _strategy(self, num_replicas, devices):
    return types.SimpleNamespace(
        num_replicas_in_sync=num_replicas,
        extended=types.SimpleNamespace(worker_devices=devices))

  def test_xla_is_refused_for_replicas_on_cpus(self):
    # Two CPU workers of a MultiWorkerMirroredStrategy, one device each.
    self.assertFalse(distribute.supports_jit_compile(self._strategy(
        2, ('/job:worker/replica:0/task:0/device:CPU:0',))))
    # MirroredStrategy over two logical CPUs.
    self.assertFalse(distribute.supports_jit_compile(self._strategy(
        2, ('/job:localhost/replica:0/task:0/device:CPU:0',
            '/job:localhost/replica:0/task:0/device:CPU:1'))))

  def test_xla_is_allowed_for_one_replica_or_gpus(self):
    self.assertTrue(distribute.supports_jit_compile(self._strategy(
        1, ('/job:localhost/replica:0/task:0/device:CPU:0',))))
    self.assertTrue(distribute.supports_jit_compile(self._strategy(
        2, ('/job:worker/replica:0/task:0/device:GPU:0',))))


if __name__ == '__main__':
  tf.test.main()
