"""Foundation tests of the training command: a real CIFAR-10 run, exact resume after SIGKILL, clean errors, --help."""
from __future__ import annotations
import math, signal
from pathlib import Path

import pytest
import torch
import yaml

from conftest import (CONSOLE_SCRIPT, REPO, TINY_STEPS_PER_EPOCH, assert_same_run, assert_same_weights, assert_user_error,
                      files_under, kill, read_metrics, require_cifar, start, tiny, train, train_many, wait_for)
import vqba_nb.train as T
import vqba_nb.config as C
import vqba_nb.runs as R

RUN_FILES = ['config.yaml', 'metrics.jsonl', 'checkpoints/latest.pt', 'checkpoints/best.pt']


def check_run_folder(run_dir: Path, epochs: int):
    "The files a finished run leaves, all well-formed."
    for f in RUN_FILES: assert (run_dir / f).is_file(), f'{f} missing in {run_dir}'
    assert not (run_dir / '.lock').exists(), '.lock left behind by a finished run'
    assert sorted(p.name for p in (run_dir / 'samples').glob('*.png')) == [f'epoch_{e:03d}.png' for e in range(1, epochs + 1)]
    recs = read_metrics(run_dir)
    assert [r['epoch'] for r in recs] == list(range(1, epochs + 1))
    ck = R.load_checkpoint(run_dir / 'checkpoints' / 'latest.pt')
    assert (ck['epoch'], ck['batch'], ck['step']) == (epochs, 0, recs[-1]['step'])
    R.load_checkpoint(run_dir / 'checkpoints' / 'best.pt')
    # config.yaml is the run's whole, valid config, the same as the checkpoint's
    saved = yaml.safe_load((run_dir / 'config.yaml').read_text())
    assert saved == ck['config']
    C.config_from_dict(saved)
    return recs, ck


