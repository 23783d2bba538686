r"""A mixture density network with full-covariance Gaussian components.

The targets are bimodal given the input, with an input-dependent chance of
each mode, so no single Gaussian (however its mean and covariance depend on
x) can fit them:

```none
x ~ Uniform(-1, 1)
upper ~ Bernoulli(sigmoid(3 * x))            # which mode
y | x, upper=1 ~ Normal([ x,  1], [[0.04,  0.028], [ 0.028, 0.04  ]])
y | x, upper=0 ~ Normal([-x, -1], [[0.09, -0.0315], [-0.0315, 0.0225]])
```

The network is `tfp.layers.MixtureSameFamily` with a
`tfp_vae.FullCovarianceGaussianPosterior` as its component layer: the
package's layer used as it is, inside TFP's own composition layer, with
batch shape `[B, K]` from `[B, K, params_size]` params. None of the VAE's
uses has a mixture over it or a batch of components per example.

Checks, against the known truth on held-out data:
  * the K-component MDN's NLL is within a tolerance of the true density's;
  * a one-component "MDN" (a single full-covariance Gaussian head) is far
    from it, so the mixture is what fits the data;
  * the MDN's probability of the upper mode (mixture weights of the
    components whose mean has y1 > 0) matches sigmoid(3 x) on a grid.

Usage:
  python examples/mixture_density_network.py [--num_components=3]
"""

import argparse
import sys

import numpy as np
import tensorflow_probability as tfp
import tf_keras as keras  # Keras 2, as tfp.layers and tfp_vae use.

import tfp_vae

tfd = tfp.distributions
tfpl = tfp.layers

EVENT_SIZE = 2
BATCH_SIZE = 100
UPPER_COVARIANCE = np.array([[0.04, 0.028], [0.028, 0.04]])       # rho +0.7
LOWER_COVARIANCE = np.array([[0.09, -0.0315], [-0.0315, 0.0225]])  # rho -0.7

NLL_GAP_TOLERANCE = 0.05         # NLL(MDN) - NLL(truth), nats
SINGLE_GAUSSIAN_MIN_GAP = 0.3    # NLL(one Gaussian) - NLL(truth), nats
UPPER_MODE_TOLERANCE = 0.05      # mean |P(upper | x) - sigmoid(3 x)|


def upper_mode_probability(x):
  return 1 / (1 + np.exp(-3 * x))


def true_distribution(x):
  """The true p(y | x): batch [N], event [2]."""
  x = x.astype(np.float64)
  upper_loc = np.stack([x, np.ones_like(x)], axis=-1)  # [N, 2]
  probs = upper_mode_probability(x)
  return tfd.MixtureSameFamily(
      tfd.Categorical(probs=np.stack([probs, 1 - probs], axis=-1)),
      tfd.MultivariateNormalTriL(
          loc=np.stack([upper_loc, -upper_loc], axis=-2),  # [N, 2, 2]
          scale_tril=np.linalg.cholesky(
              np.stack([UPPER_COVARIANCE, LOWER_COVARIANCE]))))


def make_data(num_examples, seed):
  x = np.random.default_rng(seed).uniform(-1, 1, size=num_examples)
  targets = true_distribution(x).sample(seed=(seed, 0)).numpy()
  return (x.astype(np.float32)[:, np.newaxis],  # [N, 1]
          targets.astype(np.float32))           # [N, 2]


def make_model(num_components, hidden_units):
  # 'mean' as the component layer's tensor stand-in: MixtureSameFamily
  # calls it once per forward pass, and a sample would be wasted work.
  component = tfp_vae.FullCovarianceGaussianPosterior(
      EVENT_SIZE, min_scale=1e-3, convert_to_tensor_fn='mean')
  params_size = tfpl.MixtureSameFamily.params_size(
      num_components, component.params_size(EVENT_SIZE))
  return keras.Sequential([
      keras.layers.Dense(hidden_units, activation='tanh'),
      keras.layers.Dense(hidden_units, activation='tanh'),
      keras.layers.Dense(params_size),
      tfpl.MixtureSameFamily(num_components, component),
  ])


