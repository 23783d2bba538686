"""Training step time of each posterior family, side by side in one process.

The usual MLP workload (encoder 784-512-512 -> posterior params, D = 16,
decoder 16-512-512-784 Bernoulli, standard normal prior, one latent sample,
Adam 1e-3, batch 128), trained through the package's own `fit` path with
`jit_compile=True` and `steps_per_execution` steps per compiled call, for:

  diag          MultivariateNormalDiag, analytic KL
  diag_mc       the same with the Monte Carlo KL (the IAF's estimator)
  full_cov      MultivariateNormalTriL, analytic KL
  low_rank      diag + rank-2 covariance, analytic KL
  iaf           diagonal base + 2 IAF steps (MADE 64-64), Monte Carlo KL

Each model first runs one execution (tracing, XLA compilation). Then the
families are timed in interleaved rounds (diag, diag_mc, full_cov, ...,
diag, ...), so that a change of machine load between rounds hits every
family alike; each round times `--steps` training steps of one family. The
table gives the median ms per step over the rounds and its ratio to diag's
median, and each family's ratio to diag per round (median, min-max). It
also gives the process's CPU time per step (all threads, `time.process_time`)
and its ratio: on a machine shared with other jobs, wall time includes the
waits for a core (on the 2-core benchmark machine shared by 6 agents the
wall times came out quantized to the scheduler's periods), while CPU time
counts the work each family's step does. Data are random binary images: the
step time does not depend on their content.

  python benchmarks/posterior_families_benchmark.py                # ~3 min
  python benchmarks/posterior_families_benchmark.py --rounds=3 --steps=50
"""

import argparse
import json
import os
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from tfp_vae._keras import keras  # pylint: disable=g-import-not-at-top
from tfp_vae.config import ModelConfig  # pylint: disable=g-import-not-at-top
from tfp_vae.model import VariationalAutoencoder  # pylint: disable=g-import-not-at-top

FAMILIES = {
    'diag': dict(posterior='diag'),
    'diag_mc': dict(posterior='diag', kl='mc'),
    'full_cov': dict(posterior='full_cov'),
    'low_rank': dict(posterior='low_rank', posterior_rank=2),
    'iaf': dict(posterior='iaf', kl='mc', flow_steps=2,
                flow_hidden_units=(64, 64)),
}


def _model(overrides, steps_per_execution):
  config = ModelConfig(image_shape=(28, 28, 1), latent_dim=16,
                       hidden_units=(512, 512), **overrides)
  model = VariationalAutoencoder(config)
  model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True,
                steps_per_execution=steps_per_execution)
  return model


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--families', default=','.join(FAMILIES))
  parser.add_argument('--batch_size', type=int, default=128)
  parser.add_argument('--steps', type=int, default=100,
                      help='training steps per timed round')
  parser.add_argument('--steps_per_execution', type=int, default=50)
  parser.add_argument('--rounds', type=int, default=5)
  parser.add_argument('--output', default='',
                      help='optional JSON file for the results')
  args = parser.parse_args()
  names = args.families.split(',')
  unknown = sorted(set(names) - set(FAMILIES))
  if unknown:
    raise ValueError(f'--families: unknown {unknown}; known: {list(FAMILIES)}')
  if args.steps % args.steps_per_execution:
    raise ValueError(f'--steps={args.steps} must be a multiple of '
                     f'--steps_per_execution={args.steps_per_execution}.')

  rng = np.random.default_rng(0)
  images = (rng.random((args.batch_size * args.steps, 28, 28, 1)) < 0.3
           ).astype(np.float32)
  # Static batch shape (drop_remainder): the package's fused XLA loop runs.
  dataset = tf.data.Dataset.from_tensor_slices(images).batch(
      args.batch_size, drop_remainder=True).repeat().prefetch(4)

  models = {}
  for name in names:
    keras.utils.set_random_seed(0)
    models[name] = _model(FAMILIES[name], args.steps_per_execution)
    start = time.perf_counter()
    models[name].fit(dataset, steps_per_epoch=args.steps_per_execution,
                     epochs=1, verbose=0)
    print(f'{name}: first execution (trace + compile) '
          f'{time.perf_counter() - start:.1f} s', flush=True)

  ms_per_step = {name: [] for name in names}
  cpu_ms_per_step = {name: [] for name in names}
  for round_index in range(args.rounds):
    for name in names:
      start, cpu_start = time.perf_counter(), time.process_time()
      models[name].fit(dataset, steps_per_epoch=args.steps, epochs=1,
                       verbose=0)
      ms_per_step[name].append(
          1e3 * (time.perf_counter() - start) / args.steps)
      cpu_ms_per_step[name].append(
          1e3 * (time.process_time() - cpu_start) / args.steps)
    print(f'round {round_index + 1}: ' + ', '.join(
        f'{n} {ms_per_step[n][-1]:.2f} ({cpu_ms_per_step[n][-1]:.2f} cpu)'
        for n in names) + ' ms/step', flush=True)

  reference = 'diag' if 'diag' in names else names[0]
  reference_median = np.median(ms_per_step[reference])
  reference_cpu_median = np.median(cpu_ms_per_step[reference])
  print(f'\nbatch {args.batch_size}, {args.rounds} rounds x {args.steps} '
        f'steps; ratios to {reference}')
  print(f'{"family":<10} {"ms/step":>8} {"ratio":>6} '
        f'{"per-round ratio: median (min-max)":>34} '
        f'{"cpu ms/step":>12} {"cpu ratio":>9}')
  results = {}
  for name in names:
    per_round = np.array(ms_per_step[name]) / np.array(
        ms_per_step[reference])
    median = float(np.median(ms_per_step[name]))
    cpu_median = float(np.median(cpu_ms_per_step[name]))
    results[name] = dict(ms_per_step=ms_per_step[name],
                         cpu_ms_per_step=cpu_ms_per_step[name],
                         median_ms_per_step=median,
                         median_cpu_ms_per_step=cpu_median,
                         ratio_of_medians=median / reference_median,
                         cpu_ratio_of_medians=cpu_median /
                         reference_cpu_median,
                         per_round_ratios=per_round.tolist())
    print(f'{name:<10} {median:8.2f} {median / reference_median:6.2f} '
          f'{np.median(per_round):>17.2f} ({per_round.min():.2f}-'
          f'{per_round.max():.2f}) {cpu_median:12.2f} '
          f'{cpu_median / reference_cpu_median:9.2f}')
  if args.output:
    with open(args.output, 'w') as f:
      json.dump(dict(args=vars(args), results=results), f, indent=2)


if __name__ == '__main__':
  main()
