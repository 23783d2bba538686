"""The comparison's report: tables of metrics over seeds, and the set-up.

`format_report` writes report.md's Markdown from the runs' records and the
statistics of `statistics`; `summary_and_differences` computes those for
every metric of `METRICS`.
"""

import os
import platform

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae.comparison import statistics

__all__ = ['METRICS', 'GAP_METRICS', 'format_report',
           'summary_and_differences', 'describe_machine', 'gap_metrics']


# (key, column title, decimals) of the main table, in order. Keys are
# `evaluation.evaluate_model`'s, plus 'seconds_per_epoch'.
METRICS = (
    ('log_likelihood', 'test log p(x) (IS)', 2),
    ('elbo', 'ELBO', 2),
    ('kl', 'KL(q(z|x) ‖ p(z))', 2),
    ('gap', 'gap log p(x) − ELBO', 2),
    ('active_units', 'active units', 1),
    ('seconds_per_epoch', 'seconds per epoch', 1),
)


# Further metrics in results.json and a second, smaller table.
_EXTRA_METRICS = (
    ('nll', '−E_q log p(x|z)', 2),
    ('kl_to_diagonal', 'KL(q ‖ diagonal q)', 3),
    ('mean_abs_offdiag_correlation', 'mean |corr| in q', 3),
)


# The inference-gap table (`evaluation.gap_analysis`, with --gap_examples):
# (key, column title, decimals). Keys are `gap_metrics`'.
GAP_METRICS = (
    ('gaps_log_likelihood', 'log p(x), tighter IS', 2),
    ('gaps_elbo_amortized', 'ELBO[q]', 2),
    ('gaps_elbo_optimized', 'ELBO[q*]', 2),
    ('gaps_inference_gap', 'inference gap', 2),
    ('gaps_approximation_gap', 'approximation gap', 2),
    ('gaps_amortization_gap', 'amortization gap', 2),
)


def gap_metrics(metrics):
  """`evaluate_model`'s gap report as flat metrics, `{}` without one.

  'gaps_<quantity>' and 'gaps_<quantity>_stderr' (its standard error over
  the analysed examples) for every quantity of `GAP_METRICS`, so that the
  statistics over seeds treat them as any other metric.
  """
  report = metrics.get('gaps')
  if not report:
    return {}
  flat = {}
  for key, _, _ in GAP_METRICS:
    entry = report['summary'][key[len('gaps_'):]]
    flat[key] = entry['mean']
    flat[key + '_stderr'] = entry['standard_error']
  return flat


def describe_machine():
  cpu_model = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          cpu_model = line.split(':', 1)[1].strip()
          break
  except OSError:
    pass
  try:
    usable = len(os.sched_getaffinity(0))
  except AttributeError:
    usable = os.cpu_count()
  return {'cpu_count': os.cpu_count(), 'usable_cpus': usable,
          'cpu_model': cpu_model, 'platform': platform.platform(),
          'python': platform.python_version(),
          'tensorflow': tf.__version__, 'tensorflow_probability':
              tfp.__version__,
          'gpus': len(tf.config.list_physical_devices('GPU'))}


def _metric_values(records, posterior, key, stderr=False, seeds=None):
  """Per-seed values of one metric for one family, in seed order.

  Only the runs of `seeds` if given.
  """
  name = key + '_stderr' if stderr else key
  return [r.seconds_per_epoch if key == 'seconds_per_epoch' and not stderr
          else r.metrics.get(name)
          for r in sorted(records, key=lambda r: r.seed)
          if r.posterior == posterior and (seeds is None or r.seed in seeds)]


def summary_and_differences(records, posteriors):
  """(summary, differences) over seeds; see `summarize_over_seeds`.

  A difference pairs the seeds both families have runs of (all of them
  unless the report assembles a study that is not complete); a family with
  no seed in common with the baseline has no difference row.
  """
  keys = [k for k, _, _ in METRICS + _EXTRA_METRICS + GAP_METRICS]
  summary = {p: {k: statistics.summarize_over_seeds(
                     _metric_values(records, p, k))
                 for k in keys} for p in posteriors}
  baseline = posteriors[0]
  differences = {}
  for posterior in posteriors[1:]:
    seeds = ({r.seed for r in records if r.posterior == posterior} &
             {r.seed for r in records if r.posterior == baseline})
    if not seeds:
      continue
    differences[f'{posterior} - {baseline}'] = {
        k: statistics.paired_difference(
            _metric_values(records, posterior, k, seeds=seeds),
            _metric_values(records, baseline, k, seeds=seeds),
            _metric_values(records, posterior, k, stderr=True, seeds=seeds),
            _metric_values(records, baseline, k, stderr=True, seeds=seeds))
        for k in keys}
  return summary, differences


