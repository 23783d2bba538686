"""The pictures of a comparison report, and which runs drew them.

`write_pictures` draws what the loaded first-seed models allow (learning
curves and gap bars need only the records); `kept_pictures` lists again
the pictures an earlier report drew from the same runs (by
`runner.run_identity`), for a study assembled from runs kept without their
models; `in_report_order` orders them for report.md.
"""

import os
from typing import Any, Dict, NamedTuple

import numpy as np

from tfp_vae import objectives
from tfp_vae import plotting
from tfp_vae import runs

__all__ = ['Picture', 'write_pictures', 'kept_pictures', 'in_report_order']


# Pictures: how many test images, and how many encodings in a scatter plot.
_NUM_RECONSTRUCTIONS = 10


_NUM_ELLIPSE_IMAGES = 8


_NUM_PRIOR_SAMPLES = 64


_MAX_SCATTER_POINTS = 2000


# Test images in the true-posterior figure (latent_dim 2, with gaps).
_NUM_TRUE_POSTERIOR_IMAGES = 4


def _encoded_means(model, images, batch_size=500):
  # The posterior means; for the IAF posterior (no closed-form mean) the
  # flow of its base mean.
  return np.concatenate([
      np.asarray(objectives.posterior_location(
          model.encode(images[start:start + batch_size])))
      for start in range(0, len(images), batch_size)])


class Picture(NamedTuple):
  """A picture of the report, and the first-seed runs whose models drew it."""
  title: str
  file: str
  runs: Dict[str, Any]  # {posterior: run_identity}; {} if no model is used

  def to_dict(self):
    return self._asdict()


def write_pictures(config, records, models, images, labels):
  """Writes the pictures it can draw; returns `[Picture]`.

  Pictures of a family's model are drawn when its first-seed model is
  loaded (`models`); those of several families' models only when all of
  them are. The rest (learning curves, gap bars) need only the records.
  """
  output_dir = config.output_dir
  rng = np.random.default_rng(config.train.seed)
  shown = np.sort(rng.permutation(len(images))[:_NUM_RECONSTRUCTIONS])
  first = {r.posterior: r.run_identity for r in records
           if r.seed == config.train.seed}
  plots = []

  # Families with no run yet (a study being assembled) have no curves.
  histories = {p: [r.history for r in records if r.posterior == p]
               for p in config.posteriors
               if any(r.posterior == p for r in records)}
  plotting.plot_learning_curves_comparison(
      histories, os.path.join(output_dir, 'learning_curves.png'),
      metric=['val_elbo', 'val_kl', 'val_nll'])
  plots.append(Picture('Learning curves (validation)',
                        'learning_curves.png', {}))

  if config.gap_examples:
    plots += _write_gap_plots(config, records, models, images, rng, first)

  ellipse_index = np.sort(rng.permutation(len(images))[:_NUM_ELLIPSE_IMAGES])
  if config.model.latent_dim == 2 and len(models) == len(config.posteriors):
    plotting.plot_posterior_ellipses(
        models, images[ellipse_index],
        os.path.join(output_dir, 'posterior_ellipses.png'),
        num_images=_NUM_ELLIPSE_IMAGES)
    plots.append(Picture(
        'Posterior ellipses (1 sd) of the same test images over the prior',
        'posterior_ellipses.png', {p: first[p] for p in models}))

  scatter = np.sort(rng.permutation(len(images))[:_MAX_SCATTER_POINTS])
  for posterior, model in models.items():
    drawn_by = {posterior: first[posterior]}
    name = f'reconstructions_{posterior}.png'
    plotting.plot_reconstructions(
        images[shown], np.asarray(model.reconstruct(images[shown])),
        os.path.join(output_dir, name),
        title=f'{posterior}: test images (upper row) and reconstructions '
        '(lower row)')
    plots.append(Picture(f'Reconstructions, {posterior}', name, drawn_by))
    name = f'prior_samples_{posterior}.png'
    plotting.plot_prior_samples(model, os.path.join(output_dir, name),
                                num_samples=_NUM_PRIOR_SAMPLES,
                                seed=config.train.seed)
    plots.append(Picture(f'Prior samples, {posterior}', name, drawn_by))
    name = f'latent_scatter_{posterior}.png'
    plotting.plot_latent_scatter(
        _encoded_means(model, images[scatter]), os.path.join(output_dir, name),
        labels=None if labels is None else labels[scatter])
    plots.append(Picture(f'Test encodings, {posterior}' + (
        ' (PCA)' if config.model.latent_dim > 2 else ''), name, drawn_by))
  return plots


