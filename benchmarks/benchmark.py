r"""Training speed, memory and log-likelihood cost of the MLP VAE workload.

  python benchmarks/benchmark.py --output=benchmarks/results/cpu2.json
  python benchmarks/benchmark.py --quick            # smoke run, ~3 minutes
  python benchmarks/benchmark.py --sections=headline,loglik

Measures, for the workload of the speed issue (encoder 784-512-512 -> 16-d
posterior, decoder 16-512-512 -> 784 Bernoulli logits, standard normal prior,
analytic KL, one sample, Adam 1e-3, binarized MNIST, both posteriors):

  headline      steady-state training examples/s of the package's default
                path (`runs.build_model` + `fit` on
                `data.make_training_dataset`, as `scripts/train.py` runs
                it), side by side with, in the same run: the TFP
                Probabilistic Layers tutorial design (tfp.layers + fit, no
                XLA) and plain TF2 loops of `tf.function(jit_compile=True)`.
  sweeps        the package path at batch sizes 32..1024, XLA off,
                steps_per_execution 1, and 2 replicas (MirroredStrategy over
                2 logical CPU devices).
  investigate   what limits the package path: steps_per_execution values,
                the input pipeline, metrics, noise slicing, tf_keras's
                per-step train function, XLA/oneDNN/thread settings, the
                whole `training.train` with its callbacks.
  fused_ab      the package's fused multi-step train function (the default)
                against tf_keras's per-step one, 3 alternated rounds.
  loglik        `evaluation.importance_sampled_log_likelihood` at K=5000
                over the 10k test images, against the decoder's FLOP count.
  roofline      f32 matmul GFLOP/s of the workload's shapes (the FLOP bound).

Every configuration runs in its own subprocess (clean devices and memory;
peak memory is that process's ru_maxrss). Results go to --output as JSON;
the tables are printed as Markdown. The machine is assumed noisy: compare
rows of one run, and read the 1-minute load average recorded with each row.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import _workloads

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_HERE)
_RESULT_PREFIX = 'BENCHMARK_RESULT '
SECTIONS = ('roofline', 'pipeline', 'headline', 'sweeps', 'investigate',
            'fused_ab', 'loglik')
DEFAULT_SECTIONS = tuple(s for s in SECTIONS
                         if s not in ('investigate', 'fused_ab'))
POSTERIORS = ('diag', 'full_cov')
# The figures (examples/s, 2 CPU cores, float32, batch 128).
TARGETS = {'diag': 17500, 'full_cov': 16800}


def _parse_args(argv):
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--output', default='',
                      help='Write the results here as JSON.')
  parser.add_argument('--quick', action='store_true',
                      help='Smoke run: few steps, few configurations.')
  parser.add_argument('--sections', default=','.join(DEFAULT_SECTIONS),
                      help=f'Comma-separated subset of {",".join(SECTIONS)} '
                      f'(default: all but investigate, ~17 min on 2 quiet cores; '
                      f'investigate adds ~7).')
  parser.add_argument('--posteriors', default=','.join(POSTERIORS))
  parser.add_argument('--mnist_dir', default=os.path.join(
      _REPO, '..', 'shared', 'data', 'binarized_mnist'),
      help='Binarized MNIST files; random binary data if absent.')
  parser.add_argument('--repeats', type=int, default=2,
                      help='Interleaved rounds of the headline comparison.')
  parser.add_argument('--timed_epochs', type=int, default=2,
                      help='Epochs timed after the warm-up epoch (headline).')
  parser.add_argument('--sweep_examples', type=int, default=12800,
                      help='Examples per timed epoch in the sweeps.')
  parser.add_argument('--num_importance_samples', type=int, default=5000)
  parser.add_argument('--loglik_budget_s', type=float, default=240.,
                      help='Time all 10k test images when the estimate from '
                      '500 is below this; else time 1000 and extrapolate.')
  parser.add_argument('--timeout_s', type=float, default=900.,
                      help='Per-configuration time limit.')
  parser.add_argument('--worker', default='', help=argparse.SUPPRESS)
  return parser.parse_args(argv)


################################################################################
# Running one configuration.
################################################################################


def _worker_main(spec_json):
  spec = json.loads(spec_json)
  result = _workloads.run(spec)
  print(_RESULT_PREFIX + json.dumps(result), flush=True)


def _run_spec(spec, timeout_s):
  """Runs one spec in a subprocess; returns its result (or an 'error')."""
  env = dict(os.environ)
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  env.update(spec.get('env', {}))
  command = [sys.executable, os.path.abspath(__file__),
             '--worker=' + json.dumps(spec)]
  load_before = os.getloadavg()[0]
  start = time.perf_counter()
  try:
    process = subprocess.run(command, env=env, capture_output=True, text=True,
                             timeout=timeout_s, cwd=_REPO)
  except subprocess.TimeoutExpired:
    return {'error': f'timed out after {timeout_s:.0f} s',
            'load_before': load_before}
  lines = [l for l in process.stdout.splitlines()
           if l.startswith(_RESULT_PREFIX)]
  if process.returncode or not lines:
    tail = '\n'.join(process.stderr.strip().splitlines()[-6:])
    return {'error': f'exit {process.returncode}: {tail}',
            'load_before': load_before}
  result = json.loads(lines[-1][len(_RESULT_PREFIX):])
  result['load_before'] = round(load_before, 2)
  result['load_after'] = round(os.getloadavg()[0], 2)
  result['subprocess_s'] = round(time.perf_counter() - start, 1)
  return result


class _Runner:
  """Runs specs, prints progress, collects rows."""

  def __init__(self, args, data_path):
    self.args = args
    self.data_path = data_path
    self.rows = []

  def run(self, section, name, spec, **row_fields):
    spec = dict(spec, data_path=self.data_path)
    sys.stdout.write(f'[{time.strftime("%H:%M:%S")}] {section:11s} {name:48s} ')
    sys.stdout.flush()
    result = _run_spec(spec, self.args.timeout_s)
    row = dict(section=section, name=name, spec=spec, result=result,
               **row_fields)
    self.rows.append(row)
    if 'error' in result:
      print('ERROR ' + result['error'].replace('\n', ' | ')[:400])
    elif 'examples_per_s' in result:
      print(f'{result["examples_per_s"]:9.0f} ex/s  '
            f'{result.get("peak_rss_mib", 0):6.0f} MiB  '
            f'load {result["load_before"]:.1f}')
    else:
      print(f'done in {result.get("subprocess_s")} s  '
            f'load {result["load_before"]:.1f}')
    return result


################################################################################
# The sections.
################################################################################


def _fit_spec(posterior, batch_size=128, **kwargs):
  return dict(workload='fit_package', posterior=posterior,
              batch_size=batch_size, **kwargs)


def _sweep_steps(args, batch_size, steps_per_execution=50):
  """Steps per timed epoch: ~sweep_examples, a multiple of the execution."""
  steps = -(-args.sweep_examples // batch_size)
  return max(1, -(-steps // steps_per_execution)) * steps_per_execution


def _roofline(runner, args):
  shapes = [[128, 784, 512], [128, 512, 784]] if args.quick else None
  spec = dict(workload='matmul')
  if shapes:
    spec['shapes'] = shapes
  runner.run('roofline', 'f32 matmul', spec)


def _pipeline(runner, args):
  for batch_size in (128,) if args.quick else (128, 1024):
    runner.run('pipeline', f'make_training_dataset, batch {batch_size}',
               dict(workload='pipeline', batch_size=batch_size,
                    num_batches=200 if args.quick else 2000),
               batch_size=batch_size)


def _headline(runner, args, posteriors):
  """Package path and baselines, batch 128, in interleaved rounds."""
  steps = 20 if args.quick else None  # None: one real epoch, 390 steps.
  epochs = 1 if args.quick else args.timed_epochs
  window = 100 if args.quick else 390
  configs = [
      ('package', 'package default path (fit, XLA, spe=50)',
       lambda p: _fit_spec(p, steps_per_epoch=steps, timed_epochs=epochs)),
      ('tutorial', 'tutorial design (tfp.layers + fit, no XLA)',
       lambda p: dict(workload='fit_tutorial', posterior=p, batch_size=128,
                      steps_per_epoch=steps, timed_epochs=epochs)),
      ('plain_jit', 'plain TF2 loop, jit step per call',
       lambda p: dict(workload='plain_loop', posterior=p, batch_size=128,
                      steps_per_call=1, steps_per_window=window,
                      timed_windows=epochs)),
  ]
  for round_index in range(1 if args.quick else args.repeats):
    for posterior in posteriors:
      for key, name, make in configs:
        runner.run('headline', name, make(posterior), posterior=posterior,
                   key=key, round=round_index, batch_size=128)


def _sweeps(runner, args, posteriors):
  batch_sizes = (32, 1024) if args.quick else (32, 64, 256, 512, 1024)
  for posterior in posteriors:
    for batch_size in batch_sizes:
      runner.run('sweeps', f'package, batch {batch_size}', _fit_spec(
          posterior, batch_size, steps_per_epoch=_sweep_steps(args, batch_size)
          if not args.quick else 50, timed_epochs=2 if not args.quick else 1),
                 posterior=posterior, key=f'batch_{batch_size}',
                 batch_size=batch_size)
    steps = _sweep_steps(args, 128) if not args.quick else 50
    timed = 2 if not args.quick else 1
    runner.run('sweeps', 'package, XLA off (jit_compile=False)', _fit_spec(
        posterior, jit_compile=False, steps_per_epoch=steps,
        timed_epochs=timed), posterior=posterior, key='xla_off',
               batch_size=128)
    runner.run('sweeps', 'package, steps_per_execution=1', _fit_spec(
        posterior, steps_per_execution=1, steps_per_epoch=steps,
        timed_epochs=timed), posterior=posterior, key='spe_1', batch_size=128)
    runner.run('sweeps', 'package, 2 replicas (MirroredStrategy)', _fit_spec(
        posterior, replicas=2, steps_per_epoch=steps, timed_epochs=timed),
               posterior=posterior, key='replicas_2', batch_size=128)
    runner.run('sweeps', 'package, 2 replicas, XLA off', _fit_spec(
        posterior, replicas=2, jit_compile=False, steps_per_epoch=steps,
        timed_epochs=timed), posterior=posterior, key='replicas_2_xla_off',
               batch_size=128)


def _investigate(runner, args, posteriors):
  """Variants of the package path, against a default run in the same list."""
  timed = 1 if args.quick else 2
  steps = 50 if args.quick else _sweep_steps(args, 128)

  def fit(name, key, posterior='diag', **kwargs):
    spec = _fit_spec(posterior, steps_per_epoch=kwargs.pop(
        'steps_per_epoch', steps), timed_epochs=timed, **kwargs)
    runner.run('investigate', name, spec, posterior=posterior, key=key,
               batch_size=128)

  for posterior in posteriors:
    fit('package default (reference for this section)', 'default',
        posterior)
    fit("tf_keras's train function (one XLA call per step)",
        'keras_step_loop', posterior, patches=['keras_step_loop'])
  if args.quick:
    return
  fit('package default (reference, again)', 'default')
  for spe in (10, 100, 200):
    fit(f'steps_per_execution={spe}', f'spe_{spe}', steps_per_execution=spe,
        steps_per_epoch=_sweep_steps(args, 128, spe))
  fit('constant batch (no input pipeline)', 'constant_data', data='constant')
  fit('metrics: loss only', 'no_metrics', patches=['no_metrics'])
  fit('noise: local draw, no global slice', 'no_global_noise',
      patches=['no_global_noise'])
  for flags in ('--xla_cpu_use_thunk_runtime=false',
                '--xla_cpu_multi_thread_eigen=false',
                '--xla_cpu_use_xnnpack=true',
                '--xla_cpu_enable_fast_math=true'):
    fit(f'XLA_FLAGS={flags}', f'xla_flags:{flags}', env={'XLA_FLAGS': flags})
  fit('TF_ENABLE_ONEDNN_OPTS=0', 'onednn_off',
      env={'TF_ENABLE_ONEDNN_OPTS': '0'})
  fit('intra_op_threads=1', 'intra_1', intra_op_threads=1)
  fit('inter_op_threads=1', 'inter_1', inter_op_threads=1)
  for steps_per_call in (10, 50):
    runner.run('investigate',
               f'plain TF2 loop, package math, {steps_per_call} steps per '
               'XLA call', dict(workload='plain_loop', posterior='diag',
                                batch_size=128, steps_per_call=steps_per_call,
                                steps_per_window=steps, timed_windows=timed),
               posterior='diag', key=f'plain_fused_{steps_per_call}',
               batch_size=128)
  runner.run('investigate', 'plain TF2 loop, raw tf ops, 1 step per call',
             dict(workload='plain_loop', posterior='diag', batch_size=128,
                  math='raw', steps_per_call=1, steps_per_window=steps,
                  timed_windows=timed), posterior='diag', key='raw_step',
             batch_size=128)
  runner.run('investigate', 'plain TF2 loop, raw tf ops, 50 steps per call',
             dict(workload='plain_loop', posterior='diag', batch_size=128,
                  math='raw', steps_per_call=50, steps_per_window=steps,
                  timed_windows=timed), posterior='diag', key='raw_fused',
             batch_size=128)
  runner.run('investigate', 'tutorial design + jit_compile + spe=50',
             dict(workload='fit_tutorial', posterior='diag', batch_size=128,
                  jit_compile=True, steps_per_execution=50,
                  steps_per_epoch=steps, timed_epochs=timed),
             posterior='diag', key='tutorial_xla', batch_size=128)
  runner.run('investigate', 'training.train (callbacks, validation, ckpt)',
             dict(workload='train_end_to_end', posterior='diag',
                  batch_size=128, timed_epochs=2),
             posterior='diag', key='train_end_to_end', batch_size=128)


def _fused_ab(runner, args, posteriors):
  """Default (fused steps) against tf_keras's per-step loop, alternated."""
  steps = 50 if args.quick else 200
  for round_index in range(1 if args.quick else 3):
    for posterior in posteriors:
      for key, patches in (('default', []),
                           ('keras_step_loop', ['keras_step_loop'])):
        runner.run('fused_ab', f'{key} (round {round_index})', _fit_spec(
            posterior, steps_per_epoch=steps, timed_epochs=2, patches=patches),
                   posterior=posterior, key=key, round=round_index,
                   batch_size=128)


