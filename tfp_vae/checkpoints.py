"""Resuming from a run's checkpoints, whatever a kill or a disk left behind.

`training.train` saves a `tf.train.Checkpoint` (model, optimizer and the
protocol's state) through a `tf.train.CheckpointManager`; a resumed run and
`runs.load_trained_model` restore the newest one that reads back whole.

How TensorFlow writes checkpoint `ckpt-<step>` (`MergeV2Checkpoints`, read
in TensorFlow's `tensor_bundle.cc`), and what a kill at each point leaves:

```none
1. write the shards into  ckpt-<step>_temp/       _temp/ only
2. rename the data files to ckpt-<step>.data-*    _temp/ + data
3. write ckpt-<step>.index in place               _temp/ + data + a torn index
4. delete ckpt-<step>_temp/                        a whole checkpoint
5. (CheckpointManager) rewrite the `checkpoint`    a whole checkpoint the state
   state file to list ckpt-<step>                  file does not list yet
```

So an unreadable checkpoint beside its own `_temp/` directory is a write
that was cut short: it never held anything the run can lose. When it is the
only checkpoint (a kill during a run's first save), the run starts afresh.
Any other unreadable checkpoint is damage: it is skipped for an older one,
and when none is readable, restoring is an error that deletes nothing.
"""

import os

from absl import logging
import tensorflow as tf

__all__ = ['restore_newest_readable_checkpoint']

# TensorFlow's staging directory for checkpoint `<prefix>`: `<prefix>_temp`.
_STAGING_SUFFIX = '_temp'


def _checkpoint_paths_newest_first(checkpoint_dir):
  """Checkpoint prefixes in `checkpoint_dir`, highest step first.

  The `checkpoint` state file lists the kept ones; the `ckpt-<step>.index`
  files on disk are added, so that a damaged or missing state file (or one
  naming another directory) never makes a resume silently start afresh.
  """
  try:
    state = tf.train.get_checkpoint_state(checkpoint_dir)
  except ValueError as error:  # E.g. an empty state file.
    logging.warning('Ignoring the damaged checkpoint state file in %s (%s); '
                    'looking for checkpoint files instead.', checkpoint_dir,
                    error)
    state = None
  paths = set()
  if state is not None:
    paths.update(os.path.join(checkpoint_dir, os.path.basename(p)) for p in
                 [*state.all_model_checkpoint_paths,
                  state.model_checkpoint_path])
  paths.update(p[:-len('.index')] for p in tf.io.gfile.glob(
      os.path.join(checkpoint_dir, 'ckpt-*.index')))

  def step(path):
    suffix = path.rsplit('-', 1)[-1]
    return int(suffix) if suffix.isdigit() else -1
  return sorted(paths, key=step, reverse=True)


def _write_was_cut_short(path):
  """Whether TensorFlow's staging directory of checkpoint `path` is left."""
  return tf.io.gfile.isdir(path + _STAGING_SUFFIX)


def _restore_optional(path, name, trackable):
  """Restores `trackable` from the checkpoint child `name`, if it has one.

  Returns:
    Whether the checkpoint holds `name`.
  """
  if not any(key.startswith(name + '/')
             for key, _ in tf.train.list_variables(path)):
    return False
  tf.train.Checkpoint(**{name: trackable}).restore(path).expect_partial()
  return True


def restore_newest_readable_checkpoint(checkpoint, checkpoint_dir,
                                       optional=None):
  """Restores the newest checkpoint that reads back whole.

  A checkpoint whose files are missing, truncated or corrupt (a write cut
  short, a damaged disk) is skipped with a warning that names it, and the
  next older one is tried.

  Args:
    checkpoint: a `tf.train.Checkpoint` of what must be restored: every
      object it reaches must be in the checkpoint (which may hold more).
    checkpoint_dir: the directory of the checkpoints.
    optional: `{name: trackable}` that some checkpoints hold beside
      `checkpoint`'s children (state that a setting, or a newer version of
      the package, adds): each is restored, as far as the checkpoint holds
      it, where the checkpoint has it, and otherwise left as it is, with a
      warning.

  Returns:
    The restored checkpoint's path, or None if there was none to restore:
    no checkpoint, or only writes that were cut short (see the module's
    docstring).

  Raises:
    ValueError: if checkpoints exist but none of them can be read, and not
      all of them are writes that were cut short.
  """
  failures = []
  cut_short = []
  for path in _checkpoint_paths_newest_first(checkpoint_dir):
    try:
      checkpoint.restore(path).assert_existing_objects_matched(
      ).expect_partial()
      missing = [name for name, trackable in (optional or {}).items()
                 if not _restore_optional(path, name, trackable)]
    # A truncated .data file makes TensorFlow's C++ reader raise IndexError
    # (or RuntimeError), not an OpError.
    except (tf.errors.OpError, ValueError, AssertionError, IndexError,
            RuntimeError) as error:
      message = str(error).splitlines()[0][:200]
      if _write_was_cut_short(path):
        cut_short.append(path)
        message += f'; its write was cut short, {path}{_STAGING_SUFFIX} is left'
      logging.warning('Checkpoint %s cannot be read (%s); trying an older '
                      'one.', path, message)
      failures.append(f'{path}: {message}')
      continue
    if failures:
      logging.warning('Resumed from %s, the newest readable checkpoint.',
                      path)
    for name in missing:
      logging.warning('Checkpoint %s holds no %s state (the run was started '
                      'without it); it starts afresh.', path, name)
    return path
  if len(cut_short) < len(failures):
    raise ValueError('No checkpoint in %s can be read:\n  %s' %
                     (checkpoint_dir, '\n  '.join(failures)))
  if cut_short:
    logging.warning('No checkpoint in %s was written whole (the writes of '
                    '%s were cut short): there is nothing to resume from.',
                    checkpoint_dir, ', '.join(cut_short))
  return None
