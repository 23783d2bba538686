"""The inference gap of each posterior family, split in two, as stacked bars.

One bar per family: the approximation gap log p(x) - ELBO[q*] at the bottom,
the amortization gap ELBO[q*] - ELBO[q] stacked on it, so the bar's height
is the whole inference gap log p(x) - ELBO[q] (`evaluation.gaps`; Cremer, Li
& Duvenaud 2018).
"""

import numpy as np

from tfp_vae.plotting import _canvas

__all__ = ['plot_gap_bars']

# The two parts, bottom first: (name, colour, label).
_PARTS = (
    ('approximation', 'tab:blue', 'approximation gap  log p(x) - ELBO[q*]'),
    ('amortization', 'tab:orange', 'amortization gap  ELBO[q*] - ELBO[q]'),
)


def _as_values(values, name, num_families, allow_none=False):
  if values is None and allow_none:
    return None
  values = np.asarray(values, np.float64)
  if values.shape != (num_families,) or not np.all(np.isfinite(values)):
    raise ValueError(f'`{name}` must hold one finite number per family '
                     f'({num_families}); got {values.tolist()!r}.')
  return values


def _gap_bars_figure(families, approximation_gaps, amortization_gaps,
                     approximation_errors, amortization_errors, title):
  """The figure of `plot_gap_bars`, unsaved."""
  families = [str(family) for family in families]
  if not families:
    raise ValueError('`families` must name at least one family.')
  num_families = len(families)
  heights = {
      'approximation': _as_values(approximation_gaps, 'approximation_gaps',
                                  num_families),
      'amortization': _as_values(amortization_gaps, 'amortization_gaps',
                                 num_families)}
  errors = {
      'approximation': _as_values(approximation_errors,
                                  'approximation_errors', num_families, True),
      'amortization': _as_values(amortization_errors, 'amortization_errors',
                                 num_families, True)}
  # Wide enough for the legend and title with two families.
  figure = _canvas.new_figure(max(5.5, 1.5 + 1.2 * num_families), 4.0)
  axes = figure.subplots()
  positions = np.arange(num_families)
  bottom = np.zeros(num_families)
  for part, color, label in _PARTS:
    axes.bar(positions, heights[part], bottom=bottom, color=color,
             label=label, width=0.6)
    top = bottom + heights[part]
    if errors[part] is not None:
      axes.errorbar(positions, top, yerr=errors[part], fmt='none',
                    ecolor='black', capsize=4, linewidth=1)
    # A negative part (Monte Carlo noise around 0) stacks down from the
    # bottom; the next part still starts where this one ends.
    bottom = top
  for position, total in zip(positions, bottom):
    axes.annotate(f'{total:.2f}', (position, max(total, 0.)),
                  textcoords='offset points', xytext=(0, 3), ha='center',
                  fontsize=8)
  axes.axhline(0., color='0.3', linewidth=0.8)
  axes.set_xticks(positions, families)
  axes.set_ylabel('nats per example')
  axes.set_title(title or 'Inference gap log p(x) - ELBO[q], split in two',
                 fontsize=10)
  axes.legend(fontsize=7, loc='upper left')
  axes.margins(y=0.15)
  return figure


def plot_gap_bars(families, approximation_gaps, amortization_gaps, path,
                  approximation_errors=None, amortization_errors=None,
                  title=None):
  """Saves one stacked bar per family: approximation + amortization gap.

  Args:
    families: sequence of family names, e.g. `['diag', 'full_cov']`.
    approximation_gaps: `[F]` nats, the mean approximation gap per family.
    amortization_gaps: `[F]` nats, the mean amortization gap per family.
    path: where to write the PNG.
    approximation_errors, amortization_errors: optional `[F]` half-widths
      (e.g. of 95% intervals, or standard errors) drawn as error bars at
      the top of each part.
    title: optional figure title.

  Returns:
    `path`.

  Raises:
    ValueError: for no families, or values that are not one finite number
      per family.
  """
  figure = _gap_bars_figure(families, approximation_gaps, amortization_gaps,
                            approximation_errors, amortization_errors, title)
  return _canvas.save_figure(figure, path)
