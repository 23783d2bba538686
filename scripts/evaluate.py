r"""Evaluates a trained VAE: importance-sampled log p(x), ELBO, KL, latents.

  python scripts/evaluate.py --model_dir=runs/binarized_mnist-full_cov
  python scripts/evaluate.py --model_dir=DIR --split=validation \
      --num_importance_samples=1000 --max_examples=2000
  python scripts/evaluate.py --model_dir=DIR --gaps --gap_examples=500

Prints a table (metric, value, standard error) and writes every metric as
JSON to --output (default <model_dir>/evaluation_<split>.json). The model
is restored from --model_dir whatever strategy trained it; the data are the
ones the run trained on. See `tfp_vae.evaluation.evaluate_model` for what
each metric means. The log-likelihood estimate comes with the effective
sample size of its importance weights (mean, median, min, and the share of
examples below 1% of K: when that share is large, K is too small).

--gaps adds the inference-gap analysis (Cremer, Li & Duvenaud 2018,
`tfp_vae.evaluation.gap_analysis`) on --gap_examples of the evaluated
images: the gap log p(x) - ELBO[q] split into an approximation gap (the
family cannot match p(z|x)) and an amortization gap (the encoder misses the
family's best member q*_x, fitted per example). Its table is printed and its
report saved under "gaps" in the JSON.
"""

import json
import os
import sys

from absl import app
from absl import flags

# What the scripts share (logging, flags) is next to this file.
if __package__:  # Installed as the package tfp_vae_cli (console commands).
  from . import _console, _flags  # pylint: disable=g-import-not-at-top
else:  # Run as a file: python scripts/<name>.py.
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import _console  # pylint: disable=g-import-not-at-top
  import _flags  # pylint: disable=g-import-not-at-top

# TensorFlow is imported in main(), after the flags are checked, so a bad
# flag fails at once (`tfp_vae.names` imports none).
from tfp_vae import names  # pylint: disable=g-import-not-at-top,wrong-import-position


flags.DEFINE_string('model_dir', None,
                    'Directory of a run of scripts/train.py; it must hold '
                    'config.json and the final model or a checkpoint. '
                    'Required.')
flags.DEFINE_enum('split', 'test', names.EVALUATION_SPLITS,
                  'Data split to evaluate on: test, validation or train (the '
                  'splits the run trained with).')
flags.DEFINE_integer('num_importance_samples', _flags.NUM_IMPORTANCE_SAMPLES,
                     'Importance samples K per example for the log-likelihood '
                     'estimate; a positive integer (Burda et al. 2016 use '
                     '5000; the cost grows linearly with it).',
                     lower_bound=1)
flags.DEFINE_integer('batch_size', _flags.BATCH_SIZE,
                     'Examples evaluated together; a positive integer. '
                     'Memory grows with it; the results do not depend on it.',
                     lower_bound=1)
flags.DEFINE_integer('samples_per_chunk', 0,
                     'Importance samples decoded at once per batch; an integer '
                     '>= 0, 0 choosing it from the batch size so that memory '
                     'stays bounded. The results do not depend on it.',
                     lower_bound=0)
flags.DEFINE_integer('max_examples', 0,
                     'If > 0, evaluate a random subset of this many examples '
                     'of the split, drawn with --seed (never the first rows: '
                     'data files can be sorted by class); 0 evaluates the '
                     'whole split. An integer >= 0.', lower_bound=0)
flags.DEFINE_integer('seed', 0,
                     'Seeds the subset of --max_examples and all sampling '
                     'noise; any integer. The same seed gives the same '
                     'numbers.')
flags.DEFINE_string('data_dir', '',
                    'Directory holding the dataset files; empty uses the one '
                    'the run was trained with (as saved in config.json).')
flags.DEFINE_string('output', '',
                    'Path of the JSON file to write; its directory must '
                    'exist. Empty writes <model_dir>/evaluation_<split>.json.')
_flags.define_gap_flags(
    'how many of the evaluated images to analyse (a random subset drawn '
    'with --seed; all if fewer)')
_flags.define_auto_bool(
    'jit_compile', 'auto',
    'Compile the importance-sampling loop with XLA: true, false, or auto '
    '(the same as true here: it falls back to plain TensorFlow if XLA '
    'cannot compile it).')

_flags.define_xla_cache_flag()

# --jit_compile and --xla_cache_dir are defined by _flags.
flags.adopt_module_key_flags(_flags)
flags.mark_flag_as_required('model_dir')

