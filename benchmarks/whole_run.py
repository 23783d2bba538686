r"""Whole runs of scripts/train.py as a user sees them: process start to exit.

  python benchmarks/whole_run.py --output=benchmarks/results/whole_run.json
  python benchmarks/whole_run.py --posteriors=diag,full_cov,low_rank \
      --epochs=2,12 --rounds=3
  python benchmarks/whole_run.py --rounds=1 --epochs=1,2   # smoke run
  python benchmarks/whole_run.py --xla_cache=warm   # compiled before
  python benchmarks/whole_run.py --pretouch_gib=3   # on a lazily backed VM

Runs `python scripts/train.py --posterior=P --epochs=E` (plus --train_flags)
for every family P and epoch count E, as separate processes in interleaved
rounds (the order of the runs in a round rotates from round to round, so
no family always follows another), each in a fresh --model_dir. Every
timestamp comes from outside the process or from what the run itself
leaves in its model directory:

  launch            this script, just before starting the process
  epoch 1 start     history.json: end_time - seconds of epoch 1
  epoch k end       history.json: end_time of epoch k (after validation)
  last checkpoint   newest file in checkpoints/
  test metrics      final_metrics.json written (post-fit test evaluate)
  model saved       model.keras written
  plots             newest file in plots/
  exit              this script, when the process has ended

and the phases reported, per process and as medians per family and epoch
count:

  startup           launch -> epoch 1 start (imports, data, model build)
  first_epoch       epoch 1 (includes the XLA compilations)
  steady_epoch      (epoch N end - epoch 1 end) / (N - 1): an epoch's whole
                    cost, with validation, checkpoint and summaries
  post_fit          last checkpoint -> exit, split into test_metrics,
                    model_save, plots and teardown (plots -> exit)
  total             launch -> exit

Every process gets its own empty XLA compilation cache (--xla_cache=cold,
the default: a model trained for the first time), or all share one that an
untimed run of each family with another seed filled first (--xla_cache=warm:
the same model trained before, as a resumed run, a rerun or another seed of a
study are; `tfp_vae.compilation_cache`).

Per family, the steady per-epoch cost is also taken from the totals, as
(median total at the most epochs - at the fewest) / (difference of epochs),
and every family's steady cost is given as a ratio to the first family's
(diag by default) in the same run. The goals of issue 16 are printed with
the table: steady cost within 10% of diag's, post-fit under 5 s, start-up
plus first epoch under 15 s.

Results go to --output as JSON (every process's timestamps and phases, the
summaries, the commands, the load average before and after each process);
the table is printed as Markdown. The machine is assumed noisy: compare
rows of one run.
"""

import argparse
import datetime
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_HERE)
_TRAIN_SCRIPT = os.path.join(_REPO, 'scripts', 'train.py')
# Issue 16's goals on the MLP 784-512-512, D=16, batch 128 workload.
GOALS = {'steady_ratio_to_first': 1.10, 'post_fit_seconds': 5.0,
         'startup_plus_first_epoch_seconds': 15.0}