def _number(value, decimals, signed=False):
  if value is None:
    return 'n/a'
  return f'{value:{"+" if signed else ""}.{decimals}f}'


def _summary_cell(stats, decimals):
  if stats['mean'] is None:
    return 'n/a'
  if stats['std'] is None:
    return _number(stats['mean'], decimals)
  return (f'{_number(stats["mean"], decimals)} ± '
          f'{_number(stats["std"], decimals)} '
          f'[{_number(stats["min"], decimals)}, '
          f'{_number(stats["max"], decimals)}]')


def _difference_cell(stats, decimals):
  if stats['mean'] is None:
    return 'n/a'
  text = _number(stats['mean'], decimals, signed=True)
  if stats['half_width'] is not None:
    text += (f' [{_number(stats["ci_low"], decimals, signed=True)}, '
             f'{_number(stats["ci_high"], decimals, signed=True)}]')
  return text


def _table(columns, summary, differences, posteriors):
  # A '|' inside a cell would end it: escaped, it renders as '|'.
  header = '| posterior | ' + ' | '.join(
      t.replace('|', '\\|') for _, t, _ in columns) + ' |'
  lines = [header, '|' + '---|' * (len(columns) + 1)]
  for posterior in posteriors:
    if not summary[posterior][columns[0][0]]['num_seeds']:
      continue  # No run of it yet (a study being assembled).
    lines.append(f'| {posterior} | ' + ' | '.join(
        _summary_cell(summary[posterior][k], d) for k, _, d in columns) + ' |')
  for name, stats in differences.items():
    lines.append(f'| **{name.replace(" - ", " − ")}** | ' + ' | '.join(
        _difference_cell(stats[k], d) for k, _, d in columns) + ' |')
  return lines


def _architecture(model_config):
  if model_config.architecture in ('mlp', 'gated_mlp'):
    layers = f'hidden units {",".join(map(str, model_config.hidden_units))}'
  else:
    layers = f'conv filters {",".join(map(str, model_config.conv_filters))}'
  return (f'{model_config.architecture} ({layers}, {model_config.activation}),'
          f' {model_config.likelihood} likelihood, {model_config.prior} '
          f'prior, {model_config.objective} objective with {model_config.kl} '
          f'KL')


def _interval_note(differences, t_note, normal_note):
  """What each difference row's interval is, from the seeds it pairs.

  In a complete comparison every row pairs the same seeds; a study
  assembled from finished runs may pair two seeds for one family and one
  for another, and the methods then differ by row.

  Args:
    differences: `summary_and_differences`'s second value.
    t_note: `f(num_seeds)`, the words for a t-interval over that many seeds.
    normal_note: the words for one paired seed (a normal interval from the
      standard errors over the examples).

  Returns:
    str: one description, or one per group of rows.
  """
  groups = {}
  for name, by_metric in differences.items():
    stats = next((v for v in by_metric.values() if v['method'] != 'none'),
                 next(iter(by_metric.values())))
    note = (t_note(stats['num_seeds']) if stats['method'] == 't over seeds'
            else normal_note)
    groups.setdefault(note, []).append(name.replace(' - ', ' − '))
  if len(groups) <= 1:
    return next(iter(groups), normal_note)
  return '; '.join(f'{", ".join(rows)}: {note}'
                   for note, rows in groups.items())


def _t_degrees(num_seeds):
  return (f'{num_seeds - 1} degree{"s" if num_seeds > 2 else ""} of '
          'freedom')