FLAGS = flags.FLAGS

# (JSON key, row label) of the table, in order; '<key>_stderr' is the error.


def _output_path():
  return FLAGS.output or os.path.join(FLAGS.model_dir,
                                      f'evaluation_{FLAGS.split}.json')


def _check_flags():
  """Exits naming the flag for what the flag parser itself cannot check."""
  config_path = os.path.join(FLAGS.model_dir, names.CONFIG_FILE)
  if not os.path.isfile(config_path):
    sys.exit(f'error: --model_dir={FLAGS.model_dir}: {config_path} does not '
             'exist; it must be a directory written by scripts/train.py.')
  if FLAGS.gaps:
    # Read before TensorFlow starts, so the refusal is immediate.
    try:
      with open(config_path) as f:
        posterior = json.load(f)['model'].get('posterior')
    except (OSError, ValueError, KeyError, TypeError):
      posterior = None  # evaluate_model_dir reports a broken config.json.
    if posterior == 'deterministic':
      sys.exit(f'error: --gaps=True is invalid for --model_dir='
               f'{FLAGS.model_dir}: its posterior is deterministic, a point '
               'mass with no density, so there is no ELBO to split into '
               'approximation and amortization gaps.')
  output_dir = os.path.dirname(os.path.abspath(_output_path()))
  if not os.path.isdir(output_dir) or not os.access(output_dir, os.W_OK):
    sys.exit(f'error: --output={_output_path()}: the directory {output_dir} '
             'does not exist or cannot be written.')


def _format_table(results):
  header = (f'Evaluation of {results["model_dir"]} '
            f'({results["checkpoint_path"]})\n'
            f'on {results["num_examples"]} {results["split"]} images of '
            f'{results["dataset"]}, K={results["num_importance_samples"]} '
            f'importance samples; nats per example.\n')
  lines = [f'  {"metric":<32s} {"value":>12s}   {"+- stderr":>10s}']
  for key, label in names.METRIC_LABELS:
    value = results.get(key)
    stderr = results.get(key + '_stderr')
    value_text = 'n/a' if value is None else (
        f'{value:d}' if isinstance(value, int) else f'{value:.4f}')
    stderr_text = '' if stderr is None else f'+- {stderr:.4f}'
    lines.append(f'  {label:<32s} {value_text:>12s}   {stderr_text:>10s}')
  ess = results.get('effective_sample_size')
  if ess:
    lines.append(
        f'  ESS of the importance weights: mean {ess["mean"]:.1f}, median '
        f'{ess["median"]:.1f}, min {ess["min"]:.1f} of K='
        f'{ess["num_importance_samples"]}; '
        f'{100 * ess["fraction_below_threshold"]:.1f}% of examples below '
        f'{ess["threshold"]:g}')
  return header + '\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  _console.quiet_tensorflow()
  _flags.enable_xla_cache()
  _check_flags()

  with _console.quiet_imports():
    from tfp_vae import data  # pylint: disable=g-import-not-at-top
    from tfp_vae import evaluation  # pylint: disable=g-import-not-at-top
    from tfp_vae import runs  # pylint: disable=g-import-not-at-top
  try:
    results = evaluation.evaluate_model_dir(
        FLAGS.model_dir, split=FLAGS.split,
        num_importance_samples=FLAGS.num_importance_samples,
        batch_size=FLAGS.batch_size, max_examples=FLAGS.max_examples,
        seed=FLAGS.seed, data_dir=FLAGS.data_dir or None,
        samples_per_chunk=FLAGS.samples_per_chunk or None,
        jit_compile=FLAGS.jit_compile is not False,
        gap_examples=FLAGS.gap_examples if FLAGS.gaps else 0,
        gap_max_steps=FLAGS.gap_max_steps, gap_samples=FLAGS.gap_samples)
  except (data.DataError, ValueError, FileNotFoundError) as error:
    sys.exit(f'error: {error}')
  print(_format_table(results))
  if results.get('gaps'):
    print()
    print(evaluation.format_gap_table(
        results['gaps'], title=f'Inference gaps on '
        f'{results["gaps"]["num_examples"]} of the images (Cremer et al. '
        '2018); nats per example.'))
  runs.write_json_atomically(_output_path(), results)
  print(f'\nWrote {_output_path()}')


def run():
  """The console command (setup.cfg's entry point)."""
  app.run(main, flags_parser=_flags.flags_parser(__doc__, __name__))


if __name__ == '__main__':
  run()