def _loglik(runner, args, posteriors):
  for posterior in posteriors:
    spec = dict(workload='loglik', posterior=posterior, batch_size=128,
                num_importance_samples=args.num_importance_samples,
                budget_s=args.loglik_budget_s)
    if args.quick:
      spec.update(num_importance_samples=500, estimate_examples=100,
                  num_examples=1000, subset_examples=200, budget_s=0)
    runner.run('loglik', f'IS log-likelihood, K={spec["num_importance_samples"]}',
               spec, posterior=posterior, key='loglik')


################################################################################
# Tables.
################################################################################


def _median(values):
  values = sorted(values)
  middle = len(values) // 2
  return (values[middle] if len(values) % 2
          else 0.5 * (values[middle - 1] + values[middle]))


def _best_matmul_gflops(rows):
  for row in rows:
    if row['section'] == 'roofline' and 'matmuls' in row['result']:
      return max(max(m['tf_gflops'], m['xla_gflops'])
                 for m in row['result']['matmuls'])
  return None


def _headline_summary(rows, posteriors):
  """Median over rounds per (posterior, config), and ratios to the tutorial."""
  summary = {}
  for posterior in posteriors:
    by_key = {}
    for row in rows:
      if (row['section'] == 'headline' and row['posterior'] == posterior and
          'examples_per_s' in row['result']):
        by_key.setdefault(row['key'], []).append(row)
    entry = {}
    for key, key_rows in by_key.items():
      entry[key] = {
          'examples_per_s': _median([r['result']['examples_per_s']
                                     for r in key_rows]),
          'rounds': [r['result']['examples_per_s'] for r in key_rows],
          'peak_rss_mib': max(r['result']['peak_rss_mib'] for r in key_rows),
          'first_epoch_s': _median([r['result']['first_epoch_s']
                                    for r in key_rows]),
          'name': key_rows[0]['name'],
      }
    if 'package' in entry and 'tutorial' in entry:
      per_round = {}
      for row in rows:
        if (row['section'] == 'headline' and row['posterior'] == posterior
            and 'examples_per_s' in row['result']):
          per_round.setdefault(row['round'], {})[row['key']] = (
              row['result']['examples_per_s'])
      entry['package_over_tutorial'] = (
          entry['package']['examples_per_s'] /
          entry['tutorial']['examples_per_s'])
      entry['package_over_tutorial_per_round'] = [
          r['package'] / r['tutorial'] for r in per_round.values()
          if 'package' in r and 'tutorial' in r]
    summary[posterior] = entry
  return summary