def _parse_args(argv):
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--posteriors', default='diag,full_cov',
                      help='Comma-separated --posterior values; the first is '
                      'the reference of the ratios.')
  parser.add_argument('--epochs', default='2,12',
                      help='Comma-separated epoch counts, at least two '
                      'different ones.')
  parser.add_argument('--rounds', type=int, default=3,
                      help='Interleaved rounds of every (family, epochs) run.')
  parser.add_argument('--dataset', default='binarized_mnist')
  parser.add_argument('--data_dir', default=os.path.join(
      _REPO, '..', 'shared', 'data', 'binarized_mnist'))
  parser.add_argument('--train_flags', default='',
                      help='More flags for train.py, space-separated, e.g. '
                      '"--latent_dim=16 --batch_size=128".')
  parser.add_argument('--xla_cache', default='cold', choices=('cold', 'warm'),
                      help='cold: every process starts with an empty XLA '
                      'compilation cache (a model run for the first time); '
                      'warm: the processes share one, filled by an untimed '
                      'run of each family with another seed first (a model '
                      'run before: a resume, a rerun, another seed).')
  parser.add_argument('--work_dir', default='',
                      help='Where the model directories and logs go '
                      '(default: a new temporary directory, removed after).')
  parser.add_argument('--pretouch_gib', type=float, default=0,
                      help='Before each timed process, write this many GiB '
                      'of memory in a throwaway process (0: do not). On a VM '
                      'whose host backs guest memory lazily and reclaims '
                      'idle guest memory, every page a run touches first '
                      'otherwise costs a host page fault: measured here at '
                      '8.3 s per GiB, against 0.19 s once backed, which '
                      'lands in the start-up phase (loading the data). The '
                      'seconds it took go into each record.')
  parser.add_argument('--timeout', type=float, default=1800,
                      help='Seconds one process may run.')
  parser.add_argument('--output', default='',
                      help='Write the results here as JSON.')
  args = parser.parse_args(argv)
  args.posteriors = [p for p in args.posteriors.split(',') if p]
  try:
    args.epochs = sorted({int(e) for e in args.epochs.split(',') if e})
  except ValueError:
    parser.error(f'--epochs={args.epochs!r} must be comma-separated integers')
  if len(args.epochs) < 2 or args.epochs[0] < 1:
    parser.error(f'--epochs={args.epochs} needs two or more different '
                 'positive counts (the steady cost is their difference)')
  if not args.posteriors:
    parser.error('--posteriors is empty')
  if args.rounds < 1:
    parser.error(f'--rounds={args.rounds} must be at least 1')
  return args


def _load_average():
  try:
    return os.getloadavg()[0]
  except OSError:
    return None


def _environment():
  """This checkout's package first on the path, the rest as the user has it."""
  paths = [_REPO] + [p for p in [os.environ.get('PYTHONPATH')] if p]
  return dict(os.environ, PYTHONPATH=os.pathsep.join(paths))


def _pretouch(gib):
  """Writes `gib` GiB in a child process; returns the seconds it took."""
  if not gib:
    return None
  start = time.time()
  subprocess.run([sys.executable, '-c',
                  f'bytearray(int({gib} * 2**30))'], check=True)
  return time.time() - start


def _newest_mtime(pattern):
  times = [os.path.getmtime(p) for p in glob.glob(pattern)]
  return max(times) if times else None


# Flags a family needs beyond --posterior: the IAF has no analytic KL.
_FAMILY_FLAGS = {'iaf': ('--kl=mc',)}
# The warm-up runs of --xla_cache=warm use another seed than the timed runs:
# a compiled step does not depend on the seed, so any earlier run of the
# same model serves it.
_WARM_UP_SEED = 1001


