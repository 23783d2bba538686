"""Pictures of a VAE and its training: PNG files for a model directory.

  figures.py        figures drawn from arrays: image grids, labelled image
                    rows, reconstructions, latent scatter, covariance
                    ellipses
  learning_curves.py  per-epoch metrics of a run, or of runs over seeds
  model_figures.py  figures of a trained model: prior samples, the latent
                    manifold, posterior ellipses
  true_posterior.py the exact posterior p(z|x) of a 2-D latent on a grid,
                    with q(z|x) and the locally fitted q*_x over it
  gap_bars.py       approximation and amortization gaps per family, as
                    stacked bars
  _canvas.py        what they share: a fresh figure, saving, colours

Every `plot_*` function draws one figure, writes it as a PNG to `path` (any
`tf.io.gfile` path) and returns `path`; none trains or evaluates anything
beyond a forward pass.
"""

from tfp_vae.plotting.figures import covariance_ellipse
from tfp_vae.plotting.figures import INPUT_ROW_LABELS
from tfp_vae.plotting.figures import image_summary_grid
from tfp_vae.plotting.figures import plot_image_grid
from tfp_vae.plotting.figures import plot_image_rows
from tfp_vae.plotting.figures import plot_latent_scatter
from tfp_vae.plotting.figures import plot_reconstructions
from tfp_vae.plotting.figures import principal_components
from tfp_vae.plotting.learning_curves import plot_learning_curves
from tfp_vae.plotting.learning_curves import plot_learning_curves_comparison
from tfp_vae.plotting.model_figures import plot_latent_manifold
from tfp_vae.plotting.model_figures import plot_posterior_ellipses
from tfp_vae.plotting.model_figures import plot_prior_samples
from tfp_vae.plotting.model_figures import prior_marginal_quantiles
from tfp_vae.plotting.gap_bars import plot_gap_bars
from tfp_vae.plotting.true_posterior import grid_moments
from tfp_vae.plotting.true_posterior import plot_true_posteriors
from tfp_vae.plotting.true_posterior import true_posterior_grid

__all__ = [
    'INPUT_ROW_LABELS',
    'covariance_ellipse',
    'grid_moments',
    'image_summary_grid',
    'plot_gap_bars',
    'plot_image_grid',
    'plot_image_rows',
    'plot_latent_manifold',
    'plot_latent_scatter',
    'plot_learning_curves',
    'plot_learning_curves_comparison',
    'plot_posterior_ellipses',
    'plot_prior_samples',
    'plot_reconstructions',
    'plot_true_posteriors',
    'prior_marginal_quantiles',
    'principal_components',
    'true_posterior_grid',
]
