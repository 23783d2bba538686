"""What a user is told about a run: its default directory, its state, its end.

No TensorFlow here: `scripts/train.py` names the default model directory,
answers the rerun of a finished run and prints the closing summary without
importing it (`runs` writes and loads the files named in `names`).
"""

import hashlib
import json
import os
from typing import Any, Dict, List, NamedTuple, Optional

from tfp_vae import names

__all__ = ['default_model_dir', 'model_defining_settings', 'FinishedRun',
           'read_finished_run', 'config_summary', 'summary_lines',
           'NEXT_COMMANDS']

# The test metrics the closing summary shows, in order, with their labels
# (those a run has; '<key>_stderr' is shown beside its value). The others
# (the loss, which is -ELBO, and bookkeeping such as num_examples) stay in
# final_metrics.json.
_TEST_METRIC_LABELS = names.METRIC_LABELS


def model_defining_settings(model_config, train_config):
  """The settings that define what a run computes, as one plain dict.

  Every `ModelConfig` field and every `TrainConfig` field but the ones a
  resume may change (`names.RESUMABLE_SETTINGS`: how long and where it runs).
  """
  train = {k: v for k, v in train_config.to_dict().items()
           if k not in names.RESUMABLE_SETTINGS}
  return {'model': model_config.to_dict(), 'train': train}


def default_model_dir(model_config, train_config, root='runs'):
  """`root/<dataset>-<posterior>-z<latent_dim>-<8 hex digits>`.

  The hex digits are a hash of `model_defining_settings`, so changing any
  setting that defines the model (the learning rate, a hidden width, the
  seed) names another directory instead of colliding with the earlier run,
  while the same command (or one with more `--epochs`) names the same one
  and resumes it.
  """
  settings = json.dumps(model_defining_settings(model_config, train_config),
                        sort_keys=True)
  digest = hashlib.sha256(settings.encode()).hexdigest()[:8]
  return os.path.join(root, f'{train_config.dataset}-'
                      f'{model_config.posterior}-z{model_config.latent_dim}-'
                      f'{digest}')


class FinishedRun(NamedTuple):
  """A model directory's record of a finished run."""
  epochs: int                      # The saved TrainConfig's --epochs.
  history: List[Dict[str, Any]]    # history.json's rows, one per epoch.
  test_metrics: Dict[str, Any]     # final_metrics.json.


def _read_json(path):
  with open(path) as f:
    return json.load(f)


def read_finished_run(model_dir) -> Optional[FinishedRun]:
  """The finished run in `model_dir`, or None if it holds none.

  A run is finished when its final model and test metrics exist: training
  deletes both when it (re)starts and writes them last.
  """
  needed = (names.CONFIG_FILE, names.FINAL_METRICS_FILE, names.MODEL_FILE,
            names.HISTORY_FILE)
  if not all(os.path.isfile(os.path.join(model_dir, n)) for n in needed):
    return None
  try:
    saved = _read_json(os.path.join(model_dir, names.CONFIG_FILE))
    return FinishedRun(
        epochs=int(saved['train']['epochs']),
        history=_read_json(os.path.join(model_dir, names.HISTORY_FILE)),
        test_metrics=_read_json(os.path.join(model_dir,
                                             names.FINAL_METRICS_FILE)))
  except (ValueError, KeyError, TypeError, OSError):
    return None  # Damaged: training will say what is wrong.


def config_summary(model_config, train_config):
  """One line naming the settings a reader looks for first."""
  model, train = model_config, train_config
  units = (','.join(str(u) for u in model.hidden_units)
           if model.architecture in ('mlp', 'gated_mlp') else
           ','.join(str(f) for f in model.conv_filters))
  return (f'{train.dataset}: {model.posterior} posterior, z={model.latent_dim}'
          f', {model.prior} prior, {model.likelihood} likelihood, '
          f'{model.objective} (L/K={model.num_samples}, beta={model.beta:g}); '
          f'{model.architecture} {units}; batch {train.batch_size}, lr '
          f'{train.learning_rate:g}, {train.epochs} epochs, seed '
          f'{train.seed}; full config in '
          f'{os.path.join(train.model_dir, names.CONFIG_FILE)}')


# The commands the summary suggests next, as run from a checkout.
NEXT_COMMANDS = ('python scripts/evaluate.py', 'python scripts/sample.py')


def summary_lines(model_dir, history, test_metrics, wall_seconds=None,
                  next_commands=NEXT_COMMANDS, early_stopping_patience=0):
  """The closing summary of a run, as lines to print.

  Args:
    model_dir: the run's directory.
    history: history.json's rows (dicts with 'epoch' and 'val_elbo').
    test_metrics: final_metrics.json's dict (nats per example).
    wall_seconds: this command's wall time, or None (not shown).
    next_commands: the evaluate and sample commands to suggest, each
      completed with `--model_dir=<model_dir>`; the installed console
      commands (tfp-vae-evaluate, tfp-vae-sample) outside a checkout.
    early_stopping_patience: the run's --early_stopping_patience (0: off).
      With it, the summary says which epoch's weights were kept (the best)
      and whether the run stopped early.

  Returns:
    A list of strings: best and final validation ELBO (and, with early
    stopping, the epoch kept and why the run ended), the test metrics to
    2 decimals, the wall time, where plots and TensorBoard logs are, and the
    commands to run next.
  """
  lines = [f'Run {model_dir}']
  scored = [r for r in history if r.get('val_elbo') is not None]
  if scored:
    best = max(scored, key=lambda r: r['val_elbo'])
    final = scored[-1]
    lines.append(f'  validation ELBO: best {best["val_elbo"]:.2f} (epoch '
                 f'{best["epoch"]}), final {final["val_elbo"]:.2f} (epoch '
                 f'{final["epoch"]})')
    if early_stopping_patience:
      if final['epoch'] - best['epoch'] >= early_stopping_patience:
        lines.append(f'  stopped early after epoch {final["epoch"]}: no '
                     f'better validation ELBO for {early_stopping_patience} '
                     'epochs (--early_stopping_patience)')
      lines.append(f'  model and test metrics: epoch {best["epoch"]}\'s '
                   'weights, the best validation ELBO')
  where = ''
  if 'num_importance_samples' in test_metrics:
    where = f', K={test_metrics["num_importance_samples"]}'
  lines.append(f'  test metrics (nats per example{where}):')
  for key, label in _TEST_METRIC_LABELS:
    value = test_metrics.get(key)
    if value is None:
      continue
    text = f'{value:>9d}' if isinstance(value, int) else f'{value:>9.2f}'
    stderr = test_metrics.get(f'{key}_stderr')
    if stderr is not None:
      text += f' +- {stderr:.2f}'
    lines.append(f'    {label:<30s} {text}')
  if wall_seconds is not None:
    minutes, seconds = divmod(int(round(wall_seconds)), 60)
    lines.append(f'  wall time: {minutes}m{seconds:02d}s')
  lines.append(f'  plots: {os.path.join(model_dir, names.PLOTS_DIR)}')
  lines.append(f'  TensorBoard: tensorboard --logdir '
               f'{os.path.join(model_dir, names.TENSORBOARD_DIR)}')
  lines.append('Next:')
  lines.extend(f'  {command} --model_dir={model_dir}'
               for command in next_commands)
  return lines
