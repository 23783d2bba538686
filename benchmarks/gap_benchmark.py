"""Cost of the inference-gap analysis (`tfp_vae.evaluation.gap_analysis`).

Runs the analysis on test images of trained runs (one per posterior family)
and prints, per run, the wall time of its phases (the local fit of q*_x, the
two K-sample importance-sampling passes) and the GFLOP/s of the decoder's
multiply-adds they execute, with the gap table itself.

FLOPs counted (the convention of `_workloads.py`: dense multiply-adds x 2,
elementwise work not counted):

```none
importance sampling  2 passes * N * K * 2 * decoder_macs
local fit            sum over batches of (loop trips * B) * S *
                     4 * decoder_macs   (forward 2, backward to the
                                         latents 2; no weight gradients)
```

A batch's loop runs until its slowest example stops, and converged examples
are still computed (their updates are masked), so the fit's count uses each
batch's trip count, the max of its examples' steps.

  python benchmarks/gap_benchmark.py \
      --model_dirs=runs/binarized_mnist-diag,runs/binarized_mnist-full_cov \
      --num_examples=1000 --output=benchmarks/results/gaps_cpu.json

The model directories come from `scripts/train.py` (the usual MLP model:
784-512-512 encoder, D=16).
"""

import json
import os
import time

from absl import app
from absl import flags
import numpy as np

flags.DEFINE_list('model_dirs', None, 'Model directories written by '
                  'scripts/train.py, one per posterior family.')
flags.DEFINE_string('data_dir', '', 'Dataset directory (default: each '
                    "run's own data_dir).")
flags.DEFINE_integer('num_examples', 1000, 'Test images analysed (a seeded '
                     'random subset).')
flags.DEFINE_integer('num_importance_samples', 5000, 'K per estimate.')
flags.DEFINE_integer('max_steps', None, 'Cap on the fit steps (default: '
                     'tfp_vae.evaluation.local_fit.DEFAULT_MAX_STEPS).')
flags.DEFINE_integer('num_samples', None, 'Samples per fit step (default: '
                     'tfp_vae.evaluation.local_fit.DEFAULT_NUM_SAMPLES).')
flags.DEFINE_integer('batch_size', None, 'Examples per batch (default 100).')
flags.DEFINE_integer('seed', 0, 'Seed of the subset and of all noise.')
flags.DEFINE_string('output', '', 'Optional JSON file for the results.')
flags.mark_flag_as_required('model_dirs')

FLAGS = flags.FLAGS


def _dense_macs(model):
  """Multiply-adds of the decoder's Dense layers per latent sample."""
  return sum(int(np.prod(layer.kernel.shape))
             for layer in model.decoder.layers if hasattr(layer, 'kernel'))


def _fit_trips(fit_num_steps, batch_size):
  """Sum over batches of (the batch's loop trips * its number of examples)."""
  total = 0
  for start in range(0, len(fit_num_steps), batch_size):
    batch = fit_num_steps[start:start + batch_size]
    total += int(np.max(batch)) * len(batch)
  return total


def _run(model_dir):
  import dataclasses  # pylint: disable=g-import-not-at-top
  from tfp_vae import data  # pylint: disable=g-import-not-at-top
  from tfp_vae import evaluation  # pylint: disable=g-import-not-at-top
  from tfp_vae import runs  # pylint: disable=g-import-not-at-top

  loaded = runs.load_trained_model(model_dir)
  train_config = loaded.train_config
  if FLAGS.data_dir:
    train_config = dataclasses.replace(train_config, data_dir=FLAGS.data_dir)
  dataset = data.load_data(train_config, loaded.model_config)
  model = loaded.model
  kwargs = {}
  for name in ('max_steps', 'num_samples', 'batch_size'):
    if getattr(FLAGS, name) is not None:
      kwargs[name] = getattr(FLAGS, name)
  start = time.perf_counter()
  report = evaluation.gap_analysis(
      model, dataset.test_images, num_examples=FLAGS.num_examples,
      num_importance_samples=FLAGS.num_importance_samples, seed=FLAGS.seed,
      **kwargs)
  wall_s = time.perf_counter() - start

  settings = report.settings
  decoder_macs = _dense_macs(model)
  num_examples = report.num_examples
  is_flops = (2 * num_examples * settings['num_importance_samples'] *
              2 * decoder_macs)
  fit_flops = (_fit_trips(report.fit_num_steps, settings['batch_size']) *
               settings['num_samples'] * 4 * decoder_macs)
  seconds = report.seconds
  result = {
      'model_dir': model_dir,
      'posterior': settings['posterior'],
      'num_examples': num_examples,
      'settings': {k: v for k, v in settings.items()
                   if k != 'example_indices'},
      'wall_s': round(wall_s, 1),
      'fit_s': round(seconds['fit'], 1),
      'importance_sampling_s': round(seconds['importance_sampling'], 1),
      'fit_gflop': round(fit_flops / 1e9, 1),
      'importance_sampling_gflop': round(is_flops / 1e9, 1),
      'fit_gflops': round(fit_flops / seconds['fit'] / 1e9, 1),
      'importance_sampling_gflops': round(
          is_flops / seconds['importance_sampling'] / 1e9, 1),
      'total_gflops': round((fit_flops + is_flops) / wall_s / 1e9, 1),
      'summary': report.summary(),
  }
  print(report.format_table(
      title=f'{model_dir} ({settings["posterior"]}, {num_examples} test '
      f'images)'))
  print(f'wall {wall_s:.1f} s: fit {seconds["fit"]:.1f} s '
        f'({result["fit_gflop"]:.0f} GFLOP, {result["fit_gflops"]:.1f} '
        f'GFLOP/s), importance sampling '
        f'{seconds["importance_sampling"]:.1f} s '
        f'({result["importance_sampling_gflop"]:.0f} GFLOP, '
        f'{result["importance_sampling_gflops"]:.1f} GFLOP/s); '
        f'{result["total_gflops"]:.1f} GFLOP/s overall\n')
  return result


def main(argv):
  del argv
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  results = [_run(model_dir) for model_dir in FLAGS.model_dirs]
  if FLAGS.output:
    with open(FLAGS.output, 'w') as file:
      json.dump(results, file, indent=2)


if __name__ == '__main__':
  app.run(main)
