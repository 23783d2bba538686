"""Evaluating a trained VAE: importance-sampled log p(x), ELBO, latent usage.

  importance_sampling.py  `importance_sampled_log_likelihood`, log p(x) per
                          example (Burda et al. 2016), and the per-example
                          latent draw it makes
                          (`importance_sampling_statistics` adds the ELBO
                          and effective sample size of its samples)
  diagnostics.py          `effective_sample_size` of importance weights
  local_fit.py            `fit_local_posteriors`: q*_x, the best member of
                          q's family for each example alone
  gaps.py                 `gap_analysis`, `inference_gaps`, `GapReport`: the
                          inference gap split into approximation and
                          amortization gaps (Cremer et al. 2018)
  metrics.py              `summarize`, `active_units`, `active_dimensions`,
                          `posterior_correlation_stats`
  model_evaluation.py     `evaluate_model` (all of the above for a
                          `VariationalAutoencoder` on images) and
                          `evaluate_model_dir` (for a trained model directory
                          on one split of its data)

#### Examples

```python
from tfp_vae import evaluation

log_px = evaluation.importance_sampled_log_likelihood(
    test_images, model.encode, model.decode, model.prior_distribution(),
    num_importance_samples=5000)  # [N]
evaluation.summarize(log_px)  # {'mean': ..., 'standard_error': ..., ...}
```
"""

from tfp_vae.evaluation.importance_sampling import importance_sampled_log_likelihood
from tfp_vae.evaluation.importance_sampling import evaluation_subset
from tfp_vae.evaluation.importance_sampling import importance_sampling_statistics
from tfp_vae.evaluation.importance_sampling import ImportanceSamplingStatistics
from tfp_vae.evaluation.importance_sampling import sample_latents_per_example
from tfp_vae.evaluation.diagnostics import effective_sample_size
from tfp_vae.evaluation.diagnostics import summarize_effective_sample_size
from tfp_vae.evaluation.gaps import format_gap_table
from tfp_vae.evaluation.gaps import gap_analysis
from tfp_vae.evaluation.gaps import GapReport
from tfp_vae.evaluation.gaps import inference_gaps
from tfp_vae.evaluation.local_fit import fit_local_posteriors
from tfp_vae.evaluation.local_fit import LocalPosteriorFit
from tfp_vae.evaluation.metrics import active_dimensions
from tfp_vae.evaluation.metrics import active_units
from tfp_vae.evaluation.metrics import posterior_correlation_stats
from tfp_vae.evaluation.metrics import summarize
from tfp_vae.evaluation.model_evaluation import evaluate_model
from tfp_vae.evaluation.model_evaluation import evaluate_model_dir
from tfp_vae.evaluation.model_evaluation import SPLITS

__all__ = [
    'GapReport',
    'ImportanceSamplingStatistics',
    'LocalPosteriorFit',
    'SPLITS',
    'active_dimensions',
    'active_units',
    'evaluate_model',
    'evaluate_model_dir',
    'effective_sample_size',
    'evaluation_subset',
    'fit_local_posteriors',
    'format_gap_table',
    'gap_analysis',
    'importance_sampled_log_likelihood',
    'importance_sampling_statistics',
    'inference_gaps',
    'posterior_correlation_stats',
    'sample_latents_per_example',
    'summarize',
    'summarize_effective_sample_size',
]
