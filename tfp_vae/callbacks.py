"""Pieces of `training.train`'s `fit` that concern what a user sees.

  EpochAlignedTensorBoard  TensorBoard with epochs counted from 1, as in
                           history.json
  upscaled                 nearest-neighbour upscaling of summary images
  StopOnSignal             SIGINT / SIGTERM recorded for a clean stop

The bookkeeping callback (checkpoints, metric files) stays in `training`,
which owns the order of its steps.
"""

import signal
import threading

import numpy as np

from tfp_vae._keras import keras

__all__ = ['EpochAlignedTensorBoard', 'upscaled', 'StopOnSignal']


class EpochAlignedTensorBoard(keras.callbacks.TensorBoard):
  """Keras's TensorBoard callback with epochs numbered from 1.

  Keras logs the epoch scalars at the 0-based epoch index; history.json,
  metrics.csv, the image summaries and the progress lines count epochs
  from 1. Shifting here makes TensorBoard's epoch axis read the same.
  """

  def on_epoch_end(self, epoch, logs=None):
    super().on_epoch_end(epoch + 1, logs)


# Nearest-neighbour upscaling of TensorBoard images: 28 x 28 tiles are too
# small to read at TensorBoard's default zoom, and interpolation would blur
# binary pixels.
SUMMARY_IMAGE_UPSCALE = 4


def upscaled(grid, factor=SUMMARY_IMAGE_UPSCALE):
  """Repeats each pixel of a `[1, H, W, C]` grid into a factor x factor block.

  Returns:
    Array `[1, H * factor, W * factor, C]` of `grid`'s dtype.
  """
  return np.repeat(np.repeat(grid, factor, axis=1), factor, axis=2)


class StopOnSignal:
  """Records SIGINT and SIGTERM in `stopper.interrupted_by` while active.

  A context manager around `fit`. The handler only records the signal's
  name: `stopper` (training's bookkeeping callback) saves a checkpoint and
  stops at the next batch end, an execution boundary. A second signal while
  that is pending raises `KeyboardInterrupt` at once, as Python's default
  would. Installed only in the main thread, where Python delivers signals;
  the previous handlers come back on exit.
  """

  _SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self, stopper):
    self._stopper = stopper
    self._previous = {}

  def _handle(self, signum, frame):
    del frame  # Unused.
    if self._stopper.interrupted_by:
      raise KeyboardInterrupt
    self._stopper.interrupted_by = signal.Signals(signum).name

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for signum in self._SIGNALS:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc_info):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    return False