def _format_tables(rows, posteriors, best_gflops):
  lines = []
  summary = _headline_summary(rows, posteriors)
  if any(summary.values()):
    lines += ['### Training, batch 128 (median of rounds; examples/s)', '',
              '| design | ' + ' | '.join(posteriors) + ' | peak MiB | '
              'first epoch s |',
              '|---|' + '---:|' * len(posteriors) + '---:|---:|']
    keys = []
    for entry in summary.values():
      keys += [k for k in entry if isinstance(entry[k], dict) and
               k not in keys]
    for key in keys:
      cells, memory, first = [], [], []
      name = key
      for posterior in posteriors:
        item = summary[posterior].get(key)
        if item is None:
          cells.append('-')
          continue
        name = item['name']
        flops = item['examples_per_s'] * _workloads.train_flops_per_example(
            posterior) / 1e9
        cells.append(f'{item["examples_per_s"]:,.0f} ({flops:.0f} GFLOP/s)')
        memory.append(f'{item["peak_rss_mib"]:.0f}')
        first.append(f'{item["first_epoch_s"]:.1f}')
      lines.append(f'| {name} | ' + ' | '.join(cells) +
                   f' | {"/".join(memory)} | {"/".join(first)} |')
    ratios = []
    for posterior in posteriors:
      entry = summary[posterior]
      if 'package_over_tutorial' in entry:
        rounds = ', '.join(f'{r:.2f}' for r in
                           entry['package_over_tutorial_per_round'])
        ratios.append(f'{posterior} {entry["package_over_tutorial"]:.2f}x '
                      f'(rounds: {rounds})')
    lines += ['', 'package / tutorial, measured side by side: ' +
              '; '.join(ratios), '']
  for section, title in (('sweeps', 'Sweeps of the package path'),
                         ('investigate', 'Investigation (diag unless noted)'),
                         ('fused_ab', 'Default (fused steps) vs tf_keras '
                                      'per-step loop, alternated')):
    section_rows = [r for r in rows if r['section'] == section]
    if not section_rows:
      continue
    lines += [f'### {title} (examples/s, median of timed epochs)', '',
              '| configuration | posterior | batch | examples/s | GFLOP/s | '
              'peak MiB | load |', '|---|---|---:|---:|---:|---:|---:|']
    for row in section_rows:
      result = row['result']
      if 'examples_per_s' not in result:
        lines.append(f'| {row["name"]} | {row.get("posterior", "")} | '
                     f'{row.get("batch_size", "")} | error | | | |')
        continue
      gflops = result['examples_per_s'] * _workloads.train_flops_per_example(
          row['posterior']) / 1e9
      lines.append(
          f'| {row["name"]} | {row["posterior"]} | {row["batch_size"]} | '
          f'{result["examples_per_s"]:,.0f} | {gflops:.0f} | '
          f'{result["peak_rss_mib"]:.0f} | {result["load_before"]:.1f} |')
    lines.append('')
  pipeline_rows = [r for r in rows if r['section'] == 'pipeline' and
                   'batches_per_s' in r['result']]
  if pipeline_rows:
    lines += ['### Input pipeline alone (`make_training_dataset`)', '',
              '| batch | batches/s | examples/s | CPU ms / batch |',
              '|---:|---:|---:|---:|']
    for row in pipeline_rows:
      result = row['result']
      lines.append(f'| {row["batch_size"]} | {result["batches_per_s"]:,.0f} | '
                   f'{result["examples_per_s"]:,.0f} | '
                   f'{result["cpu_ms_per_batch"]:.3f} |')
    lines.append('')
  loglik_rows = [r for r in rows if r['section'] == 'loglik' and
                 'gflops' in r['result']]
  if loglik_rows:
    lines += ['### Importance-sampled log-likelihood', '',
              '| posterior | K | images | measured on | time (s) | '
              'decoder TFLOP | GFLOP/s | of best matmul | × FLOP cost | '
              'peak MiB | parts alone, GFLOP/s: decode+log_prob (image '
              'event) / decode+log_prob (flat event) / dense layers / '
              'matmuls |',
              '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|']
    for row in loglik_rows:
      result = row['result']
      share = (f'{100 * result["gflops"] / best_gflops:.0f}%'
               if best_gflops else '-')
      how = (f'{result["measured_examples"]} (extrapolated)'
             if result['extrapolated'] else str(result['measured_examples']))
      lines.append(
          f'| {row["posterior"]} | {result["num_importance_samples"]} | '
          f'{result["num_examples"]} | {how} | {result["full_s"]:.0f} | '
          f'{result["decoder_tflop"]:.1f} | {result["gflops"]:.0f} | '
          f'{share} | {result.get("times_flop_cost", float("nan")):.2f} | '
          f'{result["peak_rss_mib"]:.0f} | '
          + ' / '.join(f'{result["breakdown"].get(k + "_gflops", 0):.0f}'
                       for k in ('decode_and_log_prob',
                                 'decode_and_flat_log_prob', 'dense_layers',
                                 'matmuls_only')) + ' |')
    lines.append('')
  roofline = [r for r in rows if r['section'] == 'roofline' and
              'matmuls' in r['result']]
  if roofline:
    lines += ['### f32 matmul (best of 5; GFLOP/s)', '',
              '| M x K x N | TF kernel | XLA |', '|---|---:|---:|']
    for matmul in roofline[0]['result']['matmuls']:
      lines.append(f'| {" x ".join(map(str, matmul["shape"]))} | '
                   f'{matmul["tf_gflops"]} | {matmul["xla_gflops"]} |')
    lines.append('')
  return '\n'.join(lines), summary


