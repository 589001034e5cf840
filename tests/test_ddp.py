"""Multi-process training (torchrun, gloo, 2 CPU processes) against one process with the whole batch.

Every run here is the tiny config on synthetic images, 20 steps; the processes run at one thread each. Bit-identity of
the two ranks' models is checked by the training loop itself at every epoch's end (`vqba_nb.dist.check_replicas`
raises, the run fails), so a run that finishes has ranks that agree bit for bit."""
from __future__ import annotations
import os, signal, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from conftest import REPO, _env, require_cifar

STEPS = 20
TINY20 = ['data.synthetic=true', f'data.subset={32 * STEPS}', 'data.test_subset=64', 'data.batch_size=32', 'data.eval_batch_size=64',
          'model.n_hid=16', 'model.n_res=1', 'quantizer.K=32', 'quantizer.dim=8', 'wandb.mode=disabled', 'train.threads=1',
          'train.epochs=1', '--quiet']
ARMS = {'vqema': ['quantizer.type=vqema'], 'vqema_restart': ['quantizer.type=vqema', 'quantizer.restart_threshold=1.0'],
        'ba': ['quantizer.type=ba'], 'ba_balanced': ['quantizer.type=balanced'], 'kmeans': ['quantizer.type=kmeans'],
        'vqema_rotation': ['quantizer.type=vqema_rotation'], 'cvq': ['quantizer.type=cvq', 'quantizer.anchor=probrandom'],
        'simvq': ['quantizer.type=simvq']}


def launch(nproc: int, args: list[str], cwd: Path, script=REPO / 'scripts' / 'train.py', **kw) -> subprocess.Popen:
    "`script` (scripts/train.py) in one process, or under torchrun in `nproc` (its own session, so that a test can kill it whole)."
    cmd = [sys.executable, str(script)] if nproc == 1 else \
          [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(nproc), str(script)]
    return subprocess.Popen([*cmd, *args], cwd=cwd, env={**_env(), 'OMP_NUM_THREADS': '1'}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


def finish(p: subprocess.Popen, timeout=300) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def train_ok(nproc, args, cwd, **kw):
    code, out, err = finish(launch(nproc, args, cwd, **kw))
    assert code == 0, f'{nproc} process(es) exited {code}:\n{err[-3000:]}'
    return out


def workers(p: subprocess.Popen, n=2) -> dict:
    "rank -> pid of torchrun's worker processes (they run in sessions of their own: killing torchrun's does not reach them)."
    kids = subprocess.run(['pgrep', '-P', str(p.pid)], capture_output=True, text=True).stdout.split()
    assert len(kids) == n, kids
    ranks = {}
    for pid in kids:
        env = Path(f'/proc/{pid}/environ').read_bytes().split(b'\0')
        ranks[int(next(e for e in env if e.startswith(b'RANK=')).split(b'=')[1])] = int(pid)
    return ranks


def state(run_dir: Path) -> dict:
    return torch.load(run_dir / 'checkpoints' / 'latest.pt', map_location='cpu', weights_only=True)


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / a.double().norm().clamp_min(1e-12))


@pytest.mark.parametrize('arm', list(ARMS))
def test_two_processes_train_the_one_process_model(arm, tmp_path):
    """2 processes with half of each batch each end where 1 process with the whole batch ends: weights, codebook and EMA
    state within 1e-9 relative (in float64: tests/ddp_worker.py says why; measured: 2e-14 at most), far inside the 1e-4 asked for."""
    jobs = [(n, [*TINY20, *ARMS[arm], f'out_dir={tmp_path}', '--name', f'p{n}']) for n in (1, 2)]
    with ThreadPoolExecutor(2) as ex: list(ex.map(lambda j: train_ok(j[0], j[1], tmp_path, script=REPO / 'tests' / 'ddp_worker.py'), jobs))
    one, two = state(tmp_path / 'p1'), state(tmp_path / 'p2')
    assert one['step'] == two['step'] == STEPS
    worst = {k: rel_diff(v, two['model'][k]) for k, v in one['model'].items() if v.is_floating_point()}
    cb = 'quantizer.proj.weight' if arm == 'simvq' else 'quantizer.codebook'   # SimVQ's codebook is C W: W is what it learns
    assert cb in worst
    assert one['model'][cb].dtype == torch.float64
    bad = {k: d for k, d in worst.items() if d > 1e-9}
    print(arm, 'largest relative difference', max(worst.values()), max(worst, key=worst.get))
    assert not bad, f'{arm}: 2 processes differ from 1 by more than 1e-9 relative in {bad}'
    if arm == 'vqema_restart': assert two['model']['quantizer.restart_step'] == STEPS


def test_ddp_resume_after_kill_is_bit_exact(tmp_path):
    "A 2-process run killed (SIGKILL, every process) after a mid-epoch checkpoint and resumed under torchrun ends bitwise equal to an uninterrupted one."
    args = [*TINY20, *ARMS['ba'], 'train.epochs=3', 'train.ckpt_every=7', f'out_dir={tmp_path}']
    ref = launch(2, [*args, '--name', 'ref'], tmp_path)
    killed = launch(2, [*args, '--name', 'killed'], tmp_path)
    ck = tmp_path / 'killed' / 'checkpoints' / 'latest.pt'
    t0 = time.time()
    while not ck.is_file() and killed.poll() is None and time.time() - t0 < 240: time.sleep(0.05)
    if killed.poll() is None:
        for pid in workers(killed).values(): os.kill(pid, signal.SIGKILL)   # every process at once, as a lost machine
    killed.communicate(timeout=60)
    stopped_at = torch.load(ck, map_location='cpu', weights_only=True)['step']
    assert finish(ref)[0] == 0
    if stopped_at == 3 * STEPS: pytest.skip('the run finished before the kill landed (machine too fast for this timing)')
    assert stopped_at % 7 == 0 or stopped_at % STEPS == 0, stopped_at
    out = train_ok(2, ['--resume', str(tmp_path / 'killed'), '--quiet'], tmp_path)
    a, b = state(tmp_path / 'ref'), state(tmp_path / 'killed')
    for k in ('model', 'optimizer'):
        assert set(a[k]) == set(b[k])
    for k, v in a['model'].items(): assert torch.equal(v, b['model'][k]), k
    for s, t in zip(a['optimizer']['state'].values(), b['optimizer']['state'].values()):
        for k in s: assert torch.equal(s[k], t[k]), k
    assert (tmp_path / 'killed' / 'resume.log').read_text().count('resumed at') == 1