def _gap_section(config, records, summary, differences):
  """The inference-gap table and what its numbers mean."""
  analysed = sorted({r.metrics['gaps']['num_examples'] for r in records
                     if r.metrics.get('gaps')})
  with_gaps = [p for p in config.posteriors
               if any(r.posterior == p and r.metrics.get('gaps')
                      for r in records)]
  lines = [
      '',
      '## Where the gap comes from: approximation vs amortization',
      '',
      f'Cremer, Li & Duvenaud (2018) on {", ".join(map(str, analysed))} '
      'test images per run (a random subset of the evaluated ones, the same '
      'for every family of a seed): for each image q*_x is the member of '
      'the encoder\'s family fitted to that image alone (Adam, '
      f'{config.gap_samples} samples per step, at most '
      f'{config.gap_max_steps} steps), and log p(x) is the tighter of the '
      f'two K = {config.num_importance_samples} estimates with q(z|x) and '
      'q*_x as proposals. Approximation gap = log p(x) − ELBO[q*] (what '
      'the family cannot represent); amortization gap = ELBO[q*] − ELBO[q] '
      '(what the encoder loses by predicting q instead of fitting it); '
      'they add up to the inference gap log p(x) − ELBO[q]. Nats per '
      'example; rows per family as in the table above. Difference rows: '
      'paired by seed, with a 95% interval: ' + _interval_note(
          {name: stats for name, stats in differences.items()
           if name.split(' - ')[0] in with_gaps},
          lambda n: (f'a t-interval over the {n} paired seeds (the spread '
                     'of the per-seed mean differences; the examples\' own '
                     'noise is inside it)'),
          'one paired seed, a normal interval from the two runs\' standard '
          'errors over the analysed examples (conservative, as the families '
          'share their examples)') + '.',
      '',
  ]
  gap_differences = {
      name: stats for name, stats in differences.items()
      if name.split(' - ')[0] in with_gaps}
  lines += _table(GAP_METRICS, summary, gap_differences, with_gaps)
  return lines


def _trained_here(record):
  if not record.reused:
    return 'yes'
  if not getattr(record, 'model_kept', True):
    return 'no (results kept; model not)'
  return 'no (reused)'


def _protocol(train_config, model_config):
  early = (f'early stopping with patience {train_config.early_stopping_patience}'
           ' (the best validation epoch\'s weights are evaluated)'
           if train_config.early_stopping_patience else 'no early stopping')
  if model_config.kl_warmup_epochs:
    warmup = f'KL warm-up over {model_config.kl_warmup_epochs} epochs'
  elif model_config.kl_warmup_steps:
    warmup = f'KL warm-up over {model_config.kl_warmup_steps} steps'
  else:
    warmup = 'no KL warm-up'
  early = early + (f', at most {train_config.epochs} epochs')
  return (f'{train_config.learning_rate_schedule} learning-rate schedule, '
          f'{warmup}, {early}')


def _missing_note(missing, records, num_runs):
  """What an assembled report of an unfinished study says first."""
  if not missing:
    return []
  names = ', '.join(f'{p} seed {s}' for p, s in missing)
  return [
      f'**Incomplete: {len(records)} of {num_runs} runs.** Not yet trained: '
      f'{names}. A family\'s row summarizes the seeds it has; a difference '
      'pairs the seeds both families have.', '']


