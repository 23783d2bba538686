"""Comparing posterior families: runs that differ only in q(z|x), over seeds.

`run_comparison(config)` is the one call `scripts/compare_posteriors.py`
makes. For each seed s in `train.seed, train.seed + 1, ...` and each
posterior family it trains (or reuses) one run with `training.train`, all
with the same architecture, data, data order and noise seed s, so the runs of
one seed differ only in the posterior. (Initial weights are drawn from the
same seed, but the encoder's output layer has a different size per family,
so the draws differ.) Each run is evaluated on the same test images with
`evaluation.evaluate_model`, and `config.output_dir` receives:

  report.md                   the table of results, with the set-up stated
  results.json                every run's metrics, and the statistics below
  comparison_config.json      the `ComparisonConfig` (written by the script)
  learning_curves.png         validation ELBO, KL and distortion per epoch,
                              mean over seeds with a min-max band
  reconstructions_<q>.png     test images and their reconstructions
  prior_samples_<q>.png       decoder means at z ~ p(z)
  posterior_ellipses.png      latent_dim == 2 only: 1-sd ellipses of q(z|x)
                              of the same test images under each family
  latent_scatter_<q>.png      posterior means of test images (PCA for D > 2),
                              coloured by class when the data have labels
  gaps.png                    with `gap_examples` > 0: the approximation and
                              amortization gaps per family, stacked
  true_posteriors.png         with `gap_examples` > 0 and latent_dim == 2:
                              p(z|x) on a grid with q(z|x) and q*_x

With `gap_examples` > 0 each run with a density also gets the inference-gap
analysis (`evaluation.gap_analysis`) on that many of its evaluated images,
and report.md a gap table per family whose difference rows are paired by
seed (`paired_difference` over seeds; with one seed, from the two runs'
standard errors over the analysed images).

The runs live in `config.runs_dir` (default `<output_dir>/runs`), one
`training` model directory each, named `<posterior>-seed<s>`. A run that
already finished with this configuration is reused: its final model is
loaded, nothing is trained, and its test metrics are read back from
`comparison_evaluation.json` in its directory when they were computed with
the same evaluation settings. So rerunning the same command only rewrites
the report, and raising `--epochs` or `--seeds` trains only what is new.

A finished run may also be kept as its small files alone (`config.json`,
`history.json`, `comparison_evaluation.json`: what a study spanning several
sessions commits, without checkpoints or model). It is reused, not trained
again, when its configuration matches and its saved evaluation has the
requested settings and belongs to that very training (`run_identity`: the
epoch, step and end time of its last history row). Pictures need models:
those of a model not kept are not redrawn, and the picture an earlier report
drew from the same runs is listed again (`results.json` records which runs
drew each picture).

Statistics (`summarize_over_seeds`, `paired_difference`): for each metric,
per family the mean, standard deviation, minimum and maximum over seeds;
and the difference of each family from the first one (`full_cov - diag` by
default), paired by seed, with a 95% t-interval over seeds. With one seed
there is no spread over seeds; the interval then comes from the standard
errors over test examples of the two estimates, and says so.

#### Modules

  config.py      `ComparisonConfig`, `RunSpec`, `run_configs`
  statistics.py  `t_quantile`, `summarize_over_seeds`, `paired_difference`,
                 `seconds_per_epoch`
  report.py      `format_report` and its tables
  pictures.py    `write_pictures`, `kept_pictures`: the report's pictures and
                 the runs that drew them
  runner.py      `run_comparison`: train or reuse, evaluate or reuse, report
"""

from tfp_vae.comparison.config import ComparisonConfig
from tfp_vae.comparison.config import run_configs
from tfp_vae.comparison.config import RunSpec
from tfp_vae.comparison.report import format_report
from tfp_vae.comparison.report import METRICS
from tfp_vae.comparison.runner import ComparisonResult
from tfp_vae.comparison.runner import CONFIG_FILE
from tfp_vae.comparison.runner import EVALUATION_FILE
from tfp_vae.comparison.runner import REPORT_FILE
from tfp_vae.comparison.runner import RESULTS_FILE
from tfp_vae.comparison.runner import run_comparison
from tfp_vae.comparison.runner import RunRecord
from tfp_vae.comparison.statistics import paired_difference
from tfp_vae.comparison.statistics import seconds_per_epoch
from tfp_vae.comparison.statistics import summarize_over_seeds
from tfp_vae.comparison.statistics import t_quantile

__all__ = [
    'CONFIG_FILE',
    'ComparisonConfig',
    'ComparisonResult',
    'EVALUATION_FILE',
    'METRICS',
    'REPORT_FILE',
    'RESULTS_FILE',
    'RunRecord',
    'RunSpec',
    'format_report',
    'paired_difference',
    'run_comparison',
    'run_configs',
    'seconds_per_epoch',
    'summarize_over_seeds',
    't_quantile',
]
