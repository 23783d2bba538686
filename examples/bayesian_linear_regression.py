r"""Bayesian linear regression by variational inference, checked against exact.

The model is a `tfd.JointDistributionNamed`:

```none
weights ~ Normal(0, alpha^-1 I)                          # [D]
targets | weights ~ Normal(X @ weights, sigma^2 I)       # [N]
```

Its posterior is Gaussian and known in closed form (conjugacy):

```none
precision  = alpha I + X^T X / sigma^2
covariance = precision^-1
mean       = covariance @ X^T y / sigma^2
```

A full-covariance surrogate from `tfp_vae.surrogates.trainable_surrogate`,
fitted with `tfp.vi.fit_surrogate_posterior`, contains that posterior, so it
should find it: its mean, standard deviations and correlations are compared
with the exact ones. The features are correlated, so the posterior is too;
a diagonal (mean-field) surrogate, fitted the same way, cannot represent
that, and reverse KL has a known optimum for it: the exact mean, with
standard deviations 1 / sqrt(precision[i, i]), narrower than the true
marginals. Both facts are checked.

Usage:
  python examples/bayesian_linear_regression.py [--num_steps=1000]
"""

import argparse
import sys

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as keras  # Keras 2, as tfp.layers and tfp_vae use.

import tfp_vae

tfd = tfp.distributions

NUM_FEATURES = 3
PRIOR_PRECISION = 1.0  # alpha
NOISE_SCALE = 0.5      # sigma
FEATURE_CORRELATION = 0.9  # Between features 0 and 1.
TRUE_WEIGHTS = (1.0, -0.5, 0.25)

# Tolerances of the full-covariance fit. Stochastic gradients leave the
# optimum blurred by the last steps' noise; these bound that blur.
MEAN_TOLERANCE = 0.1          # |mean_q - mean| / posterior stddev
STDDEV_TOLERANCE = 0.1        # |stddev_q / stddev - 1|
CORRELATION_TOLERANCE = 0.1   # |corr_q - corr|
KL_TOLERANCE = 0.02           # KL(q || exact posterior), nats


def make_data(num_examples, seed):
  """Features with correlated columns 0 and 1, and targets from the model."""
  rng = np.random.default_rng(seed)
  feature_covariance = np.eye(NUM_FEATURES)
  feature_covariance[0, 1] = feature_covariance[1, 0] = FEATURE_CORRELATION
  features = rng.multivariate_normal(
      np.zeros(NUM_FEATURES), feature_covariance, size=num_examples)
  targets = features @ np.array(TRUE_WEIGHTS) + NOISE_SCALE * rng.normal(
      size=num_examples)
  return features.astype(np.float32), targets.astype(np.float32)


def make_joint_model(features):
  """The prior over weights and the likelihood of the targets."""
  return tfd.JointDistributionNamed(dict(
      weights=tfd.MultivariateNormalDiag(
          loc=tf.zeros(NUM_FEATURES),
          scale_diag=tf.fill([NUM_FEATURES], PRIOR_PRECISION**-0.5)),
      # matvec broadcasts: weights [S, D] -> means [S, N].
      targets=lambda weights: tfd.Independent(
          tfd.Normal(tf.linalg.matvec(features, weights), NOISE_SCALE),
          reinterpreted_batch_ndims=1),
  ))


def exact_posterior(features, targets):
  """The conjugate posterior over weights: (mean [D], precision [D, D])."""
  features = features.astype(np.float64)
  precision = (PRIOR_PRECISION * np.eye(NUM_FEATURES) +
               features.T @ features / NOISE_SCALE**2)
  mean = np.linalg.solve(precision, features.T @ targets / NOISE_SCALE**2)
  return mean, precision


def fit(layer, joint_model, targets, num_steps, sample_size, seed):
  """Fits a surrogate built from `layer` to p(weights | targets)."""
  surrogate = tfp_vae.trainable_surrogate(layer, initial_scale=0.1)
  # The learning rate decays so the last steps' noise shrinks with it.
  learning_rate = keras.optimizers.schedules.PolynomialDecay(
      0.05, decay_steps=num_steps, end_learning_rate=0.002)
  tfp.vi.fit_surrogate_posterior(
      lambda weights: joint_model.log_prob(weights=weights, targets=targets),
      surrogate,
      optimizer=keras.optimizers.Adam(learning_rate),
      num_steps=num_steps, sample_size=sample_size, seed=seed)
  return surrogate