################################################################################
# Machine description and main.
################################################################################


def _machine():
  def read(path):
    try:
      with open(path) as f:
        return f.read()
    except OSError:
      return ''
  cpuinfo = read('/proc/cpuinfo')
  model = next((l.split(':', 1)[1].strip() for l in cpuinfo.splitlines()
                if l.startswith('model name')), platform.processor())
  flags = next((l.split(':', 1)[1].split() for l in cpuinfo.splitlines()
                if l.startswith('flags')), [])
  memory_kib = next((int(l.split()[1]) for l in read('/proc/meminfo')
                     .splitlines() if l.startswith('MemTotal')), 0)
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  versions = {}
  for package in ('tensorflow', 'tensorflow-probability', 'tf-keras', 'numpy'):
    try:
      versions[package] = metadata.version(package)
    except metadata.PackageNotFoundError:
      versions[package] = None
  return {
      'nproc': os.cpu_count(), 'cpu_model': model,
      'simd': [f for f in flags if f.startswith(('avx', 'fma', 'sse4'))],
      'ram_gib': round(memory_kib / 2**20, 1), 'python': platform.python_version(),
      'versions': versions, 'platform': platform.platform(),
      'env': {k: os.environ[k] for k in ('XLA_FLAGS', 'TF_ENABLE_ONEDNN_OPTS')
              if k in os.environ},
  }


