"""Tests of tfp_vae.compilation_cache: the shared persistent XLA cache.

What is checked: a process's view holds the published entries only (hard
links, so reading them copies nothing), it publishes what it compiled in
one step per entry and never overwrites an entry, views of ended processes
and the oldest entries go, a bad directory is an error naming it, and two
real processes share one compilation with the same numbers.
"""

import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
from unittest import mock

from tfp_vae import compilation_cache

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_FLAG = '--tf_xla_persistent_cache_directory'


def _write(path, text):
  with open(path, 'w') as f:
    f.write(text)


def _read(path):
  with open(path) as f:
    return f.read()


class CompilationCacheTest(unittest.TestCase):

  def setUp(self):
    super().setUp()
    self.root = tempfile.mkdtemp()
    self.shared = os.path.join(self.root, compilation_cache.cache_key())
    os.makedirs(self.shared)
    # One process enables one cache: each test starts as a fresh process.
    state = dict(compilation_cache._state)
    self.addCleanup(compilation_cache._state.update, state)
    compilation_cache._state.update(view=None, shared=None, at_exit=True)
    environment = mock.patch.dict(os.environ)
    environment.start()
    self.addCleanup(environment.stop)
    os.environ.pop('TF_XLA_FLAGS', None)

  def test_the_view_links_the_published_entries_and_nothing_else(self):
    _write(os.path.join(self.shared, 'a.pb'), 'entry a')
    _write(os.path.join(self.shared, '.publishing-x.pb'), 'half an entry')
    _write(os.path.join(self.shared, 'notes.txt'), 'not an entry')
    os.environ['TF_XLA_FLAGS'] = '--tf_xla_auto_jit=0'

    view = compilation_cache.enable(self.root)

    self.assertEqual(os.path.dirname(view), self.shared)
    self.assertEqual(os.listdir(view), ['a.pb'])
    self.assertTrue(os.path.samefile(os.path.join(view, 'a.pb'),
                                     os.path.join(self.shared, 'a.pb')))
    self.assertEqual(os.environ['TF_XLA_FLAGS'],
                     f'--tf_xla_auto_jit=0 {_FLAG}={view}')

  def test_publish_adds_new_entries_once_and_keeps_the_existing_ones(self):
    _write(os.path.join(self.shared, 'a.pb'), 'entry a')
    view = compilation_cache.enable(self.root)
    _write(os.path.join(view, 'b.pb'), 'entry b')

    self.assertEqual(compilation_cache.publish(), 1)
    self.assertEqual(compilation_cache.publish(), 0)
    self.assertEqual(_read(os.path.join(self.shared, 'b.pb')), 'entry b')
    self.assertEqual(_read(os.path.join(self.shared, 'a.pb')), 'entry a')

  def test_an_entry_another_process_published_first_is_kept(self):
    view = compilation_cache.enable(self.root)
    _write(os.path.join(view, 'c.pb'), 'ours')
    _write(os.path.join(self.shared, 'c.pb'), 'theirs')

    self.assertEqual(compilation_cache.publish(), 0)
    self.assertEqual(_read(os.path.join(self.shared, 'c.pb')), 'theirs')

  def test_without_hard_links_an_entry_is_copied_then_renamed_into_place(self):
    view = compilation_cache.enable(self.root)
    _write(os.path.join(view, 'd.pb'), 'entry d')
    with mock.patch.object(os, 'link', side_effect=PermissionError('no')):
      self.assertEqual(compilation_cache.publish(), 1)
    self.assertEqual(_read(os.path.join(self.shared, 'd.pb')), 'entry d')
    self.assertEqual(sorted(n for n in os.listdir(self.shared)
                            if not n.startswith('.process-')), ['d.pb'])

  def test_at_exit_the_view_is_published_and_removed(self):
    view = compilation_cache.enable(self.root)
    _write(os.path.join(view, 'e.pb'), 'entry e')
    compilation_cache._publish_and_remove_view()
    self.assertFalse(os.path.exists(view))
    self.assertEqual(_read(os.path.join(self.shared, 'e.pb')), 'entry e')
    compilation_cache._publish_and_remove_view()  # Twice is harmless.

  def test_views_of_ended_processes_go_and_live_ones_stay(self):
    host = socket.gethostname()
    ended = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                           capture_output=True, text=True, check=True)
    ended_pid = int(ended.stdout)
    views = {
        'ended': f'.process-{host}-{ended_pid}-abc',
        'alive': f'.process-{host}-{os.getpid()}-def',
        'old_elsewhere': '.process-other-host-12-ghi',
        'new_elsewhere': '.process-other-host-13-jkl',
    }
    for name in views.values():
      os.makedirs(os.path.join(self.shared, name))
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(os.path.join(self.shared, views['old_elsewhere']),
             (two_days_ago, two_days_ago))

    compilation_cache.enable(self.root)

    left = set(os.listdir(self.shared))
    self.assertNotIn(views['ended'], left)
    self.assertNotIn(views['old_elsewhere'], left)
    self.assertIn(views['alive'], left)
    self.assertIn(views['new_elsewhere'], left)

  def test_half_copied_entries_of_a_failed_publication_go_when_old(self):
    old = os.path.join(self.shared, '.publishing-old.pb')
    new = os.path.join(self.shared, '.publishing-new.pb')
    for path in (old, new):
      _write(path, 'half')
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days_ago, two_days_ago))
    view = compilation_cache.enable(self.root)
    self.assertFalse(os.path.exists(old))
    self.assertTrue(os.path.exists(new))
    self.assertEqual(os.listdir(view), [])

  def test_off_when_the_tensorflow_version_cannot_be_read(self):
    with mock.patch.object(compilation_cache, '_tensorflow_version',
                           return_value=None):
      self.assertIsNone(compilation_cache.cache_key())
      self.assertIsNone(compilation_cache.enable(self.root))
    self.assertNotIn('TF_XLA_FLAGS', os.environ)

  def test_the_oldest_entries_go_when_the_cache_outgrows_its_bound(self):
    for age, name in enumerate(['new.pb', 'middle.pb', 'old.pb']):
      path = os.path.join(self.shared, name)
      _write(path, 'x' * 100)
      then = time.time() - 1000 * age
      os.utime(path, (then, then))
    with mock.patch.object(compilation_cache, 'MAX_CACHE_BYTES', 250):
      view = compilation_cache.enable(self.root)
    self.assertEqual(sorted(os.listdir(view)), ['middle.pb', 'new.pb'])

  def test_off_for_an_empty_root_or_a_cache_the_user_set(self):
    self.assertIsNone(compilation_cache.enable(''))
    self.assertNotIn('TF_XLA_FLAGS', os.environ)
    os.environ['TF_XLA_FLAGS'] = f'{_FLAG}=/elsewhere'
    self.assertIsNone(compilation_cache.enable(self.root))
    self.assertEqual(os.environ['TF_XLA_FLAGS'], f'{_FLAG}=/elsewhere')
    self.assertEqual(compilation_cache.publish(), 0)

  def test_the_default_root_follows_the_environment(self):
    os.environ[compilation_cache.ROOT_ENVIRONMENT_VARIABLE] = '/some/where'
    self.assertEqual(compilation_cache.default_root(), '/some/where')
    del os.environ[compilation_cache.ROOT_ENVIRONMENT_VARIABLE]
    self.assertEqual(
        compilation_cache.default_root(),
        os.path.join(os.path.expanduser('~'), '.cache', 'tfp_vae', 'xla'))

  def test_an_unusable_root_is_an_error_naming_it(self):
    not_a_directory = os.path.join(self.root, 'file')
    _write(not_a_directory, '')
    with self.assertRaises(OSError) as raised:
      compilation_cache.enable(not_a_directory)
    self.assertIn(not_a_directory, str(raised.exception))
    self.assertIn('--xla_cache_dir', str(raised.exception))
    self.assertNotIn('TF_XLA_FLAGS', os.environ)

  def test_the_key_names_the_tensorflow_version_and_the_thread_count(self):
    os.environ['TF_NUM_INTRAOP_THREADS'] = '3'
    key = compilation_cache.cache_key()
    self.assertRegex(key, r'^tf\d+\.\d+\S*-\w+-[0-9a-f]{12}-threads3$')
    os.environ['TF_NUM_INTRAOP_THREADS'] = '1'
    self.assertNotEqual(compilation_cache.cache_key(), key)


