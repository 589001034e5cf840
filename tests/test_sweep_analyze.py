"""Sweeps and the analysis script, end to end on a tiny synthetic sweep: expansion, --list, --index, skipping finished
runs and resuming unfinished ones, --parallel, and `scripts/analyze.py` on a sweep, on a single run, and on broken input."""
from __future__ import annotations
import json, signal, subprocess, sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, _env, assert_user_error, kill, read_metrics, tiny, wait_for
from vqba_nb.runs import RECORD_FILES

SWEEP, ANALYZE = REPO / 'scripts' / 'sweep.py', REPO / 'scripts' / 'analyze.py'


def script(path, args, cwd, timeout=300):
    return subprocess.run([sys.executable, str(path), *map(str, args)], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def sweep_file(tmp_path):
    "A 2 quantizers x 2 seeds sweep of the tiny config, 2 epochs a run, writing under tmp_path/exp."
    over = dict(o.split('=', 1) for o in tiny(tmp_path / 'exp', epochs=2) if not o.startswith(('quantizer.', 'train.epochs')))
    (tmp_path / 'vq.yaml').write_text('quantizer: {type: vqema, K: 16, dim: 8}\n')
    (tmp_path / 'ba.yaml').write_text('quantizer: {type: ba, K: 16, dim: 8, beta_start: 10.0, beta_end: 1000.0}\n')
    sw = {'name': 'tiny', 'epochs': 2, 'grid': {'config': ['vq.yaml', 'ba.yaml'], 'train.seed': [0, 1]},
          'overrides': {k: yaml.safe_load(v) for k, v in over.items()}}
    (tmp_path / 'sw.yaml').write_text(yaml.safe_dump(sw))
    return tmp_path / 'sw.yaml'


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT], ids=['SIGTERM', 'SIGINT'])
def test_sweep_stopped_by_a_signal(sweep_file, tmp_path, sig):
    "SIGTERM or Ctrl-C during a sweep: no traceback, one message naming the run and its checkpoint and how to go on, exit 128 + signal, no next run started."
    exp = tmp_path / 'exp' / 'tiny'
    p = subprocess.Popen([sys.executable, str(SWEEP), '--sweep', str(sweep_file), '--epochs', '500'], cwd=tmp_path, env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: (exp / 'vq-s0' / 'checkpoints' / 'latest.pt').exists(), timeout=120, proc=p), p.communicate()
    rc, out, err = kill(p, sig)
    assert rc == 128 + sig, f'exit {rc}: {err}'
    assert 'Traceback' not in err, err
    assert f'[0] tiny/vq-s0: interrupted by signal {int(sig)}' in err and str(exp / 'vq-s0' / 'checkpoints' / 'latest.pt') in err, err
    assert 'run the same command again to resume' in err
    assert not (exp / 'vq-s1').exists()                                  # the sweep stopped there
    r = script(SWEEP, ['--sweep', sweep_file, '--epochs', '500', '--list'], tmp_path)
    assert r.stdout.splitlines()[0].split()[1:] == ['tiny/vq-s0', 'partial'], r.stdout   # resumable


