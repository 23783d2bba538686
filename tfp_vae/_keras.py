"""The one place tfp_vae imports Keras from.

`tfp.layers` is built on Keras 2, published as the `tf_keras` package. Keras 3
objects (`keras.*`, and `tf.keras.*` under TF >= 2.16) cannot be mixed with it,
so every other module does `from tfp_vae._keras import keras`.
"""

import tf_keras as keras

__all__ = ['keras']
