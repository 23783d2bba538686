"""tfp_vae: variational autoencoders built from TensorFlow Probability.

Public API; see the modules for details:
  distribution_layers  posterior and likelihood layers (tfp.layers contract)
  priors               standard normal and mixture-of-Gaussians priors
  networks             MLP and convolutional encoder/decoder trunks
  objectives           ELBO (analytic or Monte Carlo KL) and IWAE bound
  model                VariationalAutoencoder (a tf_keras.Model)
  config               ModelConfig and TrainConfig
  data                 load_dataset: the image datasets
  runs                 load_trained_model: a trained run's model and configs
  evaluation           importance_sampled_log_likelihood, evaluate_model,
                       evaluate_model_dir
  sampling             write_samples: prior samples, reconstructions,
                       interpolations and traversals of a trained run
  surrogates           trainable_surrogate: a layer's family as a tfp.vi
                       surrogate posterior

#### Examples

```python
import tfp_vae

run = tfp_vae.load_trained_model('runs/binarized_mnist-full_cov')
images = run.model.sample(16, seed=0)  # [16, 28, 28, 1]
log_px = tfp_vae.importance_sampled_log_likelihood(
    images, run.model.encode, run.model.decode,
    run.model.prior_distribution(), num_importance_samples=1000)  # [16]
```
"""

from tfp_vae.config import ModelConfig
from tfp_vae.config import TrainConfig
from tfp_vae.data import load_dataset
from tfp_vae.distribution_layers import DiagonalGaussianPosterior
from tfp_vae.distribution_layers import FullCovarianceGaussianPosterior
from tfp_vae.distribution_layers import IndependentBernoulliLikelihood
from tfp_vae.distribution_layers import IndependentNormalLikelihood
from tfp_vae.distribution_layers import InverseAutoregressiveFlowPosterior
from tfp_vae.distribution_layers import LowRankGaussianPosterior
from tfp_vae.distribution_layers import PointMassPosterior
from tfp_vae.evaluation import evaluate_model
from tfp_vae.evaluation import evaluate_model_dir
from tfp_vae.evaluation import importance_sampled_log_likelihood
from tfp_vae.evaluation import summarize
from tfp_vae.model import VariationalAutoencoder
from tfp_vae.objectives import elbo
from tfp_vae.objectives import iwae_bound
from tfp_vae.objectives import sample_latents
from tfp_vae.priors import MixtureOfGaussiansPrior
from tfp_vae.priors import StandardNormalPrior
from tfp_vae.runs import LoadedModel
from tfp_vae.runs import load_trained_model
from tfp_vae.sampling import SampleRequest
from tfp_vae.sampling import write_samples
from tfp_vae.surrogates import trainable_surrogate

__all__ = [
    'DiagonalGaussianPosterior',
    'FullCovarianceGaussianPosterior',
    'IndependentBernoulliLikelihood',
    'IndependentNormalLikelihood',
    'InverseAutoregressiveFlowPosterior',
    'LoadedModel',
    'LowRankGaussianPosterior',
    'MixtureOfGaussiansPrior',
    'ModelConfig',
    'PointMassPosterior',
    'SampleRequest',
    'StandardNormalPrior',
    'TrainConfig',
    'VariationalAutoencoder',
    'elbo',
    'evaluate_model',
    'evaluate_model_dir',
    'importance_sampled_log_likelihood',
    'iwae_bound',
    'load_dataset',
    'load_trained_model',
    'sample_latents',
    'summarize',
    'trainable_surrogate',
    'write_samples',
]
