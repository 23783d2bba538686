"""Why does full_cov lag diag? A short experiment on the off-diagonal scale.

Trains the 784-512-512 MLP VAE with a 32-dimensional latent for a few epochs
on a seeded random 12,800 of binarized MNIST's training images and prints the
validation ELBO and KL (a random 5,000 validation images) after each epoch,
for one variant:

  diag          the diagonal posterior.
  full_cov:C    the package's full-covariance posterior (starts diagonal)
                with ModelConfig.full_cov_off_diagonal_scale = C: its raw
                off-diagonal Cholesky entries are multiplied by C before
                they fill the factor (C = 1 is TFP's plain FillScaleTriL).

Usage (one variant per process; intra-op threads as you like):

  python benchmarks/offdiag_scale_experiment.py --variant=full_cov:0.03 \
      --mnist_dir=../shared/data/binarized_mnist [--epochs=8]

Not a speed benchmark: no timing; the result is the learning curve.
"""

import argparse

import numpy as np
import tensorflow as tf

from tfp_vae import data as data_lib
from tfp_vae._keras import keras
from tfp_vae.config import ModelConfig
from tfp_vae.model import VariationalAutoencoder


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--variant', required=True,
                      help='diag or full_cov:C.')
  parser.add_argument('--mnist_dir', required=True,
                      help='Directory of the binarized MNIST .amat(.gz) files.')
  parser.add_argument('--epochs', type=int, default=8)
  args = parser.parse_args()

  posterior, _, scale = args.variant.partition(':')
  if args.variant == 'diag':
    model_config = ModelConfig(posterior='diag', latent_dim=32,
                               hidden_units=(512, 512), seed=0)
  elif posterior == 'full_cov' and scale:
    try:
      model_config = ModelConfig(posterior='full_cov', latent_dim=32,
                                 hidden_units=(512, 512), seed=0,
                                 full_cov_off_diagonal_scale=float(scale))
    except ValueError as error:
      parser.error(f'--variant={args.variant}: {error}')
  else:
    parser.error(f'--variant={args.variant}: expected diag or full_cov:C, '
                 'e.g. full_cov:0.03.')
  dataset = data_lib.load_dataset('binarized_mnist', data_dir=args.mnist_dir)
  rng = np.random.default_rng(0)  # The files are sorted by class: sample.
  train = dataset.train_images[rng.permutation(len(dataset.train_images))
                               [:12800]]
  valid = dataset.validation_images[
      rng.permutation(len(dataset.validation_images))[:5000]]

  keras.utils.set_random_seed(0)
  model = VariationalAutoencoder(model_config)
  model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True,
                steps_per_execution=20)
  curve = []
  for epoch in range(args.epochs):
    model.fit(tf.data.Dataset.from_tensor_slices(train)
              .shuffle(len(train), seed=epoch)
              .batch(128, drop_remainder=True), epochs=1, verbose=0)
    result = model.evaluate(valid, batch_size=500, verbose=0,
                            return_dict=True)
    curve.append((round(result['elbo'], 1), round(result['kl'], 1)))
  print(args.variant, '(validation ELBO, KL) per epoch:', curve, flush=True)


if __name__ == '__main__':
  main()
