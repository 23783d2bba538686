r"""Compares posterior families: runs that differ only in q(z|x), over seeds.

  python scripts/compare_posteriors.py --dataset=binarized_mnist \
      --data_dir=DIR --latent_dim=2 --epochs=10 --seeds=3 \
      --num_importance_samples=1000 --max_examples=2000 \
      --output_dir=comparison --runs_dir=/tmp/comparison_runs \
      --gaps --gap_examples=200

Trains (or reuses) one run per posterior family in --posteriors and per seed
--seed, --seed + 1, ..., --seed + --seeds - 1, each with train.py's model,
data and optimisation flags (all of them but --posterior and --model_dir),
and writes to --output_dir a report (report.md), every number
(results.json) and pictures. Runs go to --runs_dir/<posterior>-seed<s>;
rerunning the command reuses finished runs and their test metrics. See
`tfp_vae/comparison/` for what is computed and written.

--gaps adds the inference-gap analysis of Cremer, Li & Duvenaud (2018) on
--gap_examples of the evaluated test images per run: a table of the
approximation and amortization gaps per family with paired confidence
intervals, a stacked bar chart of the two, and for --latent_dim=2 the true
posterior p(z|x) on a grid with q(z|x) and the fitted q*_x over it.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging

# The model, data and optimisation flags are train.py's, from
# scripts/_flags.py next to this file.
if __package__:  # Installed as the package tfp_vae_cli (console commands).
  from . import _console, _flags  # pylint: disable=g-import-not-at-top
else:  # Run as a file: python scripts/<name>.py.
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import _console  # pylint: disable=g-import-not-at-top
  import _flags  # pylint: disable=g-import-not-at-top

# No TensorFlow op may run before --num_cpu_devices splits the CPU into
# logical devices, so the modules that build data and models are imported in
# main(), after flag parsing. `names` builds none.
from tfp_vae import names  # pylint: disable=g-import-not-at-top,wrong-import-position

# --posterior is replaced by --posteriors; runs go to --runs_dir, not
# --model_dir; --num_importance_samples means K for this script's own
# evaluation (train.py's final evaluation is skipped).
_flags.define_flags(skip=('posterior', 'model_dir', 'num_importance_samples'))
_flags.define_gap_flags(
    'how many of the evaluated test images to analyse per run (the same '
    'images for every family of a seed)')
flags.adopt_module_key_flags(_flags)

flags.DEFINE_list('posteriors', ['diag', 'full_cov'],
                  'Comma-separated posterior families to compare, at least '
                  f'two of {", ".join(names.POSTERIORS)}. The first is '
                  'the baseline the others are subtracted from.')
flags.DEFINE_integer('seeds', 3,
                     'How many seeds: every posterior is trained with seeds '
                     '--seed, --seed + 1, ..., --seed + --seeds - 1; a '
                     'positive integer. With one seed the confidence '
                     'intervals come from the test-set standard errors only.')
flags.DEFINE_integer('num_importance_samples', _flags.NUM_IMPORTANCE_SAMPLES,
                     'Importance samples K per test image for the estimate of '
                     'log p(x); a positive integer. The evaluation cost grows '
                     'linearly with it (Burda et al. 2016 use 5000).')
flags.DEFINE_integer('max_examples', 0,
                     'If > 0, evaluate each run on a random subset of this '
                     'many test images, drawn with the run\'s seed as '
                     'scripts/evaluate.py --max_examples does (never the '
                     'first rows: data files can be sorted by class); 0 '
                     'evaluates the whole test split.')
# The name this flag had before it took scripts/evaluate.py's; deprecated.
flags.DEFINE_alias('max_eval_examples', 'max_examples')
flags.DEFINE_string('output_dir', 'comparison',
                    'Directory for report.md, results.json and the plots; '
                    'created if missing.')
flags.DEFINE_bool('train_missing', True,
                  'Train the runs that are not finished. --notrain_missing '
                  'trains nothing: the report assembles the finished runs '
                  '(and those kept as their small files) and lists the rest '
                  'as missing, for a study whose runs are trained in several '
                  'sessions.')
flags.DEFINE_string('runs_dir', '',
                    'Directory for the runs, one model directory '
                    '<posterior>-seed<s> each; finished runs there with the '
                    'same configuration are reused. Empty: '
                    '<output_dir>/runs.')

FLAGS = flags.FLAGS


def _config_from_flags(image_shape=None):
  """Builds and validates the comparison's config."""
  from tfp_vae import comparison  # pylint: disable=g-import-not-at-top
  runs_dir = FLAGS.runs_dir or os.path.join(FLAGS.output_dir, 'runs')
  overrides = {'posterior': FLAGS.posteriors[0] if FLAGS.posteriors else
               'diag', 'model_dir': runs_dir}
  if image_shape is not None:
    overrides['image_shape'] = tuple(image_shape)
  model_config, train_config = _flags.configs_from_flags(**overrides)
  return comparison.ComparisonConfig(
      model=model_config, train=train_config,
      posteriors=tuple(FLAGS.posteriors), seeds=FLAGS.seeds,
      num_importance_samples=FLAGS.num_importance_samples,
      max_eval_examples=FLAGS.max_examples,
      output_dir=FLAGS.output_dir, runs_dir=FLAGS.runs_dir,
      gap_examples=FLAGS.gap_examples if FLAGS.gaps else 0,
      gap_max_steps=FLAGS.gap_max_steps,
      gap_samples=FLAGS.gap_samples, train_missing=FLAGS.train_missing)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  _console.quiet_tensorflow()
  _flags.enable_xla_cache()
  with _console.quiet_imports():
    # The comparison's config is checked by `comparison`, which imports
    # TensorFlow.
    try:
      config = _config_from_flags()
    except ValueError as error:
      sys.exit(f'error: {error}')
    _flags.split_cpu_devices()
    from tfp_vae import comparison  # pylint: disable=g-import-not-at-top
    from tfp_vae import data  # pylint: disable=g-import-not-at-top
    from tfp_vae import training  # pylint: disable=g-import-not-at-top
  try:
    # The first seed's data, loaded here (as train.py does) so the saved
    # config has the data's image shape.
    dataset = data.load_data(config.train)
    config = _config_from_flags(image_shape=dataset.image_shape)
    os.makedirs(config.output_dir, exist_ok=True)
    logging.info('Comparison config:\n%s', config.to_json())
    with open(os.path.join(config.output_dir, comparison.CONFIG_FILE),
              'w') as f:
      f.write(config.to_json() + '\n')
    result = comparison.run_comparison(config, dataset=dataset)
  except (data.DataError, ValueError, OSError,
          training.NonFiniteLossError) as error:
    sys.exit(f'error: {error}')
  print(result.report.split('\n## Runs')[0])
  print(f'Wrote {os.path.join(config.output_dir, comparison.REPORT_FILE)}')


def run():
  """The console command (setup.cfg's entry point)."""
  app.run(main, flags_parser=_flags.flags_parser(__doc__, __name__))


if __name__ == '__main__':
  run()