# ---------------------------------------------------------------- (a) real CIFAR-10
def test_cifar_short_run(tmp_path):
    "A 1-epoch run of the default model on 512 real CIFAR-10 images writes every file; test PSNR is finite and > 10 dB."
    root = require_cifar()
    out = tmp_path / 'out'
    r = train(['--name', 'cifar', '--data-dir', root, 'data.download=false', 'data.subset=512', 'data.test_subset=500',
               'train.epochs=1', 'wandb.mode=disabled', f'out_dir={out}'], cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert 'done: cifar' in r.stdout
    recs, ck = check_run_folder(out / 'cifar', 1)
    rec = recs[0]
    assert rec['step'] == 512 // 128
    assert ck['config']['quantizer'] == C.Config().quantizer and ck['config']['model'] == C.asdict(C.ModelCfg())   # the defaults
    assert math.isfinite(rec['test_psnr']) and rec['test_psnr'] > 10, rec
    assert all(math.isfinite(v) for v in rec.values() if isinstance(v, float)), rec
    assert_same_weights(out / 'cifar' / 'checkpoints' / 'latest.pt', out / 'cifar' / 'checkpoints' / 'best.pt')


def test_config_files_are_valid():
    "Every config shipped in configs/ reads (following `inherit:`) and validates."
    files = sorted((REPO / 'configs').glob('*.yaml'))
    assert files
    for f in files: C.config_from_dict(C.read_yaml(f))


def test_override_semantics():
    "Later overrides win; key=value beats a flag; a quantizer mapping with `type` replaces the section; dotted keys merge."
    over = C.apply_overrides({}, ['optim.lr=1e-3', 'optim.lr=2e-3', 'data.augment=false', 'quantizer={type: vqema, K: 16}'])
    cfg = C.config_from_dict(C.merge_configs({'quantizer': {'type': 'identity', 'K': 8, 'dim': 4}, 'optim': {'beta1': 0.5}}, over))
    assert cfg.optim.lr == 2e-3 and cfg.optim.beta1 == 0.5 and cfg.data.augment is False
    assert cfg.quantizer == {'type': 'vqema', 'K': 16}
    cfg = C.config_from_dict(C.apply_overrides({}, ['quantizer.type=vqema', 'quantizer.K=32', 'quantizer.dim=8']))
    assert cfg.quantizer == {'type': 'vqema', 'K': 32, 'dim': 8}
    args = T.parse_args(['--epochs', '7', 'train.epochs=2'])
    assert C.config_from_dict(T.cli_overrides(args)).train.epochs == 2


def test_dotted_quantizer_type_merges(tmp_path):
    cfg = C.config_from_dict(C.apply_overrides({}, ['quantizer.K=32', 'quantizer.dim=8', 'quantizer.type=vqema']))
    assert cfg.quantizer == {'type': 'vqema', 'K': 32, 'dim': 8}
    (tmp_path / 'c.yaml').write_text('quantizer:\n  type: identity\n  K: 32\n  dim: 8\n')
    d = C.apply_overrides(C.read_yaml(tmp_path / 'c.yaml'), ['quantizer.type=vqema'])
    assert C.config_from_dict(d).quantizer == {'type': 'vqema', 'K': 32, 'dim': 8}


# ---------------------------------------------------------------- (b) SIGKILL mid-epoch, then resume
def test_sigkill_mid_epoch_then_resume_is_exact(tmp_path, reference):
    "A run SIGKILLed mid-epoch and resumed from latest.pt ends with the same metrics and weights as an uninterrupted run."
    extra = ('train.ckpt_every=2',)
    ref = reference(*extra)
    out = tmp_path / 'out'
    run_dir, ckpt = out / 'k', out / 'k' / 'checkpoints' / 'latest.pt'
    p = start(['--quiet', '--name', 'k', *tiny(out, *extra)], cwd=tmp_path)
    # stop the process as soon as a mid-epoch checkpoint exists (SIGSTOP first so the position can be checked), then kill it
    seen, position = 0.0, None
    while wait_for(lambda: ckpt.exists() and ckpt.stat().st_mtime_ns != seen, timeout=60, proc=p):
        p.send_signal(signal.SIGSTOP)
        seen = ckpt.stat().st_mtime_ns
        ck = R.load_checkpoint(ckpt)
        if 0 < ck['batch'] < TINY_STEPS_PER_EPOCH and ck['epoch'] < 2:
            position = (ck['epoch'], ck['batch']); break
        p.send_signal(signal.SIGCONT)
    rc, _, err = kill(p)
    assert position is not None, f'no mid-epoch checkpoint seen before the run ended (rc {rc}): {err}'
    assert rc == -signal.SIGKILL
    assert len(R.read_metrics(run_dir)) <= position[0] + 1
    r = train(['--quiet', '--resume', ckpt], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert_same_run(run_dir, ref)
    check_run_folder(run_dir, 3)
    log = (run_dir / 'resume.log').read_text().splitlines()
    assert len(log) == 1 and 'resumed at epoch' in log[0]


# ---------------------------------------------------------------- (c) bad input: exit 2, one line, nothing written
BAD = {   # id: (flags, overrides after the tiny ones, substrings the error line must hold); run as real subprocesses
    'unknown_key': ([], ['foo.bar=1'], ['foo']),
    'epochs_float': ([], ['train.epochs=2.5'], ['train.epochs']),
    'K_zero': ([], ['quantizer.K=0'], ['K']),
    'invalid_yaml': (['--config', '{cwd}/bad.yaml'], [], ['bad.yaml', 'YAML']),
    'missing_data': ([], ['data.synthetic=false', 'data.dir=/nonexistent', 'data.download=false'], ['/nonexistent']),
    'existing_name': (['--name', 'taken'], [], ['taken', 'already exists']),
}
MORE_BAD = {   # the same checks in-process through vqba_nb.train.main (each subprocess costs ~2 s of importing torch)
    'K_string': ([], ['quantizer.K=abc'], ['quantizer.K']),
    'lr_negative': ([], ['optim.lr=-1'], ['optim.lr']),
    'epochs_zero': ([], ['train.epochs=0'], ['train.epochs']),
    'missing_config': (['--config', '{cwd}/nope.yaml'], [], ['nope.yaml', 'not found']),
    'missing_checkpoint': (['--resume', '{cwd}/nope/checkpoints/latest.pt'], [], ['latest.pt', 'not found']),
    'missing_data_in_process': ([], ['data.synthetic=false', 'data.dir={cwd}/nodata', 'data.download=false'], ['nodata']),
    'existing_name_in_process': (['--name', 'taken'], [], ['taken', 'already exists']),
    'unknown_nested_key': ([], ['data.nope=1'], ['data.nope']),
    'unknown_quantizer_key': ([], ['quantizer.nope=1'], ['quantizer.nope']),
    'lr_string': ([], ['optim.lr=abc'], ['optim.lr']),
    'lr_nan': ([], ['optim.lr=nan'], ['optim.lr']),
    'beta_one': ([], ['optim.beta1=1'], ['optim.beta1']),
    'weight_decay_negative': ([], ['optim.weight_decay=-0.1'], ['optim.weight_decay']),
    'batch_size_zero': ([], ['data.batch_size=0'], ['data.batch_size']),
    'subset_negative': ([], ['data.subset=-5'], ['data.subset']),
    'bool_as_int': ([], ['model.n_hid=true'], ['model.n_hid']),
    'int_as_bool': ([], ['data.augment=1'], ['data.augment']),
    'list_value': ([], ['train.epochs=[1, 2]'], ['train.epochs']),
    'null_epochs': ([], ['train.epochs=null'], ['train.epochs']),
    'on_nonfinite': ([], ['train.on_nonfinite=ignore'], ['train.on_nonfinite']),
    'wandb_mode': ([], ['wandb.mode=sometimes'], ['wandb.mode']),
    'decay_out_of_range': ([], ['quantizer.decay=1.5'], ['decay']),
    'epochs_flag_zero': (['--epochs', '0'], [], ['train.epochs']),
    'epochs_flag_not_int': (['--epochs', 'abc'], [], ['--epochs']),
    'seed_flag_negative': (['--seed', '-1'], [], ['train.seed']),
    'unknown_flag': (['--bogus'], [], ['--bogus']),
    'flag_without_value': ([], ['--name'], ['--name']),   # last on the line: nothing left for its value
    'not_key_value': ([], ['oops'], ['oops']),
    'quantizer_type': ([], ['quantizer.type=nope'], ['quantizer.type']),
    'quantizer_not_mapping': ([], ['quantizer=5'], ['quantizer']),
    'device': ([], ['train.device=gpu'], ['train.device']),
    'cuda_missing': (['--device', 'cuda'], [], ['cuda']) if not torch.cuda.is_available() else (['--device', 'gpu'], [], ['gpu']),
    'bad_name': (['--name', '../escape'], [], ['../escape']),
    'section_not_mapping': ([], ['data=5'], ['data']),
    'config_not_mapping': (['--config', '{cwd}/list.yaml'], [], ['list.yaml']),
    'config_inherits_itself': (['--config', '{cwd}/loop.yaml'], [], ['loop.yaml']),
    'config_unknown_key': (['--config', '{cwd}/unknown.yaml'], [], ['optim.momentum']),
    'resume_with_config': (['--resume', '{cwd}/x.pt', '--config', '{cwd}/list.yaml'], [], ['--resume']),
}


def write_config_files(cwd: Path):
    (cwd / 'bad.yaml').write_text('data: [1, 2\n  batch_size: : 3\n')
    (cwd / 'list.yaml').write_text('- 1\n- 2\n')
    (cwd / 'loop.yaml').write_text('inherit: loop.yaml\n')
    (cwd / 'unknown.yaml').write_text('optim:\n  momentum: 0.9\n')


@pytest.fixture(scope='module')
def bad_runs(tmp_path_factory):
    "All BAD cases run once, concurrently: id -> (CompletedProcess, out_dir, files under out_dir before the run)."
    root = tmp_path_factory.mktemp('bad')
    args, meta = [], {}
    for case, (flags, over, _) in BAD.items():
        cwd = root / case; cwd.mkdir()
        write_config_files(cwd)
        out = cwd / 'out'
        if case == 'existing_name': (out / 'taken').mkdir(parents=True); (out / 'taken' / 'note.txt').write_text('mine')
        args.append(['--quiet', *[a.replace('{cwd}', str(cwd)) for a in flags], *tiny(out), *over])
        meta[case] = (out, files_under(out))
    results = train_many(args, cwd=root, workers=3)
    return {case: (r, *meta[case]) for case, r in zip(BAD, results)}


@pytest.mark.parametrize('case', list(BAD))
def test_bad_input(case, bad_runs):
    "Bad input exits 2 with one 'error: ...' line on stderr, no traceback, and writes nothing under out_dir."
    r, out, before = bad_runs[case]
    assert_user_error(r.returncode, r.stderr, *BAD[case][2])
    assert files_under(out) == before, f'{case} wrote under out_dir: {sorted(set(files_under(out)) - set(before))}'
    if case == 'existing_name': assert (out / 'taken' / 'note.txt').read_text() == 'mine'


@pytest.mark.parametrize('case', list(MORE_BAD))
def test_bad_input_in_process(case, tmp_path, capsys, monkeypatch):
    "More bad input through `main`: SystemExit(2), one 'error: ...' line on stderr, nothing written."
    monkeypatch.chdir(tmp_path)
    write_config_files(tmp_path)
    flags, over, needles = MORE_BAD[case]
    out = tmp_path / 'out'
    if case == 'existing_name_in_process': (out / 'taken').mkdir(parents=True)
    before = files_under(out)
    base = [a for a in tiny(out) if not ('--epochs' in flags and a.startswith('train.epochs='))]  # key=value beats a flag
    with pytest.raises(SystemExit) as e:
        T.main(['--quiet', *[a.replace('{cwd}', str(tmp_path)) for a in flags], *base, *[a.replace('{cwd}', str(tmp_path)) for a in over]])
    assert_user_error(e.value.code, capsys.readouterr().err, *[n.replace('{cwd}', str(tmp_path)) for n in needles])
    assert files_under(out) == before


def test_overrides_on_both_sides_of_a_flag(tmp_path, capsys):
    "`train.py a=1 --quiet b=2 ...` is accepted, as is usual for a command line."
    argv = ['data.synthetic=true', '--quiet', *tiny(tmp_path / 'out', epochs=1), '--name', 'mixed']
    with pytest.raises(SystemExit) as e: T.main(argv)
    assert e.value.code == 0, capsys.readouterr().err
    assert (tmp_path / 'out' / 'mixed' / 'checkpoints' / 'latest.pt').is_file()


# ---------------------------------------------------------------- (d) --help and the console script
def test_help_and_console_script(tmp_path):
    "`scripts/train.py --help` and `vqba-train --help` print the same usage; `vqba-train` trains, and rejects bad input (exit 2)."
    assert CONSOLE_SCRIPT.is_file(), f'{CONSOLE_SCRIPT} missing: is the package installed (pip install -e .)?'
    out = tmp_path / 'out'
    (tmp_path / 'taken').mkdir()
    jobs = [(['--help'], False), (['--help'], True),
            (['--quiet', '--name', 'console', *tiny(out, epochs=1), 'quantizer.K=abc=x'], True),
            (['--quiet', '--name', 'console', *tiny(out, epochs=1)], True)]
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(2) as ex:
        h_script, h_console, bad_console, run = ex.map(lambda j: train(j[0], cwd=tmp_path, console=j[1]), jobs)
    for h in (h_script, h_console):
        assert h.returncode == 0 and h.stderr == '', h.stderr
        for s in ('usage:', '--config', '--resume', '--epochs', '--name', '--seed', '--data-dir', '--device', '--quiet', 'key=value'):
            assert s in h.stdout, s
    assert h_script.stdout == h_console.stdout
    assert run.returncode == 0, run.stderr
    check_run_folder(out / 'console', 1)
    assert_user_error(bad_console.returncode, bad_console.stderr, 'quantizer.K')
