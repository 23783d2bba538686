"""Tests for tfp_vae.plotting.gap_bars: the stacked bars of the two gaps."""

import os

import numpy as np
import tensorflow as tf

from tfp_vae.plotting import gap_bars

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


class PlotGapBarsTest(tf.test.TestCase):

  def test_writes_a_png_with_and_without_error_bars(self):
    for errors in (None, [0.1, 0.2]):
      path = os.path.join(self.get_temp_dir(), f'gaps_{errors is None}.png')
      self.assertEqual(gap_bars.plot_gap_bars(
          ['diag', 'full_cov'], [1.4, 0.9], [4.6, 3.1], path,
          approximation_errors=errors, amortization_errors=errors), path)
      with open(path, 'rb') as f:
        self.assertEqual(f.read(8), _PNG_SIGNATURE)

  def test_bars_stack_to_the_inference_gap(self):
    # Approximation from 0, amortization on top of it: the second part's top
    # is the inference gap, a negative part (noise around 0) included.
    approximation, amortization = np.array([1.5, 0.5]), np.array([2., -0.1])
    figure = gap_bars._gap_bars_figure(  # pylint: disable=protected-access
        ['a', 'b'], approximation, amortization, None, None, None)
    bars = figure.axes[0].patches  # [approximation a, b, amortization a, b]
    self.assertLen(bars, 4)
    self.assertAllClose([bar.get_y() for bar in bars], [0., 0., 1.5, 0.5])
    self.assertAllClose([bar.get_height() for bar in bars],
                        [1.5, 0.5, 2., -0.1])
    self.assertAllClose([bars[2].get_y() + bars[2].get_height(),
                         bars[3].get_y() + bars[3].get_height()],
                        approximation + amortization)

  def test_bad_values_are_refused_by_name(self):
    path = os.path.join(self.get_temp_dir(), 'unused.png')
    with self.assertRaisesRegex(ValueError, 'families'):
      gap_bars.plot_gap_bars([], [], [], path)
    with self.assertRaisesRegex(ValueError, 'amortization_gaps'):
      gap_bars.plot_gap_bars(['a'], [1.], [1., 2.], path)
    with self.assertRaisesRegex(ValueError, 'approximation_errors'):
      gap_bars.plot_gap_bars(['a'], [1.], [1.], path,
                             approximation_errors=[np.nan])


if __name__ == '__main__':
  tf.test.main()