_COMPILE_ONCE = textwrap.dedent("""
    import sys
    from tfp_vae import compilation_cache
    compilation_cache.enable(sys.argv[1])
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def f(x):
      for _ in range(4):
        x = tf.tanh(x @ tf.transpose(x))
      return tf.reduce_sum(x)

    x = tf.reshape(tf.range(64, dtype=tf.float32) / 64., [8, 8])
    print(repr(float(f(x))), compilation_cache.publish())
""")


class SharedCompilationTest(unittest.TestCase):
  """Two processes: the second loads what the first compiled."""

  def test_the_second_process_loads_the_first_ones_executable(self):
    root = tempfile.mkdtemp()
    environment = dict(os.environ, PYTHONPATH=_REPO, TF_CPP_MIN_LOG_LEVEL='0',
                       TF_CPP_VMODULE='device_executable_persistor=1')
    environment.pop('TF_XLA_FLAGS', None)
    outputs, logs = [], []
    for _ in range(2):
      process = subprocess.run([sys.executable, '-c', _COMPILE_ONCE, root],
                               capture_output=True, text=True,
                               env=environment, timeout=300)
      self.assertEqual(process.returncode, 0, process.stderr[-3000:])
      outputs.append(process.stdout.split())
      logs.append(process.stderr)
    (first_value, first_published), (second_value, second_published) = outputs
    self.assertEqual(first_published, '1')
    self.assertEqual(second_published, '0')
    self.assertEqual(first_value, second_value)
    self.assertNotIn('Loading cached entry', logs[0])
    self.assertIn('Loading cached entry', logs[1])
    # Both views are gone at exit; the one entry stays.
    shared, = os.listdir(root)
    self.assertEqual(len(os.listdir(os.path.join(root, shared))), 1)


if __name__ == '__main__':
  unittest.main()
