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
                       evaluate_model_dir, gap_analysis (approximation and
                       amortization gaps, as a GapReport)
  sampling             write_samples: prior samples, reconstructions,
                       interpolations and traversals of a trained run
  schedules            BurdaSchedule, ReduceLearningRateOnPlateau: learning-
                       rate schedules (tf_keras LearningRateSchedule)
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

# The public names and the module each comes from. They are imported on first
# use (PEP 562), not here: `import tfp_vae.config` (what the scripts need to
# parse their flags and answer --help) must not import TensorFlow, which
# takes seconds and prints its start-up lines.
_EXPORTS = {
    'ModelConfig': 'tfp_vae.config',
    'TrainConfig': 'tfp_vae.config',
    'load_dataset': 'tfp_vae.data',
    'DiagonalGaussianPosterior': 'tfp_vae.distribution_layers',
    'FullCovarianceGaussianPosterior': 'tfp_vae.distribution_layers',
    'IndependentBernoulliLikelihood': 'tfp_vae.distribution_layers',
    'IndependentNormalLikelihood': 'tfp_vae.distribution_layers',
    'InverseAutoregressiveFlowPosterior': 'tfp_vae.distribution_layers',
    'LowRankGaussianPosterior': 'tfp_vae.distribution_layers',
    'PointMassPosterior': 'tfp_vae.distribution_layers',
    'evaluate_model': 'tfp_vae.evaluation',
    'evaluate_model_dir': 'tfp_vae.evaluation',
    'gap_analysis': 'tfp_vae.evaluation',
    'GapReport': 'tfp_vae.evaluation',
    'importance_sampled_log_likelihood': 'tfp_vae.evaluation',
    'summarize': 'tfp_vae.evaluation',
    'VariationalAutoencoder': 'tfp_vae.model',
    'elbo': 'tfp_vae.objectives',
    'iwae_bound': 'tfp_vae.objectives',
    'sample_latents': 'tfp_vae.objectives',
    'MixtureOfGaussiansPrior': 'tfp_vae.priors',
    'StandardNormalPrior': 'tfp_vae.priors',
    'LoadedModel': 'tfp_vae.runs',
    'load_trained_model': 'tfp_vae.runs',
    'SampleRequest': 'tfp_vae.sampling',
    'BurdaSchedule': 'tfp_vae.schedules',
    'ReduceLearningRateOnPlateau': 'tfp_vae.schedules',
    'write_samples': 'tfp_vae.sampling',
    'trainable_surrogate': 'tfp_vae.surrogates',
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name not in _EXPORTS:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  import importlib  # pylint: disable=g-import-not-at-top
  value = getattr(importlib.import_module(_EXPORTS[name]), name)
  globals()[name] = value  # Later look-ups skip __getattr__.
  return value


def __dir__():
  return sorted(set(globals()) | set(__all__))