def _run_once(args, posterior, epochs, run_dir, xla_cache_dir,
              extra_flags=()):
  """Runs train.py once; returns its timestamps and phases (seconds)."""
  model_dir = os.path.join(run_dir, 'model')
  command = [sys.executable, _TRAIN_SCRIPT, f'--posterior={posterior}',
             f'--epochs={epochs}', f'--dataset={args.dataset}',
             f'--data_dir={args.data_dir}', f'--model_dir={model_dir}',
             f'--xla_cache_dir={xla_cache_dir}',
             *_FAMILY_FLAGS.get(posterior, ()), *args.train_flags.split(),
             *extra_flags]
  load_before = _load_average()
  os.makedirs(run_dir)
  with open(os.path.join(run_dir, 'output.log'), 'w') as log:
    launch = time.time()
    process = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                             cwd=_REPO, env=_environment(),
                             timeout=args.timeout, check=False)
    exit_time = time.time()
  record = dict(posterior=posterior, epochs=epochs, command=command,
                returncode=process.returncode, load_before=load_before,
                load_after=_load_average(), launch=launch, exit=exit_time,
                total=exit_time - launch)
  if process.returncode:
    with open(os.path.join(run_dir, 'output.log')) as log:
      record['error'] = log.read()[-2000:]
    return record
  with open(os.path.join(model_dir, 'history.json')) as f:
    rows = sorted(json.load(f), key=lambda r: r['epoch'])
  epoch_ends = [r['end_time'] for r in rows]
  epoch_start = rows[0]['end_time'] - rows[0]['seconds']
  times = dict(
      epoch_1_start=epoch_start, epoch_ends=epoch_ends,
      last_checkpoint=_newest_mtime(os.path.join(model_dir, 'checkpoints',
                                                 'ckpt-*')),
      test_metrics=os.path.getmtime(os.path.join(model_dir,
                                                 'final_metrics.json')),
      model_saved=os.path.getmtime(os.path.join(model_dir, 'model.keras')),
      plots=_newest_mtime(os.path.join(model_dir, 'plots', '*')))
  record['times'] = times
  record['phases'] = dict(
      startup=epoch_start - launch,
      first_epoch=epoch_ends[0] - epoch_start,
      steady_epoch=((epoch_ends[-1] - epoch_ends[0]) / (len(rows) - 1)
                    if len(rows) > 1 else None),
      epoch_intervals=[b - a for a, b in zip(epoch_ends, epoch_ends[1:])],
      post_fit=exit_time - times['last_checkpoint'],
      test_metrics=times['test_metrics'] - times['last_checkpoint'],
      model_save=times['model_saved'] - times['test_metrics'],
      plots=times['plots'] - times['model_saved'],
      teardown=exit_time - times['plots'])
  return record


def _median(values):
  values = [v for v in values if v is not None]
  return statistics.median(values) if values else None


def _summarize(records, posteriors, epoch_counts):
  """Medians per (family, epochs), and per family the steady costs."""
  summary = {}
  for posterior in posteriors:
    by_epochs = {}
    for epochs in epoch_counts:
      runs = [r for r in records if r['posterior'] == posterior and
              r['epochs'] == epochs and 'phases' in r]
      phases = ('startup', 'first_epoch', 'steady_epoch', 'post_fit',
                'test_metrics', 'model_save', 'plots', 'teardown')
      by_epochs[epochs] = dict(
          runs=len(runs), total=_median([r['total'] for r in runs]),
          **{p: _median([r['phases'][p] for r in runs]) for p in phases})
    fewest, most = by_epochs[epoch_counts[0]], by_epochs[epoch_counts[-1]]
    from_totals = None
    if fewest['total'] is not None and most['total'] is not None:
      from_totals = ((most['total'] - fewest['total']) /
                     (epoch_counts[-1] - epoch_counts[0]))
    summary[posterior] = dict(
        by_epochs=by_epochs,
        steady_epoch_from_totals=from_totals,
        # From the run with the most epochs: the most intervals.
        steady_epoch_from_timestamps=most['steady_epoch'],
        startup=_median([e['startup'] for e in by_epochs.values()]),
        first_epoch=_median([e['first_epoch'] for e in by_epochs.values()]),
        post_fit=_median([e['post_fit'] for e in by_epochs.values()]))
  reference = summary[posteriors[0]]
  for posterior in posteriors:
    entry = summary[posterior]
    for key in ('steady_epoch_from_totals', 'steady_epoch_from_timestamps'):
      ratio = None
      if entry[key] is not None and reference[key]:
        ratio = entry[key] / reference[key]
      entry[key.replace('steady_epoch', 'steady_ratio')] = ratio
  return summary


def _format(value, digits=2):
  return '-' if value is None else f'{value:.{digits}f}'


