"""The diagonal-plus-low-rank covariance Gaussian posterior layer.

`LowRankGaussianPosterior`: q(z|x) = N(loc, diag(d) + V V^T), V `[D, R]`,
between the diagonal (R = 0) and the full covariance (R = D). Here too: an
XLA-compilable subclass of `tfd.MultivariateNormalDiagPlusLowRankCovariance`
and its closed-form KL to a linear-operator Gaussian (the prior), which TFP
does not register.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae._checks import check_choice
from tfp_vae._checks import check_positive_float
from tfp_vae._checks import check_positive_int
from tfp_vae._keras import keras
from tfp_vae.distribution_layers._base import _DistributionLayer
from tfp_vae.distribution_layers._base import _PACKAGE
from tfp_vae.distribution_layers._base import POSITIVE_TRANSFORMS

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ['LowRankGaussianPosterior']


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LowRankGaussianPosterior(_DistributionLayer):
  """Gaussian with a diagonal-plus-low-rank covariance over a latent vector.

  `tfd.MultivariateNormalDiagPlusLowRankCovariance`: the covariance is
  `diag(d) + V @ V^T` with V of shape `[D, R]`, between the diagonal (R = 0)
  and the full covariance (R = D, which can represent any covariance; see
  tests). Sampling, `log_prob` (Woodbury identity and the matrix determinant
  lemma) and the KL to a Gaussian prior cost O(D * R^2 + R^3), not O(D^3).

  Why `factor_scale` c, and no zeroed start: the objective depends on V only
  through `V @ V^T`, so V = 0 is a saddle point (its expected gradient is
  zero), and a posterior started there would leave it only by sampling noise.
  Instead V starts small and random: the encoder's raw factor entries are
  O(1) at initialisation and are multiplied by c = 0.03, the off-diagonal
  scale chosen for `FullCovarianceGaussianPosterior` (BENCHMARKS.md), so
  q(z|x) starts within ~R * 1e-3 of diagonal and Adam moves V c times more
  slowly than the other params, as it moves full_cov's off-diagonal entries.
  V can still grow to any value: the family is unchanged.

  Args:
    latent_size: Python `int` > 0, the event size D.
    rank: Python `int` in [1, latent_size], the rank R of the update.
    scale_transform: 'softplus' (default) or 'exp', the map from the raw
      parameter to the standard deviation of the diagonal part.
    min_scale: Python `float` >= 0 added to those standard deviations
      (default 1e-5).
    factor_scale: Python `float` c > 0 multiplying the raw factor entries
      (default 0.03, see above).
    convert_to_tensor_fn, validate_args, **kwargs: as in
      `DiagonalGaussianPosterior`.

  Input: params `[..., 2 * D + D * R]`. Output: batch `[...]`, event `[D]`.

  ```none
  loc, raw_scale, raw_factor = split(params, [D, D, D * R], axis=-1)
  d = (transform(raw_scale) + min_scale)^2                 # [..., D]
  V = c * reshape(raw_factor, [..., D, R])                 # [..., D, R]
  q(z | x) = Normal(z; loc, diag(d) + V @ V^T)
  z = loc + sqrt(d) * eps_1 + V @ eps_2,  eps_1 ~ N(0, I_D), eps_2 ~ N(0, I_R)
  ```
  With V = 0 it is `DiagonalGaussianPosterior` on the first 2 * D params.
  """

  def __init__(self, latent_size, rank, scale_transform='softplus',
               min_scale=1e-5, factor_scale=0.03, convert_to_tensor_fn='sample',
               validate_args=False, **kwargs):
    self._latent_size = check_positive_int(latent_size, 'latent_size')
    self._rank = check_positive_int(rank, 'rank')
    if self._rank > self._latent_size:
      raise ValueError(
          f'`rank` must be at most `latent_size`={self._latent_size} (a '
          f'higher rank adds parameters, not covariances); got {rank}.')
    self._scale_transform = check_choice(
        scale_transform, POSITIVE_TRANSFORMS, 'scale_transform')
    self._min_scale = check_positive_float(min_scale, 'min_scale',
                                            allow_zero=True)
    self._factor_scale = check_positive_float(factor_scale, 'factor_scale')
    super().__init__(convert_to_tensor_fn, validate_args, **kwargs)

  def _distribution_kwargs(self):
    return dict(latent_size=self._latent_size, rank=self._rank,
                scale_transform=self._scale_transform,
                min_scale=self._min_scale, factor_scale=self._factor_scale)

  @staticmethod
  def params_size(latent_size, rank, name=None):
    """Number of parameters: `2 * latent_size + latent_size * rank`."""
    del name
    return 2 * latent_size + latent_size * rank

  @staticmethod
  def new(params, latent_size, rank, scale_transform='softplus',
          min_scale=1e-5, factor_scale=0.03, validate_args=False, name=None):
    """Builds the distribution from `params` of shape `[..., params_size]`."""
    with tf.name_scope(name or 'LowRankGaussianPosterior'):
      params = tf.convert_to_tensor(params, name='params')
      loc, raw_scale, raw_factor = tf.split(
          params, [latent_size, latent_size, latent_size * rank], axis=-1)
      to_scale = tfb.Shift(tf.constant(min_scale, params.dtype))(
          POSITIVE_TRANSFORMS[scale_transform]())
      factor = tf.reshape(
          raw_factor, tf.concat([tf.shape(raw_factor)[:-1],
                                 [latent_size, rank]], axis=0))  # [..., D, R]
      if factor_scale != 1.0:
        factor = factor * tf.constant(factor_scale, params.dtype)
      return _DiagPlusLowRankCovarianceGaussian(
          loc=loc, cov_diag_factor=tf.square(to_scale.forward(raw_scale)),
          cov_perturb_factor=factor, validate_args=validate_args)


def _capacitance_cholesky(diag_variance, factor):
  """Cholesky factor of `I_R + W^T W`, W = diag(1/sqrt(d)) @ V, and W.

  Args:
    diag_variance: `[..., D]`, d.
    factor: `[..., D, R]`, V.

  Returns:
    (cholesky `[..., R, R]`, whitened factor W `[..., D, R]`).
  """
  whitened = factor / tf.sqrt(diag_variance)[..., tf.newaxis]  # [..., D, R]
  rank = tf.compat.dimension_value(factor.shape[-1])
  capacitance = tf.linalg.matmul(whitened, whitened, transpose_a=True) + (
      tf.eye(rank, dtype=factor.dtype))  # [..., R, R]
  return tf.linalg.cholesky(capacitance), whitened


def _low_rank_log_det(diag_variance, capacitance_cholesky):
  """log det(diag(d) + V V^T) by the matrix determinant lemma."""
  return (tf.reduce_sum(tf.math.log(diag_variance), axis=-1) + 2.0 *
          tf.reduce_sum(tf.math.log(
              tf.linalg.diag_part(capacitance_cholesky)), axis=-1))


class _DiagPlusLowRankCovarianceGaussian(
    tfd.MultivariateNormalDiagPlusLowRankCovariance):
  """`tfd.MultivariateNormalDiagPlusLowRankCovariance` that XLA compiles.

  TFP's `log_prob` and `entropy` go through `LinearOperatorLowRankUpdate`,
  whose capacitance matrix is built by `LinearOperatorIdentity.add_to_tensor`;
  the gradient of that op needs a static batch size under XLA, so a
  `jit_compile=True` training step on `tf.data` batches (batch size unknown
  at trace time) failed to compile. The same Woodbury / determinant-lemma
  formulas are written here with plain ops (results agree to rounding;
  tests compare with scipy):

  ```none
  W = V / sqrt(d)[:, None];  C = I_R + W^T W = L L^T            # [R, R]
  y = (z - loc) / sqrt(d)
  (z - loc)^T Sigma^-1 (z - loc) = |y|^2 - |L^-1 W^T y|^2
  log det Sigma = sum(log d) + 2 * sum(log diag(L))
  ```
  """

  def _log_prob(self, x):
    diag_variance = self.cov_operator.base_operator.diag  # [B, D]
    cholesky, whitened = _capacitance_cholesky(diag_variance,
                                               self.cov_operator.u)
    whitened_x = (x - self.loc) / tf.sqrt(diag_variance)  # [..., B, D]
    projected = tf.linalg.matvec(whitened, whitened_x,
                                 adjoint_a=True)  # [..., B, R]
    cholesky = tf.broadcast_to(
        cholesky, tf.concat([tf.shape(projected), tf.shape(cholesky)[-1:]],
                            axis=0))  # [..., B, R, R]
    solved = tf.linalg.triangular_solve(
        cholesky, projected[..., tf.newaxis], lower=True)[..., 0]
    mahalanobis = (tf.reduce_sum(tf.square(whitened_x), axis=-1) -
                   tf.reduce_sum(tf.square(solved), axis=-1))
    event_size = tf.cast(tf.shape(diag_variance)[-1], self.dtype)
    return -0.5 * (mahalanobis + _low_rank_log_det(diag_variance, cholesky) +
                   event_size * np.log(2.0 * np.pi))

  def _entropy(self):
    diag_variance = self.cov_operator.base_operator.diag
    cholesky, _ = _capacitance_cholesky(diag_variance, self.cov_operator.u)
    event_size = tf.cast(tf.shape(diag_variance)[-1], self.dtype)
    return 0.5 * (_low_rank_log_det(diag_variance, cholesky) +
                  event_size * np.log(2.0 * np.pi * np.e))


def _kl_low_rank_to_linear_operator_gaussian(q, p, name=None):
  """KL(N(m_q, diag(d) + V V^T) || N(m_p, S S^T)) in closed form.

  TFP registers no KL for `MultivariateNormalDiagPlusLowRankCovariance`, so
  `tfd.kl_divergence(q, prior)` (the analytic ELBO's rate) had none. With
  C_q = [diag(sqrt(d)), V], so that Sigma_q = C_q C_q^T:

  ```none
  KL = 0.5 * (trace(Sigma_p^-1 Sigma_q) + |S^-1 (m_p - m_q)|^2 - D
              + log det Sigma_p - log det Sigma_q)
  trace(Sigma_p^-1 Sigma_q) = |S^-1 C_q|_F^2
                            = sum_i d_i * |S^-1 e_i|^2 + |S^-1 V|_F^2
  log det Sigma_q = sum log d + log det(I_R + V^T diag(1/d) V)   # the lemma
  ```
  For a diagonal S (the standard normal prior) the first trace term is
  `sum(d / s^2)`, O(D); otherwise S is solved against `diag(sqrt(d))`.
  """
  with tf.name_scope(name or 'kl_low_rank_to_linear_operator_gaussian'):
    covariance = q.cov_operator  # tf.linalg.LinearOperatorLowRankUpdate
    diag_variance = covariance.base_operator.diag  # [..., D]
    factor = covariance.u  # [..., D, R]
    scale_p = p.scale
    event_size = tf.cast(tf.shape(diag_variance)[-1], q.dtype)
    if isinstance(scale_p, (tf.linalg.LinearOperatorDiag,
                            tf.linalg.LinearOperatorIdentity,
                            tf.linalg.LinearOperatorScaledIdentity)):
      scale_p_diag = scale_p.diag_part()  # [..., D]
      trace_diag = tf.reduce_sum(diag_variance / tf.square(scale_p_diag),
                                 axis=-1)
    else:
      trace_diag = tf.reduce_sum(tf.square(scale_p.solve(
          tf.linalg.diag(tf.sqrt(diag_variance)))), axis=[-2, -1])
    trace_factor = tf.reduce_sum(tf.square(scale_p.solve(factor)),
                                 axis=[-2, -1])
    mahalanobis = tf.reduce_sum(tf.square(scale_p.solvevec(p.mean() - q.mean())),
                                axis=-1)
    log_det_p = 2.0 * scale_p.log_abs_determinant()
    # Not covariance.log_abs_determinant(): see _DiagPlusLowRankCovarianceGaussian.
    log_det_q = _low_rank_log_det(
        diag_variance, _capacitance_cholesky(diag_variance, factor)[0])
    return 0.5 * (trace_diag + trace_factor + mahalanobis - event_size +
                  log_det_p - log_det_q)


try:
  tfd.RegisterKL(tfd.MultivariateNormalDiagPlusLowRankCovariance,
                 tfd.MultivariateNormalLinearOperator)(
                     _kl_low_rank_to_linear_operator_gaussian)
except ValueError:  # A later TFP registers its own for this exact pair.
  pass
