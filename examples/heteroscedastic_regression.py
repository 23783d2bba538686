r"""A two-output regression whose noise covariance depends on the input.

Each input x in [-1, 1] has two targets with a known, input-dependent
Gaussian noise: their scales and their correlation change with x.

```none
mean(x)    = [sin(pi * x), x^2]
stddev(x)  = [0.1 + 0.1 * (x + 1), 0.3 - 0.1 * x]
rho(x)     = 0.8 * x                 # correlation of the two targets
y | x ~ Normal(mean(x), Sigma(x)),  Sigma(x) = [[s0^2,      rho s0 s1],
                                                [rho s0 s1, s1^2     ]]
```

An MLP predicts the 5 params of a `tfp_vae.FullCovarianceGaussianPosterior`
output layer, trained by negative log-likelihood (the layer is used as any
`tfp.layers` head). On a grid of inputs the learned correlation and
standard deviations are compared with the true ones, and the held-out
negative log-likelihood with that of the true conditional density (their
difference estimates the KL from the truth to the model). `--plot_path`
draws the learned correlation and scales against the true ones.

Usage:
  python examples/heteroscedastic_regression.py --plot_path=/tmp/corr.png
"""

import argparse
import sys

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as keras  # Keras 2, as tfp.layers and tfp_vae use.

import tfp_vae

tfd = tfp.distributions

EVENT_SIZE = 2
BATCH_SIZE = 100
# Tolerances, on inputs in [-0.9, 0.9] (the data thin out at the ends).
CORRELATION_TOLERANCE = 0.1  # mean |rho_learned(x) - rho(x)|
STDDEV_TOLERANCE = 0.15      # mean |stddev_learned(x) / stddev(x) - 1|
NLL_GAP_TOLERANCE = 0.05     # held-out NLL(model) - NLL(truth), nats


def true_mean(x):
  return np.stack([np.sin(np.pi * x), x**2], axis=-1)  # [N, 2]


def true_stddev(x):
  return np.stack([0.1 + 0.1 * (x + 1), 0.3 - 0.1 * x], axis=-1)  # [N, 2]


def true_correlation(x):
  return 0.8 * x  # [N]


def true_distribution(x):
  """The true p(y | x), batch [N], event [2]."""
  stddev, rho = true_stddev(x), true_correlation(x)
  # Cholesky factor of [[s0^2, rho s0 s1], [rho s0 s1, s1^2]].
  zeros = np.zeros_like(x)
  scale_tril = np.stack([
      np.stack([stddev[:, 0], zeros], axis=-1),
      np.stack([rho * stddev[:, 1], np.sqrt(1 - rho**2) * stddev[:, 1]],
               axis=-1),
  ], axis=-2)  # [N, 2, 2]
  return tfd.MultivariateNormalTriL(true_mean(x).astype(np.float32),
                                    scale_tril.astype(np.float32))


def make_data(num_examples, seed):
  x = np.random.default_rng(seed).uniform(-1, 1, size=num_examples)
  targets = true_distribution(x).sample(seed=(seed, 0)).numpy()
  return x.astype(np.float32)[:, np.newaxis], targets  # [N, 1], [N, 2]


def make_model(hidden_units):
  head = tfp_vae.FullCovarianceGaussianPosterior
  return keras.Sequential([
      keras.layers.Dense(hidden_units, activation='tanh'),
      keras.layers.Dense(hidden_units, activation='tanh'),
      keras.layers.Dense(head.params_size(EVENT_SIZE)),
      # A floor of 1e-3 on the Cholesky diagonal: a density with a
      # vanishing scale grows without bound, and the targets' noise here
      # is never below 0.1.
      head(EVENT_SIZE, min_scale=1e-3),
  ])


def correlation_and_stddev(covariance):
  """[N, 2, 2] covariances -> correlation [N], stddev [N, 2]."""
  stddev = np.sqrt(np.diagonal(covariance, axis1=-2, axis2=-1))
  return covariance[:, 0, 1] / (stddev[:, 0] * stddev[:, 1]), stddev


