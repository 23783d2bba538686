r"""One XLA-compiled training run for the compilation-count test.

  XLA_FLAGS=--xla_dump_to=DUMP_DIR python tests/_xla_compilations_main.py \
      MODEL_DIR POSTERIOR

Trains a small full-covariance (or POSTERIOR) VAE on random 8x8 images for
two epochs whose step counts (7) are not a multiple of the steps per
execution (3), with validation and test sets (20 images) that are not a
multiple of the batch size (8), then evaluates the test set as
`training.train` does. XLA writes one set of HLO files per compilation to
DUMP_DIR, which the test counts. It runs in its own process because XLA
reads XLA_FLAGS once, at its first compilation.
"""

import sys


def main(argv):
  if len(argv) != 3:
    sys.exit(f'usage: {argv[0]} MODEL_DIR POSTERIOR')
  model_dir, posterior = argv[1:]

  import numpy as np  # pylint: disable=g-import-not-at-top
  from tfp_vae import data  # pylint: disable=g-import-not-at-top
  from tfp_vae import training  # pylint: disable=g-import-not-at-top
  from tfp_vae.config import ModelConfig  # pylint: disable=g-import-not-at-top
  from tfp_vae.config import TrainConfig  # pylint: disable=g-import-not-at-top

  image_shape = (8, 8, 1)
  rng = np.random.default_rng(0)
  images = lambda count: (rng.random((count,) + image_shape) < 0.5).astype(
      np.float32)
  dataset = data.ImageDataset(
      name='binarized_mnist', train_images=images(56),
      validation_images=images(20), test_images=images(20),
      train_labels=None, validation_labels=None, test_labels=None,
      binarization='static', image_shape=image_shape, source='synthetic')
  training.train(
      ModelConfig(image_shape=image_shape, hidden_units=(16,), latent_dim=3,
                  posterior=posterior, seed=0),
      TrainConfig(dataset='binarized_mnist', batch_size=8, epochs=2,
                  model_dir=model_dir, jit_compile=True,
                  steps_per_execution=3, seed=0),
      dataset=dataset, verbose=0)


if __name__ == '__main__':
  main(sys.argv)