def format_report(config, records, summary, differences, dataset_info,
                  machine, plots, wall_seconds, missing=()):
  """The markdown report: set-up, tables, notes and pictures.

  `missing`: `(posterior, seed)` of the runs left out (not finished) when
  the report assembles a study from finished runs.
  """
  posteriors = config.posteriors
  seeds = config.seed_values
  one_seed = len({r.seed for r in records}) <= 1
  epochs_trained = sorted({r.epochs_trained for r in records})
  lines = [
      f'# Posterior comparison: {", ".join(posteriors)} on '
      f'{dataset_info["name"]}',
      '',
      'Runs that differ only in the approximate posterior q(z|x): the same '
      'architecture, data, data order and seeds. Made with '
      '`scripts/compare_posteriors.py`.',
      '',
      *_missing_note(missing, records, len(posteriors) * len(seeds)),
      '| setting | value |',
      '|---|---|',
      f'| dataset | {dataset_info["name"]} ({dataset_info["binarization"]} '
      f'binarization): {dataset_info["num_train"]} training images, '
      f'{dataset_info["num_evaluated"]} of {dataset_info["num_test"]} test '
      'images evaluated |',
      f'| epochs | {config.train.epochs} (trained: '
      f'{", ".join(map(str, epochs_trained))}), batch size '
      f'{config.train.batch_size}, Adam learning rate '
      f'{config.train.learning_rate:g} |',
      f'| protocol | {_protocol(config.train, config.model)} |',
      f'| seeds | {len(seeds)}: {", ".join(map(str, seeds))} |',
      f'| architecture | {_architecture(config.model)} |',
      f'| latent size | {config.model.latent_dim} |',
      f'| importance samples K | {config.num_importance_samples} |',
      f'| machine | {machine["cpu_count"]} CPUs ({machine["usable_cpus"]} '
      f'usable; {machine["cpu_model"]}), {machine["gpus"]} GPUs, '
      f'TensorFlow {machine["tensorflow"]}, TFP '
      f'{machine["tensorflow_probability"]} |',
      f'| wall time of this command | {wall_seconds / 60:.1f} min |',
      '',
      '## Test metrics',
      '',
      'Nats per example. Per posterior: ' + (
          'the single seed\'s value.' if one_seed else
          'mean ± standard deviation over seeds [min, max].') +
      f' Difference rows: mean of the per-seed differences from '
      f'{posteriors[0]} with a 95% confidence interval: ' + _interval_note(
          differences,
          lambda n: (f'a t-interval over the {n} paired seeds '
                     f'({_t_degrees(n)})'),
          'one paired seed, a normal interval from the standard errors over '
          'the test examples (sqrt(se1² + se2²); conservative, as both '
          'estimates use the same images; it does not cover seed-to-seed '
          'variation)') + '.',
      '',
  ]
  lines += _table(METRICS, summary, differences, posteriors)
  lines += [
      '',
      f'- test log p(x): importance-sampled estimate with K = '
      f'{config.num_importance_samples} (Burda et al. 2016); higher is '
      'better. ELBO and KL: one latent sample per image. Gap: log p(x) − '
      'ELBO per image, the inference gap plus what K samples miss.',
      '- active units: latent dimensions whose posterior mean varies over '
      'the test images (variance > 0.01).',
      '- seconds per epoch: wall time of a training epoch and its '
      'validation pass, ' + (
          'leaving out the first epoch (it includes tracing and XLA '
          'compilation)' if config.train.epochs > 1 else
          'of the single epoch, which includes tracing and XLA compilation')
      + '. The machine may be shared, so timings are indicative.',
      '',
      '### Posterior shape',
      '',
  ]
  lines += _table(_EXTRA_METRICS, summary, differences, posteriors)
  lines += [
      '',
      'KL(q ‖ diagonal q): nats of information in the posterior\'s '
      'correlations (0 for a diagonal posterior); mean |corr|: the mean '
      'absolute off-diagonal correlation of q(z|x).',
      '',
      '## Runs',
      '',
      '| posterior | seed | log p(x) ± se | ELBO | KL | active units | '
      'epochs | s / epoch | trained here | run directory |',
      '|---|---|---|---|---|---|---|---|---|---|',
  ]
  for r in sorted(records, key=lambda r: (r.seed, posteriors.index(
      r.posterior))):
    m = r.metrics
    log_px = _number(m.get('log_likelihood'), 2)
    if m.get('log_likelihood_stderr') is not None:
      log_px += f' ± {m["log_likelihood_stderr"]:.2f}'
    lines.append(
        f'| {r.posterior} | {r.seed} | {log_px} | {_number(m.get("elbo"), 2)}'
        f' | {_number(m.get("kl"), 2)} | {m.get("active_units", "n/a")} | '
        f'{r.epochs_trained} | {_number(r.seconds_per_epoch, 1)} | '
        f'{_trained_here(r)} | `{r.model_dir}` |')
  if any(r.metrics.get('gaps') for r in records):
    lines += _gap_section(config, records, summary, differences)
  lines += ['', '## Pictures', '']
  for title, name, *_ in plots:
    lines += [f'### {title}', '', f'![{title}]({name})', '']
  return '\n'.join(lines).rstrip() + '\n'