def main(argv):
  args = _parse_args(argv)
  if args.worker:
    _worker_main(args.worker)
    return
  sections = [s for s in args.sections.split(',') if s]
  unknown = set(sections) - set(SECTIONS)
  if unknown:
    sys.exit(f'error: --sections: unknown {sorted(unknown)}; use '
             f'{",".join(SECTIONS)}.')
  posteriors = [p for p in args.posteriors.split(',') if p]
  machine = _machine()
  started = datetime.datetime.now(datetime.timezone.utc)
  print(f'{machine["nproc"]} x {machine["cpu_model"]}, {machine["ram_gib"]} '
        f'GiB, TF {machine["versions"]["tensorflow"]}; load '
        f'{os.getloadavg()[0]:.2f}')
  print('Training FLOP/example: ' + ', '.join(
      f'{p} {_workloads.train_flops_per_example(p) / 1e6:.2f} M'
      for p in posteriors) + '; IS decoder FLOP/sample: '
        f'{_workloads.loglik_flops_per_sample() / 1e6:.3f} M')
  with tempfile.TemporaryDirectory(prefix='tfp_vae_bench_') as work_dir:
    data_path = os.path.join(work_dir, 'images.npz')
    runner = _Runner(args, data_path)
    data = runner.run('setup', 'data', dict(
        workload='prepare_data', mnist_dir=os.path.abspath(args.mnist_dir)))
    if 'error' in data:
      sys.exit('error: could not prepare the data: ' + data['error'])
    print(f'Data: {data["data_source"]}')
    for section in SECTIONS:
      if section not in sections:
        continue
      if section == 'roofline':
        _roofline(runner, args)
      elif section == 'pipeline':
        _pipeline(runner, args)
      elif section == 'headline':
        _headline(runner, args, posteriors)
      elif section == 'sweeps':
        _sweeps(runner, args, posteriors)
      elif section == 'investigate':
        _investigate(runner, args, posteriors)
      elif section == 'fused_ab':
        _fused_ab(runner, args, posteriors)
      elif section == 'loglik':
        _loglik(runner, args, posteriors)
  finished = datetime.datetime.now(datetime.timezone.utc)
  best_gflops = _best_matmul_gflops(runner.rows)
  tables, summary = _format_tables(runner.rows, posteriors, best_gflops)
  print()
  print(tables)
  targets = {}
  for posterior in posteriors:
    entry = summary.get(posterior, {})
    if 'package' in entry:
      rate = entry['package']['examples_per_s']
      ratio = entry.get('package_over_tutorial')
      targets[posterior] = {
          'package_examples_per_s': rate, 'target_examples_per_s':
          TARGETS[posterior], 'meets_target': rate >= TARGETS[posterior],
          'package_over_tutorial': ratio,
          'meets_2x_tutorial': None if ratio is None else ratio >= 2}
  for posterior, target in targets.items():
    print(f'{posterior}: package {target["package_examples_per_s"]:,.0f} ex/s '
          f'(target {target["target_examples_per_s"]:,}: '
          f'{"met" if target["meets_target"] else "NOT met"}); '
          + ('' if target['package_over_tutorial'] is None else
             f'{target["package_over_tutorial"]:.2f}x tutorial (target 2x: '
             f'{"met" if target["meets_2x_tutorial"] else "NOT met"})'))
  if args.output:
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, 'w') as f:
      json.dump({
          'command': 'python benchmarks/benchmark.py ' + ' '.join(argv),
          'machine': machine, 'data': data,
          'started_utc': started.isoformat(timespec='seconds'),
          'finished_utc': finished.isoformat(timespec='seconds'),
          'train_flops_per_example': {
              p: _workloads.train_flops_per_example(p) for p in posteriors},
          'loglik_flops_per_sample': _workloads.loglik_flops_per_sample(),
          'best_matmul_gflops': best_gflops,
          'headline': summary, 'targets': targets, 'tables_markdown': tables,
          'rows': runner.rows,
      }, f, indent=1)
    print(f'Wrote {args.output}')


if __name__ == '__main__':
  main(sys.argv[1:])