def plot(grid, learned_correlation, learned_stddev, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  figure, (corr_axes, scale_axes) = plt.subplots(1, 2, figsize=(9, 3.5))
  corr_axes.plot(grid, true_correlation(grid), 'k--', label='true')
  corr_axes.plot(grid, learned_correlation, 'C0', label='learned')
  corr_axes.set(xlabel='x', ylabel='correlation of y0, y1',
                title='Noise correlation')
  corr_axes.legend()
  for i in range(EVENT_SIZE):
    scale_axes.plot(grid, true_stddev(grid)[:, i], 'k--',
                    label='true' if i == 0 else None)
    scale_axes.plot(grid, learned_stddev[:, i], f'C{i + 1}',
                    label=f'learned stddev(y{i})')
  scale_axes.set(xlabel='x', ylabel='stddev', title='Noise scales')
  scale_axes.legend()
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)


def negative_log_likelihood(targets, distribution):
  return -distribution.log_prob(targets)  # [B]


def check(name, value, tolerance):
  """Prints one check; True when `value <= tolerance`."""
  passed = bool(value <= tolerance)
  print(f'  {name}: {value:.4f} (tolerance {tolerance}) '
        f'{"PASS" if passed else "FAIL"}')
  return passed


def run(num_examples=4000, epochs=40, hidden_units=64, seed=0,
        plot_path=None):
  """Trains the head and prints the checks; True when all pass."""
  keras.utils.set_random_seed(seed)
  x_train, y_train = make_data(num_examples, seed)
  x_test, y_test = make_data(2000, seed + 1)
  model = make_model(hidden_units)
  steps_per_epoch = -(-num_examples // BATCH_SIZE)
  # The rate decays so the fit settles instead of jittering around the
  # optimum, which the NLL check would see.
  learning_rate = keras.optimizers.schedules.PolynomialDecay(
      0.01, decay_steps=epochs * steps_per_epoch, end_learning_rate=1e-4)
  model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                loss=negative_log_likelihood)
  model.fit(x_train, y_train, batch_size=BATCH_SIZE, epochs=epochs, verbose=0)

  grid = np.linspace(-0.9, 0.9, 37, dtype=np.float32)
  prediction = model(grid[:, np.newaxis])  # batch [37], event [2]
  learned_correlation, learned_stddev = correlation_and_stddev(
      prediction.covariance().numpy())
  for x, rho, learned in zip(grid[::9], true_correlation(grid[::9]),
                             learned_correlation[::9]):
    print(f'x = {x:+.2f}: true correlation {rho:+.3f}, learned {learned:+.3f}')
  nll_model = -np.mean(model(x_test).log_prob(y_test).numpy())
  nll_truth = -np.mean(true_distribution(x_test[:, 0]).log_prob(y_test).numpy())
  print(f'Held-out NLL: model {nll_model:.4f}, true density {nll_truth:.4f}')
  results = [
      check('mean |learned - true correlation|',
            np.mean(np.abs(learned_correlation - true_correlation(grid))),
            CORRELATION_TOLERANCE),
      check('mean |learned / true stddev - 1|',
            np.mean(np.abs(learned_stddev / true_stddev(grid) - 1)),
            STDDEV_TOLERANCE),
      check('held-out NLL(model) - NLL(truth)', nll_model - nll_truth,
            NLL_GAP_TOLERANCE),
  ]
  if plot_path:
    plot(grid, learned_correlation, learned_stddev, plot_path)
    print(f'Plot written to {plot_path}')
  print('All checks passed.' if all(results) else 'Some checks FAILED.')
  return all(results)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--num_examples', type=int, default=4000)
  parser.add_argument('--epochs', type=int, default=40)
  parser.add_argument('--hidden_units', type=int, default=64)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--plot_path', default=None,
                      help='Where to write the PNG plot (none if unset).')
  args = parser.parse_args(argv)
  for flag in ('num_examples', 'epochs', 'hidden_units'):
    if getattr(args, flag) <= 0:
      parser.error(f'--{flag} must be > 0; got {getattr(args, flag)}.')
  passed = run(args.num_examples, args.epochs, args.hidden_units, args.seed,
               args.plot_path)
  return 0 if passed else 1


if __name__ == '__main__':
  sys.exit(main())
