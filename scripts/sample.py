r"""Pictures from a trained VAE: prior samples, reconstructions, interpolations.

  python scripts/sample.py --model_dir=runs/fashion_mnist-diag
  python scripts/sample.py --model_dir=DIR --what=reconstructions,interpolation \
      --indices=3,17,42 --split=validation
  python scripts/sample.py --model_dir=DIR --images=a.png,b.png --steps=12

Writes one PNG per figure to --output_dir (default <model_dir>/samples/):

  prior_samples.png     decoder means at z ~ p(z), a grid of
                        --num_prior_samples
  reconstructions.png   the images, the binarized input the model saw (for
                        binarized data) and the reconstruction, labelled
  interpolation.png     decoder means on the line between the posterior
                        means of the first two images
  traversals.png        each active latent coordinate swept through the
                        prior's quantiles, the others at the first image's
                        posterior mean

See `tfp_vae.sampling` for what each figure computes.
"""

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
# flag fails at once. These tables repeat tfp_vae.sampling's and
# tfp_vae.names's, whose import would import TensorFlow first.
_FIGURES = ('prior', 'reconstructions', 'interpolation', 'traversals')
_SPLITS = ('test', 'validation', 'train')
_CONFIG_FILE = 'config.json'  # What scripts/train.py writes in model_dir.

flags.DEFINE_string('model_dir', None,
                    'Directory of a run of scripts/train.py; it must hold '
                    'config.json and the final model or a checkpoint. '
                    'Required.')
flags.DEFINE_list('what', [],
                  'Comma-separated figures to make, from '
                  f'{",".join(_FIGURES)}. Empty: all that the images allow '
                  '(an interpolation needs two).')
flags.DEFINE_integer('num_prior_samples', 64,
                     'Prior samples in the grid; a positive integer.',
                     lower_bound=1)
flags.DEFINE_integer('seed', 0,
                     'Seeds the prior samples, the images drawn when neither '
                     '--indices nor --images is given, and the binarization '
                     'of image files; an integer >= 0.', lower_bound=0)
flags.DEFINE_enum('split', 'test', _SPLITS,
                  'Data split that --indices index (the splits the run '
                  'trained with).')
flags.DEFINE_list('indices', [],
                  'Comma-separated indices of --split images, e.g. 3,17,42: '
                  'all are reconstructed, the first two interpolated, the '
                  'first traversed from. Empty (and no --images): 8 images '
                  'drawn with --seed.')
flags.DEFINE_list('images', [],
                  'Comma-separated image files (PNG; JPEG with Pillow) to '
                  'use instead of --indices; converted to grey and resized '
                  "to the model's image shape if their aspect ratio is "
                  'its own.')
flags.DEFINE_integer('steps', 9,
                     'Points along the interpolation and values per '
                     'traversed coordinate; an integer >= 2.', lower_bound=2)
flags.DEFINE_string('output_dir', '',
                    'Directory for the PNGs (created if missing). Empty: '
                    '<model_dir>/samples.')
flags.DEFINE_string('data_dir', '',
                    'Directory holding the dataset files; empty uses the one '
                    'the run was trained with (as saved in config.json).')
_flags.define_xla_cache_flag()
flags.adopt_module_key_flags(_flags)

flags.mark_flag_as_required('model_dir')

FLAGS = flags.FLAGS


def _indices():
  try:
    return tuple(int(i) for i in FLAGS.indices)
  except ValueError:
    sys.exit(f'error: --indices={",".join(FLAGS.indices)} is invalid: '
             'indices must be comma-separated integers >= 0, e.g. 3,17,42.')


def _check_flags():
  """Exits naming the flag for what the library cannot check before TF."""
  for figure in FLAGS.what:
    if figure not in _FIGURES:
      sys.exit(f'error: --what={",".join(FLAGS.what)} is invalid: {figure!r}'
               f' is not one of {", ".join(_FIGURES)}.')
  config_path = os.path.join(FLAGS.model_dir, _CONFIG_FILE)
  if not os.path.isfile(config_path):
    sys.exit(f'error: --model_dir={FLAGS.model_dir}: {config_path} does not '
             'exist; it must be a directory written by scripts/train.py.')
  for path in FLAGS.images:
    if not os.path.isfile(path):
      sys.exit(f'error: --images: {path} does not exist or is not a file.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  _console.quiet_tensorflow()
  _flags.enable_xla_cache()
  indices = _indices()
  _check_flags()

  with _console.quiet_imports():
    from tfp_vae import data  # pylint: disable=g-import-not-at-top
    from tfp_vae import sampling  # pylint: disable=g-import-not-at-top
  try:
    request = sampling.SampleRequest(
        model_dir=FLAGS.model_dir, what=tuple(FLAGS.what),
        num_prior_samples=FLAGS.num_prior_samples, seed=FLAGS.seed,
        split=FLAGS.split,
        indices=indices, image_files=tuple(FLAGS.images), steps=FLAGS.steps,
        output_dir=FLAGS.output_dir, data_dir=FLAGS.data_dir)
    paths = sampling.write_samples(request)
  except (data.DataError, ValueError, FileNotFoundError, OSError) as error:
    sys.exit(f'error: {error}')
  for figure, path in paths.items():
    print(f'{figure:<16s} {path}')


def run():
  """The console command (setup.cfg's entry point)."""
  app.run(main, flags_parser=_flags.flags_parser(__doc__, __name__))


if __name__ == '__main__':
  run()