def _write_gap_plots(config, records, models, images, rng, first):
  """The stacked gap bars, and for a 2-D latent the true posteriors."""
  output_dir = config.output_dir
  families = [p for p in config.posteriors
              if any(r.posterior == p and r.metrics.get('gaps')
                     for r in records)]
  if not families:
    return []
  means, errors = {}, {}
  for part in ('approximation', 'amortization'):
    key = f'gaps_{part}_gap'
    means[part], errors[part] = [], []
    for posterior in families:
      runs_of = [r.metrics for r in records if r.posterior == posterior]
      values = np.array([m[key] for m in runs_of])
      means[part].append(float(values.mean()))
      # The standard error of the bar's height: over seeds when there are
      # several, else over the analysed examples of the one run.
      errors[part].append(
          float(values.std(ddof=1) / np.sqrt(values.size))
          if values.size > 1 else float(runs_of[0][key + '_stderr'] or 0.))
  plotting.plot_gap_bars(
      families, means['approximation'], means['amortization'],
      os.path.join(output_dir, 'gaps.png'),
      approximation_errors=errors['approximation'],
      amortization_errors=errors['amortization'],
      title='Inference gap per family, split in two\n'
      '(mean; error bars: one standard error)')
  plots = [Picture(
      'Inference gaps: approximation (bottom) and amortization (top)',
      'gaps.png', {})]
  shown = images[np.sort(rng.permutation(len(images))[
      :_NUM_TRUE_POSTERIOR_IMAGES])]
  if config.model.latent_dim == 2 and all(p in models for p in families):
    plotting.plot_true_posteriors(
        {p: models[p] for p in families}, shown,
        os.path.join(output_dir, 'true_posteriors.png'),
        num_images=len(shown), max_steps=config.gap_max_steps,
        num_samples=config.gap_samples, seed=config.train.seed)
    plots.append(Picture(
        'True posterior p(z|x) on a grid, with q(z|x) and the fitted q*_x, '
        'one column per family', 'true_posteriors.png',
        {p: first[p] for p in families}))
  return plots


def in_report_order(pictures, posteriors):
  order = ['learning_curves.png', 'gaps.png', 'true_posteriors.png',
           'posterior_ellipses.png'] + [
               f'{kind}_{p}.png' for p in posteriors
               for kind in ('reconstructions', 'prior_samples',
                            'latent_scatter')]
  return sorted(pictures, key=lambda p: (
      order.index(p.file) if p.file in order else len(order), p.file))


def kept_pictures(results_path, drawn, records, first_seed):
  """Pictures of an earlier report that still show this report's runs.

  A picture not drawn now (its model was not kept) is listed again when its
  file is there and every run that drew it is, by `run_identity`, a
  first-seed run of this comparison.
  """
  previous = runs.read_json_or_none(results_path)
  if not isinstance(previous, dict):
    return []
  first = {r.posterior: r.run_identity for r in records
           if r.seed == first_seed}
  drawn_files = {p.file for p in drawn}
  kept = []
  for values in previous.get('pictures') or []:
    try:
      picture = Picture(**values)
    except TypeError:
      continue
    if (picture.file not in drawn_files and picture.runs and
        all(first.get(p) == identity
            for p, identity in picture.runs.items()) and
        os.path.exists(os.path.join(os.path.dirname(results_path),
                                    picture.file))):
      kept.append(picture)
  return kept


