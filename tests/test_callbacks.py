"""Tests of tfp_vae.callbacks: TensorBoard epochs, upscaling, signals."""

import io
import os
import signal
import tempfile

import numpy as np
import tensorflow as tf

from tfp_vae import callbacks
from tfp_vae._keras import keras


class _Stopper:
  interrupted_by = None


class UpscaledTest(tf.test.TestCase):

  def test_each_pixel_becomes_a_block(self):
    grid = np.arange(6, dtype=np.float32).reshape(1, 2, 3, 1)
    result = callbacks.upscaled(grid, factor=4)
    self.assertEqual(result.shape, (1, 8, 12, 1))
    for row in range(2):
      for column in range(3):
        block = result[0, 4 * row:4 * row + 4, 4 * column:4 * column + 4, 0]
        self.assertAllEqual(block, np.full((4, 4), grid[0, row, column, 0]))


class StopOnSignalTest(tf.test.TestCase):

  def test_records_the_signal_then_a_second_one_interrupts(self):
    stopper = _Stopper()
    before = signal.getsignal(signal.SIGINT)
    with callbacks.StopOnSignal(stopper):
      os.kill(os.getpid(), signal.SIGTERM)
      self.assertEqual(stopper.interrupted_by, 'SIGTERM')
      with self.assertRaises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
    self.assertIs(signal.getsignal(signal.SIGINT), before)


class EpochAlignedTensorBoardTest(tf.test.TestCase):

  def test_epoch_scalars_are_numbered_from_one(self):
    log_dir = tempfile.mkdtemp(dir=self.get_temp_dir())
    model = keras.Sequential([keras.layers.Dense(1, input_shape=(2,))])
    model.compile(optimizer='sgd', loss='mse')
    model.fit(np.zeros((4, 2)), np.zeros((4, 1)), epochs=3, verbose=0,
              callbacks=[callbacks.EpochAlignedTensorBoard(log_dir)])
    steps = []
    train_dir = os.path.join(log_dir, 'train')
    for name in os.listdir(train_dir):
      for event in tf.compat.v1.train.summary_iterator(
          os.path.join(train_dir, name)):
        steps += [event.step for value in event.summary.value
                  if value.tag == 'epoch_loss']
    # history.json's epochs: 1, 2, 3.
    self.assertEqual(sorted(steps), [1, 2, 3])



class ProgressLoggerTest(tf.test.TestCase):

  def _fit(self, bar):
    stream = io.StringIO()
    model = keras.Sequential([keras.layers.Dense(1, input_shape=(2,))])
    model.compile(optimizer='sgd', loss='mse')
    # Targets of -300: a negative loss-like number of a VAE's size.
    model.fit(np.ones((8, 2)), np.full((8, 1), -300.0), batch_size=2,
              epochs=2, verbose=0, validation_data=(np.ones((2, 2)),
                                                    np.zeros((2, 1))),
              callbacks=[callbacks.ProgressLogger(bar=bar, stream=stream)])
    return stream.getvalue()

  def test_one_line_per_epoch_with_two_decimals(self):
    lines = self._fit(bar=False).splitlines()
    self.assertLen(lines, 2)
    for epoch, line in enumerate(lines, start=1):
      self.assertRegex(line, rf'^Epoch {epoch}/2: \d+:\d\d, [\d.]+ steps/s; '
                       r'loss \d+\.\d\d, val_loss \d+\.\d\d$')
    self.assertNotIn('\r', ''.join(lines))

  def test_learning_rate_keeps_three_significant_digits(self):
    self.assertEqual(
        callbacks._metrics_text({'loss': 95.123, 'learning_rate': 5e-4,
                                 'val_elbo': -97.5}),
        'loss 95.12, learning_rate 0.0005, val_elbo -97.50')

  def test_bar_rewrites_its_line_with_steps_per_second_and_eta(self):
    text = self._fit(bar=True)
    updates = text.split('\r')
    # 4 batches per epoch, a rewrite at each, and each epoch's last line.
    self.assertLen([u for u in updates if '] ' in u], 8)
    self.assertRegex(text, r'\[=+\.*\] 2/4 [\d.]+ steps/s ETA \d+:\d\d '
                     r'loss \d+\.\d\d')
    self.assertEqual(text.count('\n'), 2)


if __name__ == '__main__':
  tf.test.main()