def test_sweep_runs_skips_resumes_and_analyzes(sweep_file, tmp_path):
    exp = tmp_path / 'exp' / 'tiny'
    r = script(SWEEP, ['--sweep', sweep_file, '--list'], tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [l.split()[1] for l in lines[:-1]] == ['tiny/vq-s0', 'tiny/vq-s1', 'tiny/ba-s0', 'tiny/ba-s1']
    assert all(l.split()[2] == 'pending' for l in lines[:-1]) and lines[-1] == '4 pending'
    # one array job
    r = script(SWEEP, ['--sweep', sweep_file, '--index', 2], tmp_path)
    assert r.returncode == 0 and 'tiny/ba-s0: ran' in r.stdout, r.stdout + r.stderr
    assert [m['epoch'] for m in read_metrics(exp / 'ba-s0')] == [1, 2]
    # an unfinished run (1 of 2 epochs, as if killed) is resumed, a finished one skipped, the rest run, 2 workers
    r = script(SWEEP, ['--sweep', sweep_file, '--index', 0, '--epochs', 1], tmp_path)
    assert r.returncode == 0, r.stderr
    r = script(SWEEP, ['--sweep', sweep_file, '--parallel', 2], tmp_path)
    assert r.returncode == 0, r.stderr
    assert 'tiny/vq-s0: resumed' in r.stdout and 'tiny/ba-s0: skipped (recorded)' in r.stdout and 'tiny/vq-s1: ran' in r.stdout, r.stdout
    results = tmp_path / 'results' / 'tiny'
    for run in ['vq-s0', 'vq-s1', 'ba-s0', 'ba-s1']:
        assert [m['epoch'] for m in read_metrics(exp / run)] == [1, 2], run
        assert sorted(p.name for p in (results / run).iterdir()) == sorted(RECORD_FILES), run   # the record, no checkpoints
        assert [m['epoch'] for m in read_metrics(results / run)] == [1, 2]
    # the record of run 0 (killed after 1 epoch, then resumed) names both commands
    prov = json.loads((results / 'vq-s0' / 'record.json').read_text())['provenance']
    assert [p['what'] for p in prov] == ['start', 'resume'] and '--index 0' in prov[0]['command'], prov
    # the analysis of the whole sweep
    r = script(ANALYZE, ['--experiment', 'tiny', '--root', tmp_path / 'exp'], tmp_path)
    assert r.returncode == 0, r.stderr
    out = exp / 'analysis'
    assert {'report.md', 'curves.png', 'code_usage.png', 'ba_schedule.png', 'reconstructions.png'} <= {p.name for p in out.iterdir()}
    report = (out / 'report.md').read_text()
    assert 'VQ-EMA K=16 | 2 |' in report and 'BA-VQ K=16 | 2 |' in report and 'BA-VQ minus VQ-EMA' in report
    assert 'fewer than 3 seeds a side: not evidence' in report and '## Verdict' in report
    # a single run, by path
    r = script(ANALYZE, ['--experiment', exp / 'vq-s0'], tmp_path)
    assert r.returncode == 0 and (exp / 'vq-s0' / 'analysis' / 'report.md').is_file(), r.stderr


def test_sweep_continues_from_records(sweep_file, tmp_path):
    "A new machine (no experiments/) skips runs with a finished record; a killed run's copied folder is not a record."
    import shutil
    r = script(SWEEP, ['--sweep', sweep_file, '--index', 0], tmp_path)
    assert r.returncode == 0 and 'recorded in' in r.stdout, r.stdout + r.stderr
    results = tmp_path / 'results' / 'tiny'
    # a run killed after its first epoch, its folder copied into results/ by hand with a record.json
    r = script(SWEEP, ['--sweep', sweep_file, '--index', 1, '--epochs', 1, '--no-record'], tmp_path)
    assert r.returncode == 0, r.stderr
    shutil.copytree(tmp_path / 'exp' / 'tiny' / 'vq-s1', results / 'vq-s1', ignore=shutil.ignore_patterns('checkpoints', '.lock'))
    (results / 'vq-s1' / 'record.json').write_text('{}')
    shutil.rmtree(tmp_path / 'exp')                                  # a fresh clone: only results/ is there
    r = script(SWEEP, ['--sweep', sweep_file, '--list'], tmp_path)
    assert r.returncode == 0, r.stderr
    status = {l.split()[1]: l.split()[2] for l in r.stdout.splitlines()[:-1]}
    assert status == {'tiny/vq-s0': 'recorded', 'tiny/vq-s1': 'pending', 'tiny/ba-s0': 'pending', 'tiny/ba-s1': 'pending'}, status
    assert r.stdout.splitlines()[-1] == '1 recorded, 3 pending'
    r = script(SWEEP, ['--sweep', sweep_file, '--index', 0], tmp_path)
    assert r.returncode == 0 and 'tiny/vq-s0: skipped (recorded)' in r.stdout, r.stdout
    assert not (tmp_path / 'exp').exists()                           # nothing was trained


def test_changed_arm_old_record_does_not_count(sweep_file, tmp_path):
    """A record counts only for the config that made it: after the arm's config changes, --list shows the old record as
    stale, the sweep runs it again, and the new record replaces it; a copy of the run folder of the old arm is not resumed."""
    import shutil
    r = script(SWEEP, ['--sweep', sweep_file, '--index', 0], tmp_path)
    assert r.returncode == 0 and 'recorded in' in r.stdout, r.stdout + r.stderr
    shutil.rmtree(tmp_path / 'exp')                                   # a new machine: the record alone
    (tmp_path / 'vq.yaml').write_text('quantizer: {type: vqema, K: 16, dim: 8, decay: 0.9}\n')   # the arm changes
    r = script(SWEEP, ['--sweep', sweep_file, '--list'], tmp_path)
    assert r.returncode == 0 and r.stdout.splitlines()[0].split()[1:] == ['tiny/vq-s0', 'stale'], r.stdout
    assert r.stdout.splitlines()[-1] == '1 stale, 3 pending'
    r = script(SWEEP, ['--sweep', sweep_file, '--index', 0], tmp_path)
    assert r.returncode == 0 and 'tiny/vq-s0: ran; recorded in' in r.stdout, r.stdout + r.stderr
    rec = yaml.safe_load((tmp_path / 'results' / 'tiny' / 'vq-s0' / 'config.yaml').read_text())
    assert rec['quantizer']['decay'] == 0.9
    (tmp_path / 'vq.yaml').write_text('quantizer: {type: vqema, K: 16, dim: 8}\n')              # back: the folder in exp/ is the other arm's
    r = script(SWEEP, ['--sweep', sweep_file, '--index', 0], tmp_path)
    assert_user_error(r.returncode, r.stderr, 'run(s) failed')
    assert 'holds a run of a different config' in r.stdout, r.stdout


def test_analyze_reports_malformed_metrics(sweep_file, tmp_path):
    exp = tmp_path / 'exp' / 'tiny'
    assert script(SWEEP, ['--sweep', sweep_file, '--index', 0], tmp_path).returncode == 0
    m = exp / 'vq-s0' / 'metrics.jsonl'
    good = m.read_text().splitlines()
    m.write_text('\n'.join([good[0], '{"epoch": 2, "test_psn', 'garbage', '', '[1, 2]', good[1]]) + '\n')
    (exp / 'vq-s1').mkdir(parents=True)
    (exp / 'vq-s1' / 'config.yaml').write_text(yaml.safe_dump({'name': 'tiny/vq-s1', 'quantizer': {'type': 'vqema', 'K': 16}}))
    r = script(ANALYZE, ['--experiment', 'tiny', '--root', tmp_path / 'exp'], tmp_path)
    assert r.returncode == 0, r.stderr
    assert 'tiny/vq-s0: skipped 3 malformed line(s)' in r.stdout and 'tiny/vq-s1: no finished epoch yet' in r.stdout, r.stdout


@pytest.mark.parametrize('args, needle', [
    (['--experiment', 'nope'], 'not found'),
    ([], 'required'),
    (['--results', str(REPO / 'results' / 'study'), '--out', '/etc/hostname/analysis'], 'cannot write the analysis to'),   # a file in the way
    (['--results', str(REPO / 'results' / 'study'), '--out', 'a', '--bench', '/etc/hostname'], 'is not readable JSON'),
])
def test_analyze_bad_input(args, needle, tmp_path):
    r = script(ANALYZE, args, tmp_path)
    assert_user_error(r.returncode, r.stderr, needle)


@pytest.mark.parametrize('content, needle', [
    ('grid: {train.seed: 3}\n', 'non-empty lists'),
    ('grid: {train.seed: [0]}\nbogus: 1\n', 'unknown key'),
    ('grid: {train.seed: [0], optim.lr: [-1]}\n', 'optim.lr'),
])
def test_sweep_bad_files(content, needle, tmp_path):
    (tmp_path / 'sw.yaml').write_text(content)
    r = script(SWEEP, ['--sweep', tmp_path / 'sw.yaml', '--list'], tmp_path)
    assert_user_error(r.returncode, r.stderr, needle)
    r = script(SWEEP, ['--sweep', tmp_path / 'missing.yaml'], tmp_path)
    assert_user_error(r.returncode, r.stderr, 'not found')


def test_shipped_sweeps_expand():
    from vqba_nb.sweep import expand_sweep
    quick = expand_sweep(REPO / 'sweeps' / 'quick.yaml')
    assert [n for n, _ in quick] == ['quick/vqema-K256-s0', 'quick/vqema-K256-s1', 'quick/vqema-K512-s0', 'quick/vqema-K512-s1']
    comp = expand_sweep(REPO / 'sweeps' / 'compare.yaml', epochs=3)
    assert len(comp) == 12 and {c.quantizer['type'] for _, c in comp} == {'vqema', 'ba'} and all(c.train.epochs == 3 for _, c in comp)
    study = expand_sweep(REPO / 'sweeps' / 'study.yaml')
    names = [n for n, _ in study]
    assert len(study) == 53 and names[:2] == ['study/vqema-K512-s0', 'study/ba-K512-s0']
    main = [c for n, c in study if not n.startswith('study/frontier-')]
    assert len(main) == 47 and all(c.train.epochs == 10 and c.data.batch_size == 128 for c in main)
    frontier = [c for n, c in study if n.startswith('study/frontier-')]
    assert sorted(c.quantizer['beta_end'] for c in frontier) == [0.3, 1.0, 3.0, 10.0, 30.0, 1000.0]
    assert all(c.train.epochs == 3 and c.quantizer['schedule'] == 'constant' for c in frontier)


def test_sweep_failed_run_exits_2(sweep_file, tmp_path):
    "A run that cannot start (its folder is locked by a live process) is reported, and the sweep exits with status 2."
    import os, socket
    run_dir = tmp_path / 'exp' / 'tiny' / 'vq-s0'
    run_dir.mkdir(parents=True)
    (run_dir / '.lock').write_text(f'{socket.gethostname()} {os.getpid()}')   # this test's own process: alive
    r = script(SWEEP, ['--sweep', sweep_file, '--index', 0], tmp_path)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert 'tiny/vq-s0: failed: run folder' in r.stdout and 'in use by process' in r.stdout, r.stdout
    assert r.stderr.strip().startswith('error: 1 run(s) failed') and len(r.stderr.strip().splitlines()) == 1, r.stderr
