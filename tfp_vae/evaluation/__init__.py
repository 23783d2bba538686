"""Evaluating a trained VAE: importance-sampled log p(x), ELBO, latent usage.

  importance_sampling.py  `importance_sampled_log_likelihood`, log p(x) per
                          example (Burda et al. 2016), and the per-example
                          latent draw it makes
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
from tfp_vae.evaluation.importance_sampling import sample_latents_per_example
from tfp_vae.evaluation.metrics import active_dimensions
from tfp_vae.evaluation.metrics import active_units
from tfp_vae.evaluation.metrics import posterior_correlation_stats
from tfp_vae.evaluation.metrics import summarize
from tfp_vae.evaluation.model_evaluation import evaluate_model
from tfp_vae.evaluation.model_evaluation import evaluate_model_dir
from tfp_vae.evaluation.model_evaluation import evaluation_subset
from tfp_vae.evaluation.model_evaluation import SPLITS

__all__ = [
    'SPLITS',
    'active_dimensions',
    'active_units',
    'evaluate_model',
    'evaluate_model_dir',
    'evaluation_subset',
    'importance_sampled_log_likelihood',
    'posterior_correlation_stats',
    'sample_latents_per_example',
    'summarize',
]