def fit(num_components, hidden_units, epochs, x_train, y_train):
  model = make_model(num_components, hidden_units)
  steps = epochs * -(-len(x_train) // BATCH_SIZE)
  learning_rate = keras.optimizers.schedules.PolynomialDecay(
      0.01, decay_steps=steps, end_learning_rate=1e-4)
  model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                loss=negative_log_likelihood)
  model.fit(x_train, y_train, batch_size=BATCH_SIZE, epochs=epochs, verbose=0)
  return model


def negative_log_likelihood(targets, distribution):
  return -distribution.log_prob(targets)  # [B]


def check(name, value, tolerance, at_least=False):
  """Prints one check: `value <= tolerance` (or `>=` with `at_least`)."""
  passed = bool(value >= tolerance if at_least else value <= tolerance)
  bound = 'at least' if at_least else 'tolerance'
  print(f'  {name}: {value:.4f} ({bound} {tolerance}) '
        f'{"PASS" if passed else "FAIL"}')
  return passed


def run(num_examples=4000, epochs=40, num_components=3, hidden_units=64,
        seed=0):
  """Trains the MDN and a single Gaussian; prints the checks."""
  keras.utils.set_random_seed(seed)
  x_train, y_train = make_data(num_examples, seed)
  x_test, y_test = make_data(2000, seed + 1)
  nll_truth = -np.mean(true_distribution(x_test[:, 0]).log_prob(y_test))

  mdn = fit(num_components, hidden_units, epochs, x_train, y_train)
  single = fit(1, hidden_units, epochs, x_train, y_train)
  nll_mdn = -np.mean(mdn(x_test).log_prob(y_test).numpy())
  nll_single = -np.mean(single(x_test).log_prob(y_test).numpy())
  print(f'Held-out NLL: true density {nll_truth:.4f}, {num_components}-'
        f'component MDN {nll_mdn:.4f}, single Gaussian {nll_single:.4f}')

  grid = np.linspace(-0.9, 0.9, 37, dtype=np.float32)
  prediction = mdn(grid[:, np.newaxis])  # batch [37], event [2]
  weights = prediction.mixture_distribution.probs_parameter().numpy()  # [37, K]
  component_means = prediction.components_distribution.mean().numpy()  # [37, K, 2]
  learned_upper = np.sum(weights * (component_means[..., 1] > 0), axis=-1)
  for x, truth, learned in zip(grid[::9], upper_mode_probability(grid[::9]),
                               learned_upper[::9]):
    print(f'x = {x:+.2f}: P(upper mode) true {truth:.3f}, MDN {learned:.3f}')
  results = [
      check(f'NLL({num_components}-component MDN) - NLL(truth)',
            nll_mdn - nll_truth, NLL_GAP_TOLERANCE),
      check('NLL(single Gaussian) - NLL(truth)', nll_single - nll_truth,
            SINGLE_GAUSSIAN_MIN_GAP, at_least=True),
      check('mean |P(upper mode | x) - sigmoid(3 x)|',
            np.mean(np.abs(learned_upper - upper_mode_probability(grid))),
            UPPER_MODE_TOLERANCE),
  ]
  print('All checks passed.' if all(results) else 'Some checks FAILED.')
  return all(results)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--num_examples', type=int, default=4000)
  parser.add_argument('--epochs', type=int, default=40)
  parser.add_argument('--num_components', type=int, default=3)
  parser.add_argument('--hidden_units', type=int, default=64)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  for flag in ('num_examples', 'epochs', 'num_components', 'hidden_units'):
    if getattr(args, flag) <= 0:
      parser.error(f'--{flag} must be > 0; got {getattr(args, flag)}.')
  passed = run(args.num_examples, args.epochs, args.num_components,
               args.hidden_units, args.seed)
  return 0 if passed else 1


if __name__ == '__main__':
  sys.exit(main())
