"""The full tier's runner (scripts/full_tier.py), dry-run on the CPU with a tiny synthetic sweep: it measures one epoch,
prints and follows its plan, records every run, skips them when run again, and starts nothing after its budget.
Its real target, sweeps/full.yaml on a GPU, is only expanded here (185 runs, every arm, K 256/512/1024, 5 seeds)."""
from __future__ import annotations
import os, re, subprocess, sys

import yaml
from conftest import REPO, _env, assert_user_error, tiny_dict
from vqba_nb.runs import record_finished
from vqba_nb.sweep import expand_sweep

TIER = REPO / 'scripts' / 'full_tier.py'


def tier(args, cwd, timeout=300):
    return subprocess.run([sys.executable, str(TIER), *map(str, args)], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def tiny_tier(tmp_path):
    "2 quantizers x 2 seeds of the tiny config, 1 epoch each."
    base = tiny_dict(tmp_path / 'exp'); del base['name']; base['train'] = {**base['train'], 'epochs': 1}
    (tmp_path / 'base.yaml').write_text(yaml.safe_dump(base))
    (tmp_path / 'ba.yaml').write_text('inherit: base.yaml\nquantizer: {type: ba, K: 16, dim: 8}\n')
    (tmp_path / 'vq.yaml').write_text('inherit: base.yaml\nquantizer: {type: vqema, K: 16, dim: 8}\n')
    (tmp_path / 'tier.yaml').write_text('name: tier\nepochs: 1\ngrid:\n  config: [vq.yaml, ba.yaml]\n  train.seed: [0, 1]\n')
    return tmp_path / 'tier.yaml'


def test_tier_dry_run_records_every_run_then_skips_them(tmp_path):
    sw = tiny_tier(tmp_path)
    r = tier(['--sweep', sw, '--device', 'cpu', '--budget-s', 600], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert '4 runs, 0 recorded, 4 to run on cpu' in r.stdout, r.stdout
    probe = re.search(r'probe: 1 epoch of tier/vq-s0 alone took ([\d.]+)s, peak memory (\d+) MB', r.stdout)
    assert probe and float(probe[1]) > 0 and int(probe[2]) > 0, r.stdout
    plan = re.search(r'plan: (\d+) run\(s\) at a time', r.stdout)
    assert plan and int(plan[1]) == 1, r.stdout            # 4 epochs of ~1 s fit 600 s one at a time
    for run in ('vq-s0', 'vq-s1', 'ba-s0', 'ba-s1'):
        assert f'tier/{run}: ran; recorded in' in r.stdout, r.stdout
        assert record_finished(tmp_path / 'results' / 'tier' / run, 1)
    r = tier(['--sweep', sw, '--device', 'cpu'], tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == f'{sw}: 4 runs, 4 recorded, 0 to run on cpu', r.stdout + r.stderr


def test_tier_budget_sets_the_parallelism_and_the_cut_off(tmp_path):
    sw = tiny_tier(tmp_path)
    r = tier(['--sweep', sw, '--device', 'cpu', '--budget-s', 0.5, '--plan-only'], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    plan = re.search(r'plan: (\d+) run\(s\) at a time \(needed (\d+) .*caps: memory \d+, cpus (\d+), max 16\); does not fit', r.stdout)
    assert plan, r.stdout
    assert int(plan[2]) > 1 and int(plan[3]) == os.cpu_count() and int(plan[1]) == min(int(plan[2]), os.cpu_count()), r.stdout
    assert not (tmp_path / 'results').exists()            # the plan alone runs nothing
    r = tier(['--sweep', sw, '--device', 'cpu', '--budget-s', 0.001, '--max-parallel', 1], tmp_path)   # spent by the probe itself
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count(': not started (the time budget is spent)') == 4 and '4 run(s) not started: run the same command again' in r.stdout, r.stdout
    assert not (tmp_path / 'results').exists()


def test_tier_bad_input(tmp_path):
    sw = tiny_tier(tmp_path)
    (tmp_path / 'afile').write_text('x')
    for args, words in [(['--budget-s', 0], ['--budget-s', '> 0']), (['--max-parallel', 0], ['--max-parallel']),
                        (['--results', tmp_path / 'afile'], ['afile', 'is a file']), (['--results', ''], ['--results needs a folder']),
                        (['--results', tmp_path / 'exp'], ['the runs\' own folder']),
                        (['--device', 'cuda:7'] if not __import__('torch').cuda.is_available() else ['--device', 'tpu'], ['device']),
                        (['--sweep', tmp_path / 'none.yaml'], ['none.yaml', 'not found'])]:
        r = tier(['--sweep', sw, *args] if '--sweep' not in args else args, tmp_path)
        assert_user_error(r.returncode, r.stderr, *words)


def test_full_sweep_covers_every_arm_at_three_codebook_sizes():
    runs = expand_sweep(REPO / 'sweeps' / 'full.yaml')
    assert len(runs) == 185 and all(c.train.epochs == 30 for _, c in runs)
    arms = {(c.quantizer['type'], c.quantizer.get('restart_threshold', 0) > 0, c.quantizer.get('init'), c.quantizer.get('q_mode')) for _, c in runs}
    study = {(c.quantizer['type'], c.quantizer.get('restart_threshold', 0) > 0, c.quantizer.get('init'), c.quantizer.get('q_mode'))
             for _, c in expand_sweep(REPO / 'sweeps' / 'study.yaml')}
    assert arms == study                                    # every arm of the study, nothing else
    assert {c.quantizer['K'] for _, c in runs if c.quantizer['type'] != 'identity'} == {256, 512, 1024}
    assert {c.train.seed for _, c in runs} == set(range(5))


def test_gpu_check_script_dry_run_on_the_cpu(tmp_path):
    "scripts/gpu/check.sh's plumbing, on the CPU at tiny sizes (DRY=1); the checks it exists for need a GPU."
    env = {**_env(), 'DRY': '1', 'OUT': str(tmp_path / 'out'), 'PYTHON': sys.executable}
    r = subprocess.run(['bash', str(REPO / 'scripts' / 'gpu' / 'check.sh')], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = tmp_path / 'out'
    assert (out / 'no_sync.txt').read_text().count('6 steps without a host sync') == 6
    assert 'project vqema' in (out / 'bench.json').read_text()
    assert [l for l in (out / 'goal_metrics.jsonl').read_text().splitlines() if l.strip()][-1].startswith('{"epoch": 1,')
    assert 'wall: ' in (out / 'goal.txt').read_text() and not (out / 'exp').exists()
