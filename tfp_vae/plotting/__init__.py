"""Pictures of a VAE and its training: PNG files for a model directory.

  figures.py        figures drawn from arrays: image grids, labelled image
                    rows, reconstructions, latent scatter, covariance
                    ellipses
  learning_curves.py  per-epoch metrics of a run, or of runs over seeds
  model_figures.py  figures of a trained model: prior samples, the latent
                    manifold, posterior ellipses
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

__all__ = [
    'INPUT_ROW_LABELS',
    'covariance_ellipse',
    'image_summary_grid',
    'plot_image_grid',
    'plot_image_rows',
    'plot_latent_manifold',
    'plot_latent_scatter',
    'plot_learning_curves',
    'plot_learning_curves_comparison',
    'plot_posterior_ellipses',
    'plot_prior_samples',
    'plot_reconstructions',
    'prior_marginal_quantiles',
    'principal_components',
]