def test_killed_rank_stops_the_run(tmp_path):
    "SIGKILL of rank 1 mid-run: rank 0 stops within the timeout with one clear line (exit 2 reported by torchrun), no hang."
    args = [*TINY20, *ARMS['vqema'], f'data.subset={32 * 400}', 'train.epochs=5', 'train.ckpt_every=5', 'train.dist_timeout=60', f'out_dir={tmp_path}', '--name', 'k']
    p = launch(2, args, tmp_path)
    ck = tmp_path / 'k' / 'checkpoints' / 'latest.pt'
    t0 = time.time()
    while not ck.is_file() and p.poll() is None and time.time() - t0 < 240: time.sleep(0.1)
    assert p.poll() is None, p.communicate()[1][-2000:]
    ranks = workers(p)
    t_kill = time.time()
    os.kill(ranks[1], signal.SIGKILL)
    code, out, err = finish(p, timeout=120)
    assert time.time() - t_kill < 90, 'the run did not stop in time'
    assert code != 0
    lines = [l for l in err.splitlines() if l.startswith('error: ')]
    assert len(lines) == 1 and 'rank 0 lost the other processes' in lines[0] and 'resume from the last checkpoint with: torchrun --nproc_per_node 2' in lines[0], err[-3000:]
    assert 'exitcode  : 2' in err or 'exitcode: 2' in err, err[-3000:]
    assert ck.is_file() and not list(ck.parent.glob('.*.tmp*'))
    assert '2 processes (torchrun)' in (tmp_path / 'k' / 'provenance.jsonl').read_text()
    torch.load(ck, map_location='cpu', weights_only=True)   # the last checkpoint is intact


def test_ddp_real_cifar_matches_one_process(tmp_path):
    "The issue's command on real CIFAR-10 (VQ-EMA, 2,048 images, 1 epoch): 2 processes end with 1 process's test metrics (PSNR within 0.05 dB, perplexity within 1%)."
    root = require_cifar()
    args = ['--config', str(REPO / 'configs' / 'vqema.yaml'), '--epochs', '1', 'data.subset=2048', 'data.test_subset=500',
            f'data.dir={root}', 'train.threads=1', 'wandb.mode=disabled', f'out_dir={tmp_path}', '--quiet']
    with ThreadPoolExecutor(2) as ex: list(ex.map(lambda n: train_ok(n, [*args, '--name', f'p{n}'], tmp_path), (1, 2)))
    import json
    one, two = (json.loads((tmp_path / f'p{n}' / 'metrics.jsonl').read_text().splitlines()[-1]) for n in (1, 2))
    print('1 process', one['test_psnr'], one['test_perplexity'], '2 processes', two['test_psnr'], two['test_perplexity'])
    assert abs(one['test_psnr'] - two['test_psnr']) < 0.05, (one['test_psnr'], two['test_psnr'])
    assert abs(one['test_perplexity'] - two['test_perplexity']) / one['test_perplexity'] < 0.01, (one['test_perplexity'], two['test_perplexity'])


def test_sigterm_on_one_rank_stops_every_rank_with_one_save(tmp_path):
    "SIGTERM to rank 1 alone: every process stops at the same step, rank 0 saves once and prints the torchrun resume line; the resumed run ends bitwise equal to an uninterrupted one."
    args = [*TINY20, *ARMS['vqema_restart'], f'data.subset={32 * 200}', 'train.epochs=2', f'out_dir={tmp_path}']
    p = launch(2, [*args, '--name', 'term'], tmp_path)
    ref = launch(2, [*args, '--name', 'ref'], tmp_path)
    t0 = time.time()
    while not (tmp_path / 'term' / 'metrics.jsonl').is_file() and p.poll() is None and time.time() - t0 < 240: time.sleep(0.1)   # inside fit
    assert p.poll() is None, p.communicate()[1][-2000:]
    time.sleep(1)
    os.kill(workers(p)[1], signal.SIGTERM)
    code, out, err = finish(p, timeout=120)
    ck = state(tmp_path / 'term')
    assert 0 < ck['step'] < 2 * 200, ck['step']
    assert err.count('stopped: checkpoint saved to') == 1 and 'resume with: torchrun --nproc_per_node 2 scripts/train.py --resume' in err, err[-3000:]
    assert 'exitcode  : 143' in err or 'exitcode: 143' in err, err[-3000:]   # 128 + SIGTERM, from the ranks themselves
    assert 'Traceback' not in err.split('stopped: checkpoint saved to')[0][-2000:]
    train_ok(2, ['--resume', str(tmp_path / 'term'), '--quiet'], tmp_path)
    assert finish(ref)[0] == 0
    a, b = state(tmp_path / 'ref'), state(tmp_path / 'term')
    for k, v in a['model'].items(): assert torch.equal(v, b['model'][k]), k