def gaussian_kl(mean_q, covariance_q, mean_p, precision_p):
  """KL(N(mean_q, covariance_q) || N(mean_p, precision_p^-1)) in nats."""
  diff = mean_q - mean_p
  return 0.5 * (np.trace(precision_p @ covariance_q) + diff @ precision_p @ diff
                - len(mean_q) - np.linalg.slogdet(precision_p)[1]
                - np.linalg.slogdet(covariance_q)[1])


def correlation(covariance):
  stddev = np.sqrt(np.diag(covariance))
  return covariance / np.outer(stddev, stddev)


def check(name, value, tolerance):
  """Prints one check; True when `value <= tolerance`."""
  passed = bool(value <= tolerance)
  print(f'  {name}: {value:.4f} (tolerance {tolerance}) '
        f'{"PASS" if passed else "FAIL"}')
  return passed


def run(num_examples=100, num_steps=1000, sample_size=64, seed=0):
  """Fits both surrogates and prints the checks; True when all pass."""
  features, targets = make_data(num_examples, seed)
  joint_model = make_joint_model(features)
  mean, precision = exact_posterior(features, targets)
  covariance = np.linalg.inv(precision)
  stddev = np.sqrt(np.diag(covariance))
  print(f'Exact posterior: mean {np.round(mean, 3)}, stddev '
        f'{np.round(stddev, 3)}, corr(w0, w1) {correlation(covariance)[0, 1]:.3f}')
  results = []

  full = fit(tfp_vae.FullCovarianceGaussianPosterior(NUM_FEATURES),
             joint_model, targets, num_steps, sample_size, seed=(seed, 1))
  full_mean = full.mean().numpy().astype(np.float64)
  full_covariance = full.covariance().numpy().astype(np.float64)
  print(f'Full-covariance surrogate: mean {np.round(full_mean, 3)}, stddev '
        f'{np.round(np.sqrt(np.diag(full_covariance)), 3)}, corr(w0, w1) '
        f'{correlation(full_covariance)[0, 1]:.3f}')
  results += [
      check('full_cov max |mean error| / posterior stddev',
            np.max(np.abs(full_mean - mean) / stddev), MEAN_TOLERANCE),
      check('full_cov max |stddev ratio - 1|',
            np.max(np.abs(np.sqrt(np.diag(full_covariance)) / stddev - 1)),
            STDDEV_TOLERANCE),
      check('full_cov max |correlation error|',
            np.max(np.abs(correlation(full_covariance) -
                          correlation(covariance))), CORRELATION_TOLERANCE),
      check('full_cov KL(q || exact posterior)',
            gaussian_kl(full_mean, full_covariance, mean, precision),
            KL_TOLERANCE),
  ]

  diag = fit(tfp_vae.DiagonalGaussianPosterior(NUM_FEATURES),
             joint_model, targets, num_steps, sample_size, seed=(seed, 2))
  diag_mean = diag.mean().numpy().astype(np.float64)
  diag_stddev = diag.stddev().numpy().astype(np.float64)
  # Reverse KL's mean-field optimum for a Gaussian target.
  mean_field_stddev = 1 / np.sqrt(np.diag(precision))
  print(f'Diagonal surrogate: mean {np.round(diag_mean, 3)}, stddev '
        f'{np.round(diag_stddev, 3)} (mean-field optimum '
        f'{np.round(mean_field_stddev, 3)})')
  results += [
      check('diag max |mean error| / posterior stddev',
            np.max(np.abs(diag_mean - mean) / stddev), MEAN_TOLERANCE),
      check('diag max |stddev / (1 / sqrt(precision_ii)) - 1|',
            np.max(np.abs(diag_stddev / mean_field_stddev - 1)),
            STDDEV_TOLERANCE),
      # The correlated pair's marginals are much wider than mean-field's.
      check('diag stddev(w0) / exact stddev(w0) (must be < 0.7)',
            diag_stddev[0] / stddev[0], 0.7),
  ]
  print('All checks passed.' if all(results) else 'Some checks FAILED.')
  return all(results)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--num_examples', type=int, default=100)
  parser.add_argument('--num_steps', type=int, default=1000)
  parser.add_argument('--sample_size', type=int, default=64,
                      help='Monte Carlo samples per ELBO estimate.')
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  for flag in ('num_examples', 'num_steps', 'sample_size'):
    if getattr(args, flag) <= 0:
      parser.error(f'--{flag} must be > 0; got {getattr(args, flag)}.')
  passed = run(args.num_examples, args.num_steps, args.sample_size, args.seed)
  return 0 if passed else 1


if __name__ == '__main__':
  sys.exit(main())