def _table(summary, posteriors, epoch_counts):
  lines = [
      f'Seconds, medians over rounds; ratios to {posteriors[0]} in this run.',
      '',
      '| family | epochs | total | startup | first epoch | steady epoch '
      '| post-fit | test metrics | model save | plots | teardown |',
      '|---|---|---|---|---|---|---|---|---|---|---|']
  for posterior in posteriors:
    for epochs in epoch_counts:
      e = summary[posterior]['by_epochs'][epochs]
      lines.append(
          f'| {posterior} | {epochs} | ' + ' | '.join(_format(e[k]) for k in (
              'total', 'startup', 'first_epoch', 'steady_epoch', 'post_fit',
              'test_metrics', 'model_save', 'plots', 'teardown')) + ' |')
  lines += [
      '',
      f'| family | steady epoch from totals (x {posteriors[0]}) | from '
      'timestamps (x) | startup + first epoch | post-fit |',
      '|---|---|---|---|---|']
  for posterior in posteriors:
    s = summary[posterior]
    startup_first = (None if s['startup'] is None or s['first_epoch'] is None
                     else s['startup'] + s['first_epoch'])
    lines.append(
        f'| {posterior} | {_format(s["steady_epoch_from_totals"])} '
        f'({_format(s["steady_ratio_from_totals"])}) | '
        f'{_format(s["steady_epoch_from_timestamps"])} '
        f'({_format(s["steady_ratio_from_timestamps"])}) | '
        f'{_format(startup_first)} | {_format(s["post_fit"])} |')
  lines += ['', 'Goals (issue 16): steady ratio <= '
            f'{GOALS["steady_ratio_to_first"]:.2f}, startup + first epoch < '
            f'{GOALS["startup_plus_first_epoch_seconds"]:.0f} s, post-fit < '
            f'{GOALS["post_fit_seconds"]:.0f} s.']
  return '\n'.join(lines)


def main(argv):
  args = _parse_args(argv)
  work_dir = args.work_dir or tempfile.mkdtemp(prefix='whole_run_')
  runs = [(p, e) for p in args.posteriors for e in args.epochs]
  records = []
  started = datetime.datetime.now(datetime.timezone.utc).isoformat()
  shared_cache = os.path.join(work_dir, 'xla_cache')
  if args.xla_cache == 'warm':
    for posterior in args.posteriors:
      warm_up = _run_once(args, posterior, args.epochs[0],
                          os.path.join(work_dir, f'warm-up-{posterior}'),
                          shared_cache,
                          extra_flags=(f'--seed={_WARM_UP_SEED}',))
      print(f'warm-up {posterior}: {warm_up["total"]:.1f} s (not counted)',
            flush=True)
  for round_index in range(args.rounds):
    shift = round_index % len(runs)
    for posterior, epochs in runs[shift:] + runs[:shift]:
      run_dir = os.path.join(work_dir, f'round{round_index}-{posterior}-'
                             f'{epochs}epochs')
      pretouch_seconds = _pretouch(args.pretouch_gib)
      record = _run_once(
          args, posterior, epochs, run_dir,
          shared_cache if args.xla_cache == 'warm' else
          os.path.join(run_dir, 'xla_cache'))
      record['round'] = round_index
      record['pretouch_seconds'] = pretouch_seconds
      records.append(record)
      status = ('ok' if 'phases' in record else
                f'failed ({record["returncode"]}): {run_dir}/output.log')
      print(f'round {round_index} {posterior} {epochs} epochs: '
            f'{record["total"]:.1f} s, {status}', flush=True)
  summary = _summarize(records, args.posteriors, args.epochs)
  table = (f'XLA compilation cache: {args.xla_cache}.\n\n' +
           _table(summary, args.posteriors, args.epochs))
  print(table)
  if args.output:
    result = dict(
        benchmark='whole_run', started=started, argv=sys.argv,
        machine=dict(platform=platform.platform(), cpus=os.cpu_count(),
                     python=sys.version.split()[0]),
        xla_cache=args.xla_cache, goals=GOALS, summary=summary,
        records=records, table=table)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, 'w') as f:
      json.dump(result, f, indent=1)
    print(f'Wrote {args.output}')
  if not args.work_dir:
    shutil.rmtree(work_dir, ignore_errors=True)
  failed = [r for r in records if 'phases' not in r]
  if failed:
    sys.exit(f'{len(failed)} run(s) failed; their output ends are in the '
             'records ("error").')


if __name__ == '__main__':
  main(sys.argv[1:])
