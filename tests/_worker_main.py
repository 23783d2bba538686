r"""One training process for the multi-process tests: `training.train`, then
the final weights to a file.

  python tests/_worker_main.py SPEC_JSON WEIGHTS_OUT

SPEC_JSON is `{"model": ModelConfig dict, "train": TrainConfig dict}`. With
`"strategy": "multi_worker"` the cluster comes from `TF_CONFIG`, as in
`scripts/train.py`. Every worker writes its own WEIGHTS_OUT (`.npz`, keys
`<index>:<trainable|non_trainable|optimizer>:<variable name>`, in the
model's fixed variable order), atomically, so a test can check that all
workers end identical. Expected errors end the process with a one-line
`error: ...` and status 1, as `scripts/train.py` does.
"""

import json
import os
import sys


def main(argv):
  if len(argv) != 3:
    sys.exit(f'usage: {argv[0]} SPEC_JSON WEIGHTS_OUT')
  spec = json.loads(argv[1])
  weights_path = argv[2]

  from absl import logging  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from tfp_vae import config  # pylint: disable=g-import-not-at-top
  from tfp_vae import data  # pylint: disable=g-import-not-at-top
  from tfp_vae import training  # pylint: disable=g-import-not-at-top

  logging.set_verbosity(logging.INFO)  # 'Resuming from ...' for the tests.
  try:
    model_config = config.ModelConfig.from_dict(spec['model'])
    train_config = config.TrainConfig.from_dict(spec['train'])
    result = training.train(model_config, train_config, verbose=0)
  except (data.DataError, ValueError, training.NonFiniteLossError) as error:
    sys.exit(f'error: {error}')
  model = result.model
  arrays = {}
  for kind, variables in (('trainable', model.trainable_weights),
                          ('non_trainable', model.non_trainable_weights),
                          ('optimizer', model.optimizer.variables)):
    for variable in variables:
      arrays[f'{len(arrays):03d}:{kind}:{variable.name}'] = np.asarray(
          variable.numpy())
  temp_path = weights_path + '.part.npz'
  np.savez(temp_path, **arrays)
  os.replace(temp_path, weights_path)


if __name__ == '__main__':
  main(sys.argv)
