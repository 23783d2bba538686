"""Learning curves: per-epoch metrics of one run, or of several over seeds.

  `plot_learning_curves`             train vs validation curves of one run
  `plot_learning_curves_comparison`  several runs (each over seeds) overlaid

Each writes one PNG to `path` (any `tf.io.gfile` path) and returns `path`.
"""

import numpy as np

from tfp_vae.plotting import _canvas

__all__ = ['plot_learning_curves', 'plot_learning_curves_comparison']

_NATS_LABEL = 'nats per example'


# What each metric `VariationalAutoencoder` reports means, for subplot titles.
_METRIC_DESCRIPTIONS = {
    'loss': 'loss (training objective)',
    'elbo': 'ELBO',
    'kl': 'KL(q(z|x) || p(z)) (rate)',
    'nll': '-E_q[log p(x|z)] (distortion)',
    'iwae': 'IWAE bound',
}


def _as_history_dict(history):
  """A Keras `History` or a dict of per-epoch lists -> dict of arrays."""
  history = getattr(history, 'history', history)
  if not isinstance(history, dict):
    raise ValueError(f'history must be a dict of per-epoch lists (or a Keras '
                     f'History); got {type(history).__name__}.')
  return {key: np.asarray(values, np.float64).reshape(-1)
          for key, values in history.items()}


def _as_metric_list(metrics, argument_name):
  metrics = [metrics] if isinstance(metrics, str) else list(metrics)
  if not metrics:
    raise ValueError(f'{argument_name} must name at least one metric.')
  return metrics


def _metric_title(metric):
  prefix = 'validation ' if metric.startswith('val_') else ''
  base = metric[len('val_'):] if prefix else metric
  return prefix + _METRIC_DESCRIPTIONS.get(base, base)


def plot_learning_curves(history, path, metrics=('loss', 'kl', 'nll')):
  """Saves train and validation curves over epochs, one subplot per metric.

  Args:
    history: dict `{name: [value per epoch]}`, as `model.fit(...).history`
      returns (a Keras `History` is accepted too), e.g. with keys 'loss',
      'kl', 'nll', 'elbo' and their 'val_' versions.
    path: where to write the PNG.
    metrics: Python `str` or sequence of metric names (without 'val_').
      Metrics absent from `history` are skipped; a metric without a 'val_'
      entry is plotted for training only. Default ('loss', 'kl', 'nll').

  Returns:
    `path`.

  Raises:
    ValueError: if none of `metrics` is in `history` (naming what is).
  """
  history = _as_history_dict(history)
  metrics = [m for m in _as_metric_list(metrics, 'metrics') if m in history]
  if not metrics:
    raise ValueError(f'None of the requested metrics is in history; it has '
                     f'{sorted(history)}.')
  figure = _canvas.new_figure(4.2 * len(metrics), 3.6)
  for axes, metric in zip(
      figure.subplots(1, len(metrics), squeeze=False)[0], metrics):
    train = history[metric]
    axes.plot(np.arange(1, len(train) + 1), train, marker='.', label='train')
    validation = history.get('val_' + metric)
    if validation is not None:
      axes.plot(np.arange(1, len(validation) + 1), validation, marker='.',
                label='validation')
    axes.set_title(_metric_title(metric))
    axes.set_xlabel('epoch')
    axes.set_ylabel(_NATS_LABEL)
    axes.grid(alpha=0.3)
    axes.legend()
  return _canvas.save_figure(figure, path)


def plot_learning_curves_comparison(histories_by_name, path,
                                    metric='val_elbo'):
  """Saves the learning curves of several runs overlaid, one subplot per metric.

  Each run may have been repeated over seeds: its curve is then the mean over
  seeds at each epoch, with a band from the minimum to the maximum. Runs of
  different lengths (early stopping) are averaged over the seeds that reached
  each epoch.

  Args:
    histories_by_name: dict `{name: history}` or `{name: [history, ...]}`
      (one history per seed); each history as for `plot_learning_curves`.
    path: where to write the PNG.
    metric: Python `str` or sequence of metric names as they appear in the
      histories, e.g. 'val_elbo' or ['val_elbo', 'val_kl']. A run lacking
      a metric is left out of that subplot; metrics no run has are skipped.
      Default 'val_elbo'.

  Returns:
    `path`.

  Raises:
    ValueError: if `histories_by_name` is empty, a run has no histories, or
      no run has any of the metrics.
  """
  if not histories_by_name:
    raise ValueError('histories_by_name must name at least one run.')
  runs = {}
  for name, histories in histories_by_name.items():
    if isinstance(histories, (list, tuple)):
      histories = [_as_history_dict(h) for h in histories]
    else:
      histories = [_as_history_dict(histories)]
    if not histories:
      raise ValueError(f'Run {name!r} has no histories.')
    runs[name] = histories
  requested = _as_metric_list(metric, 'metric')
  metrics = [m for m in requested
             if any(m in h for histories in runs.values() for h in histories)]
  if not metrics:
    available = sorted({k for histories in runs.values() for h in histories
                        for k in h})
    raise ValueError(f'No run has any of the metrics {requested}; the '
                     f'histories have {available}.')

  colors = dict(zip(runs, _canvas.distinct_colors(len(runs))))
  figure = _canvas.new_figure(5.0 * len(metrics), 3.8)
  for axes, name_of_metric in zip(
      figure.subplots(1, len(metrics), squeeze=False)[0], metrics):
    for name, histories in runs.items():
      curves = [h[name_of_metric] for h in histories if name_of_metric in h]
      if not curves:
        continue
      num_epochs = max(len(c) for c in curves)
      # NaN-padded to the longest run: [num_seeds, num_epochs].
      values = np.full([len(curves), num_epochs], np.nan)
      for seed_index, curve in enumerate(curves):
        values[seed_index, :len(curve)] = curve
      epochs = np.arange(1, num_epochs + 1)
      label = name if len(curves) == 1 else f'{name} ({len(curves)} seeds)'
      axes.plot(epochs, np.nanmean(values, axis=0), color=colors[name],
                label=label)
      if len(curves) > 1:
        axes.fill_between(epochs, np.nanmin(values, axis=0),
                          np.nanmax(values, axis=0), color=colors[name],
                          alpha=0.2, linewidth=0)
    axes.set_title(_metric_title(name_of_metric) +
                   ('\nmean over seeds; band: min to max'
                    if any(len(h) > 1 for h in runs.values()) else ''))
    axes.set_xlabel('epoch')
    axes.set_ylabel(_NATS_LABEL)
    axes.grid(alpha=0.3)
    axes.legend()
  return _canvas.save_figure(figure, path)
