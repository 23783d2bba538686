"""tfp_vae: variational autoencoders built from TensorFlow Probability.

Public API; see the modules for details:
  distribution_layers  posterior and likelihood layers (tfp.layers contract)
  priors               standard normal and mixture-of-Gaussians priors
  networks             MLP and convolutional encoder/decoder trunks
  objectives           ELBO (analytic or Monte Carlo KL) and IWAE bound
  model                VariationalAutoencoder (a tf_keras.Model)
  config               ModelConfig and TrainConfig
"""

from tfp_vae.config import ModelConfig
from tfp_vae.config import TrainConfig
from tfp_vae.distribution_layers import DiagonalGaussianPosterior
from tfp_vae.distribution_layers import FullCovarianceGaussianPosterior
from tfp_vae.distribution_layers import IndependentBernoulliLikelihood
from tfp_vae.distribution_layers import IndependentNormalLikelihood
from tfp_vae.distribution_layers import InverseAutoregressiveFlowPosterior
from tfp_vae.distribution_layers import LowRankGaussianPosterior
from tfp_vae.distribution_layers import PointMassPosterior
from tfp_vae.model import VariationalAutoencoder
from tfp_vae.objectives import elbo
from tfp_vae.objectives import iwae_bound
from tfp_vae.objectives import sample_latents
from tfp_vae.priors import MixtureOfGaussiansPrior
from tfp_vae.priors import StandardNormalPrior

__all__ = [
    'DiagonalGaussianPosterior',
    'FullCovarianceGaussianPosterior',
    'IndependentBernoulliLikelihood',
    'IndependentNormalLikelihood',
    'InverseAutoregressiveFlowPosterior',
    'LowRankGaussianPosterior',
    'MixtureOfGaussiansPrior',
    'ModelConfig',
    'PointMassPosterior',
    'StandardNormalPrior',
    'TrainConfig',
    'VariationalAutoencoder',
    'elbo',
    'iwae_bound',
    'sample_latents',
]
