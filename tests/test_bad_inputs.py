"""Bad input to every command line but training's own flags and overrides, and to the Python API: one table, then
random input (hypothesis).

`BAD_INPUTS` holds one row per mistake: resuming from files that are not checkpoints (missing, a folder without one,
truncated, text, empty, a plain pickle, another program's, an old format, incomplete, damaged, a config or model that
does not fit), train.py flags given an empty value, config files that inherit what is not there or are not UTF-8, sweep
files (missing, broken YAML, not UTF-8, not a mapping, unknown keys, grids that are not lists, overrides that are not a
mapping, values a config refuses, names that collide) and sweep flags (--index out of range, --parallel 0, --epochs 0 or
not a number, --threads out of range, a --results that is a file or the runs' own folder), the analysis command (no
source, empty values, a missing or empty folder, records that are broken, a --bench that is not JSON or not a benchmark,
an --out with a file in the way), the benchmark's flags (numbers out of range, devices that are not one or not here,
unknown quantizers, broken configs, a --json it cannot write), and the Python API (build_quantizer, quantizer_keys,
config_from_dict, read_yaml, apply_overrides, load_cifar10, load_checkpoint, resume_path, find_runs, read_run,
expand_sweep, the parsers).
A command line must exit with status 2 and print exactly one line on stderr, starting 'error: ' and naming what is wrong,
without a traceback, and write nothing; a function must raise ValueError or vqba_nb.core.UserError (each row says which)
with a one-line message naming the key or file. A command line raises no warning either (run as a script, a warning
would be more lines on stderr). Every command runs in-process (`main(argv)`, SystemExit caught) in a temporary working
folder holding the broken files.

The training command's own bad flags, overrides and config files are tables `BAD` and `MORE_BAD` in tests/test_cli.py;
random overrides and flags of train.py, broken CIFAR-10 folders and broken checkpoints of a real run are in
tests/test_faults.py. The fuzz tests here give random argv to sweep, analyze and bench, and random YAML documents (and
files that are not UTF-8) to the config loader (through train.py --config, through read_yaml + config_from_dict, and
straight to config_from_dict) and to the sweep loader; none of them trains more than the tiny config, runs the
benchmark, reaches the network, or writes outside its temporary folder.
"""
from __future__ import annotations
import dataclasses, json, os, pickle, re, shutil, subprocess, types, typing, warnings
from pathlib import Path
from typing import Callable, NamedTuple

import pytest
import torch
import yaml
from hypothesis import HealthCheck, event, given, settings, strategies as st

from conftest import REPO, assert_user_error, files_under, tiny, tiny_dict
import vqba_nb.analysis as A
import vqba_nb.bench as BE
import vqba_nb.config as C
from vqba_nb.registry import QUANTIZERS
import vqba_nb.data as D
import vqba_nb.report as RP
import vqba_nb.runs as R
import vqba_nb.sweep as SW
import vqba_nb.train as T
from vqba_nb.core import UserError
from vqba_nb.registry import build_quantizer, quantizer_keys

ENTRY = {'train': T.main, 'sweep': SW.sweep_main, 'analyze': RP.main, 'bench': BE.main}


def run_cli(entry: str, argv, capsys) -> tuple[int, str, str]:
    "Entry point `entry` (train, sweep, analyze, bench) called in-process with `argv`: (exit status, stdout, stderr)."
    capsys.readouterr()
    try:
        ENTRY[entry]([str(a) for a in argv]); code = 0   # sweep, analyze and bench return on success; train exits
    except SystemExit as e:
        code = 0 if e.code is None else e.code
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(d: Path) -> dict:
    "Every file under `d` with its bytes, every folder as None: what 'nothing written' compares."
    return {str(p.relative_to(d)): (p.read_bytes() if p.is_file() else None) for p in sorted(d.rglob('*'))}


# ================================================================ the files the table's rows point at
class NotAModel:
    "A class of this test module: a checkpoint that pickles it is arbitrary code to a weights-only loader."


def fake_checkpoint(config, **kw) -> dict:
    "A dict with the vqba_nb checkpoint format tag and every key (the mappings empty, the rest None, unless given)."
    return {'format': R.CKPT_FORMAT, **{k: None for k in R.CKPT_KEYS}, 'model': {}, 'optimizer': {}, 'acc': {}, 'config': config, **kw}


def tiny_config(out_dir: str = 'out') -> dict:
    "The tiny config, complete (as a checkpoint holds it)."
    return dataclasses.asdict(C.config_from_dict(tiny_dict(out_dir, 'r')))


def record(d: Path, cfg, metrics: bool = True, counts: str | None = None, rec: str | None = None) -> Path:
    "A run record folder: config.yaml (a dict is dumped, a string written as is), one epoch of metrics, optional files."
    d.mkdir(parents=True, exist_ok=True)
    (d / 'config.yaml').write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
    if metrics:
        (d / 'metrics.jsonl').write_text(json.dumps({'epoch': 1, 'step': 8, 'test_psnr': 20.0, 'test_perplexity': 5.0, 'used_codes': 6,
                                                     'train_loss': 0.1, 'epoch_time_s': 1.0}) + '\n')
    if counts is not None: (d / 'code_counts.json').write_text(counts)
    if rec is not None: (d / 'record.json').write_text(rec)
    return d


TINY_SWEEP_OVERRIDES = {k: yaml.safe_load(v) for k, v in (o.split('=', 1) for o in tiny('exp', epochs=1))}
GOOD_SWEEP = {'name': 'badinputs', 'epochs': 1, 'grid': {'train.seed': [0]}, 'overrides': TINY_SWEEP_OVERRIDES}
SWEEP_FILES = {   # file in sw/ -> its content: GOOD_SWEEP with changes (None removes a key), or text
    'good': {},
    'broken': 'grid: [1\n', 'list': '- 1\n- 2\n', 'unknown_key': {'bogus': 1}, 'grid_scalar': {'grid': {'train.seed': 3}},
    'grid_empty_list': {'grid': {'train.seed': []}}, 'grid_not_mapping': {'grid': 5}, 'grids_not_list': {'grid': None, 'grids': 5},
    'grids_empty': {'grid': None, 'grids': []}, 'grid_and_grids': {'grids': [{'grid': {'train.seed': [0]}}]},
    'grids_unknown_key': {'grid': None, 'grids': [{'grid': {'train.seed': [0]}, 'nope': 1}]},
    'grids_entry_not_mapping': {'grid': None, 'grids': [5]}, 'grid_bad_lr': {'grid': {'optim.lr': [-1]}},
    'grid_unknown_config_key': {'grid': {'foo.bar': [1]}}, 'grid_missing_config': {'grid': {'config': ['nope.yaml']}},
    'same_names': {'grid': {'train.seed': [0, 0]}}, 'epochs_text': {'epochs': 'abc'}, 'epochs_negative': {'epochs': -1},
    'epochs_float': {'epochs': 1.5}, 'bad_name': {'name': '../escape'}, 'missing_top_config': {'config': 'nope2.yaml'},
    'grid_quantizer_scalar': {'grid': {'quantizer': [5]}}, 'grid_value_mapping': {'grid': {'quantizer.K': [{'a': 1}]}},
    'override_unknown_key': {'overrides': {**TINY_SWEEP_OVERRIDES, 'optim.momentum': 0.9}},
    'not_utf8': b'\xff\xfegrid: {train.seed: [0]}\n', 'empty': '', 'grid_config_not_path': {'grid': {'config': [5]}},
    'top_config_not_path': {'config': 5}, 'overrides_list': {'overrides': [1, 2]}, 'overrides_text': {'overrides': 'data.subset=64'},
    'grids_overrides_list': {'grid': None, 'grids': [{'grid': {'train.seed': [0]}, 'overrides': [1, 2]}]},
    'grids_overrides_text': {'grid': None, 'grids': [{'grid': {'train.seed': [0]}, 'overrides': 'data.subset=64'}]},
    'grid_key_int': {'grid': {5: [1]}}, 'unknown_keys_mixed': {0: 1, 'bogus': 2},
    'grids_unknown_keys_mixed': {'grid': None, 'grids': [{'grid': {'train.seed': [0]}, 0: 1, 'bogus': 2}]},
    'epochs_zero': {'epochs': 0}, 'grids_epochs_zero': {'grid': None, 'grids': [{'grid': {'train.seed': [0]}, 'epochs': 0}]},
    'default_out_dir': {'overrides': {k: v for k, v in TINY_SWEEP_OVERRIDES.items() if k != 'out_dir'}},   # runs in experiments/
}


def write_sweep(path: Path, change):
    if isinstance(change, str): path.write_text(change); return
    if isinstance(change, bytes): path.write_bytes(change); return
    sw = {**GOOD_SWEEP, **change}
    path.write_text(yaml.safe_dump({k: v for k, v in sw.items() if v is not None}, sort_keys=False))   # keys of mixed types: unsorted


@pytest.fixture(scope='module')
def world(tmp_path_factory) -> Path:
    "A folder of broken (and a few good) inputs, the working folder of every case (which must leave it as it is)."
    w = tmp_path_factory.mktemp('world')
    (w / 'afile').write_text('in the way\n')
    (w / 'emptydir').mkdir()
    # checkpoints
    ck = w / 'ck'; ck.mkdir()
    good = fake_checkpoint(tiny_config())
    torch.save(good, ck / 'good.pt')
    full = (ck / 'good.pt').read_bytes()
    (ck / 'truncated.pt').write_bytes(full[:len(full) // 2])
    (ck / 'text.pt').write_text('this is not a checkpoint\n')
    (ck / 'empty.pt').write_bytes(b'')
    torch.save({'a': 1}, ck / 'plain_dict.pt')
    torch.save(torch.zeros(3), ck / 'tensor.pt')
    torch.save([1, 2], ck / 'list.pt')
    torch.save({'format': 'vqba_nb-checkpoint-v0', **{k: None for k in R.CKPT_KEYS}}, ck / 'old_format.pt')
    torch.save({'format': R.CKPT_FORMAT, 'config': {}}, ck / 'incomplete.pt')
    torch.save({'format': R.CKPT_FORMAT, 'x': NotAModel()}, ck / 'code.pt')
    torch.save(fake_checkpoint({'quantizer': {'type': 'nope'}}), ck / 'bad_config.pt')
    torch.save(fake_checkpoint(5), ck / 'config_int.pt')
    torch.save(fake_checkpoint(tiny_config(), model=None), ck / 'model_none.pt')
    (ck / 'pickled.pt').write_bytes(pickle.dumps(good))   # plain pickle, not torch.save: torch warns before it refuses it
    (ck / 'folder.pt').mkdir()
    # a run folder whose latest.pt has the tiny config but no weights that fit it
    (w / 'run' / 'checkpoints').mkdir(parents=True)
    torch.save(fake_checkpoint(tiny_config(), model={}, optimizer={}, epoch=0, batch=0, step=0, skipped=0, best_psnr=0.0, acc={},
                               torch_rng=torch.get_rng_state()), w / 'run' / 'checkpoints' / 'latest.pt')
    (w / 'run_no_latest' / 'checkpoints').mkdir(parents=True)
    torch.save(good, w / 'run_no_latest' / 'checkpoints' / 'best.pt')
    # config files
    (w / 'c.yaml').write_text('train: {epochs: 1}\n')
    (w / 'child.yaml').write_text('inherit: parent.yaml\ntrain: {epochs: 1}\n')
    (w / 'loop_a.yaml').write_text('inherit: loop_b.yaml\n')
    (w / 'loop_b.yaml').write_text('inherit: loop_a.yaml\n')
    (w / 'broken.yaml').write_text('data: [1, 2\n  batch_size: : 3\n')
    (w / 'list.yaml').write_text('- 1\n- 2\n')
    (w / 'unknown.yaml').write_text('foo: 1\n')
    (w / 'k0.yaml').write_text('quantizer: {type: vqema, K: 0}\n')
    (w / 'bin.yaml').write_bytes(b'\xff\xfetrain: {epochs: 1}\n')   # UTF-16-like bytes: not UTF-8 from byte 0
    # sweep files
    (w / 'sw').mkdir()
    for name, change in SWEEP_FILES.items(): write_sweep(w / 'sw' / f'{name}.yaml', change)
    # run records for the analysis
    q = {'name': 'rec/vqema-K8-s0', 'quantizer': {'type': 'vqema', 'K': 8}, 'train': {'seed': 0, 'epochs': 1}}
    record(w / 'rec' / 'ok' / 'vqema-K8-s0', q, counts=json.dumps([1] * 8))
    record(w / 'rec' / 'no_metrics' / 'r', q, metrics=False)
    record(w / 'rec' / 'bad_yaml' / 'r', 'quantizer: {type: vqema, K: [\n')
    record(w / 'rec' / 'list_config' / 'r', '- a list\n')
    record(w / 'rec' / 'K_text' / 'r', {'quantizer': {'type': 'vqema', 'K': 'big'}})
    record(w / 'rec' / 'no_quantizer' / 'r', {'train': {'epochs': 1}})
    record(w / 'rec' / 'bad_counts' / 'r', q, counts='not json')
    record(w / 'rec' / 'dict_counts' / 'r', q, counts='{"a": 1}')
    record(w / 'rec' / 'bad_record' / 'r', q, rec='{oops')
    (w / 'notjson.json').write_text('{x')
    (w / 'binary.json').write_bytes(b'\xff\xfe\x00')
    (w / 'bench_ok.json').write_text('{}')
    (w / 'bench_list.json').write_text('[1, 2]')
    (w / 'bench_text.json').write_text('"hi"')
    (w / 'bench_runs_int.json').write_text('{"runs": 5}')
    # a CIFAR-10 folder with no batch files
    (w / 'cifar_empty' / D.CIFAR_DIR).mkdir(parents=True)
    return w


@pytest.fixture
def in_world(world, monkeypatch) -> Path:
    "The world as the working folder."
    monkeypatch.chdir(world)
    return world


@pytest.fixture(scope='module')
def repo_results_untouched():
    """Nothing here writes into the repository's results/ (every command runs in a temporary folder, and results/ is a
    sweep's default relative to it): `git status --porcelain results` is the same after the module's tests as before.
    Records of the repository's own sweeps (results/<sweep>/<run>, a sweeps/*.yaml's name), which runs in other
    processes may finish meanwhile, are left out."""
    ours = {(yaml.safe_load(f.read_text()) or {}).get('name') for f in (REPO / 'sweeps').glob('*.yaml')}
    def status() -> set[str] | None:
        r = subprocess.run(['git', '-C', str(REPO), 'status', '--porcelain', '--untracked-files=all', 'results'], capture_output=True, text=True)
        return {l for l in r.stdout.splitlines() if l[3:].split('/')[1] not in ours} if r.returncode == 0 else None   # results/<sweep>/...
    before, names = status(), set(os.listdir(REPO / 'results')) - ours
    yield
    after = status()
    assert after == before, f'results/ of the repository changed: {sorted((after or set()) ^ (before or set()))}'
    assert set(os.listdir(REPO / 'results')) - ours == names


# ================================================================ the table
class Cli(NamedTuple):
    entry: str
    argv: tuple


class Api(NamedTuple):
    exc: type
    fn: Callable[[], object]


def cli(entry: str, *argv) -> Cli: return Cli(entry, argv)
def api(exc: type, fn: Callable[[], object]) -> Api: return Api(exc, fn)
train = lambda *a: cli('train', '--quiet', *a)
resume = lambda *a: cli('train', '--quiet', '--resume', *a)
sweep = lambda *a: cli('sweep', *a)
analyze = lambda *a: cli('analyze', *a)
bench = lambda *a: cli('bench', '--data-dir', 'nodata', *a)   # no CIFAR-10 there: synthetic images, were it to run
BASE = str(REPO / 'configs' / 'base.yaml')
TINY_BENCH = ('--config', BASE, '--images', '64', '--steps', '1', '--repeats', '1', '--warmup', '1', '--eval-images', '64',
              '--no-reference', '--no-compile', '--quantizers', 'vqema', '--threads', '1')
NO_CUDA = not torch.cuda.is_available()
NO_MPS = not torch.backends.mps.is_available()
QTYPES = ', '.join(QUANTIZERS)

BAD_INPUTS: dict[str, tuple[Cli | Api, list[str]]] = {   # case -> (command line or function, what its message must contain)
    # ---- resume: train.py --resume PATH
    'resume_missing_file': (resume('ck/nope.pt'), ['ck/nope.pt', 'not found']),
    'resume_missing_folder': (resume('nope/'), ['nope', 'not found']),
    'resume_folder_without_checkpoint': (resume('emptydir'), ['emptydir', 'folder without a checkpoints/latest.pt']),
    'resume_run_without_latest': (resume('run_no_latest'), ['run_no_latest', 'without a checkpoints/latest.pt', 'best.pt']),
    'resume_truncated': (resume('ck/truncated.pt'), ['ck/truncated.pt', 'unreadable', 'truncated']),
    'resume_text_file': (resume('ck/text.pt'), ['ck/text.pt', 'unreadable']),
    'resume_empty_file': (resume('ck/empty.pt'), ['ck/empty.pt', 'unreadable']),
    'resume_a_yaml_file': (resume('c.yaml'), ['c.yaml', 'unreadable']),
    'resume_plain_dict': (resume('ck/plain_dict.pt'), ['ck/plain_dict.pt', 'not a vqba_nb checkpoint']),
    'resume_tensor': (resume('ck/tensor.pt'), ['ck/tensor.pt', 'not a vqba_nb checkpoint']),
    'resume_list': (resume('ck/list.pt'), ['ck/list.pt', 'not a vqba_nb checkpoint']),
    'resume_old_format': (resume('ck/old_format.pt'), ['ck/old_format.pt', 'not a vqba_nb checkpoint']),
    'resume_incomplete': (resume('ck/incomplete.pt'), ['ck/incomplete.pt', 'incomplete', 'model']),
    'resume_pickled_code': (resume('ck/code.pt'), ['ck/code.pt', 'unreadable']),
    'resume_plain_pickle': (resume('ck/pickled.pt'), ['ck/pickled.pt', 'unreadable (UnpicklingError)', 'truncated or not a checkpoint']),
    'resume_config_not_mapping': (resume('ck/config_int.pt'), ['ck/config_int.pt', 'damaged (config is int, not a mapping)', 'best.pt']),
    'resume_model_none': (resume('ck/model_none.pt'), ['ck/model_none.pt', 'damaged (model is NoneType, not a mapping)']),
    'resume_folder_named_pt': (resume('ck/folder.pt'), ['ck/folder.pt', 'without a checkpoints/latest.pt']),
    'resume_config_invalid': (resume('ck/bad_config.pt'), ['quantizer.type', "'nope'", 'vqema']),
    'resume_unsafe_change': (resume('ck/good.pt', 'model.n_hid=32'), ['model.n_hid', 'Start a new run']),
    'resume_unknown_override': (resume('ck/good.pt', 'bogus.key=1'), ['bogus']),
    'resume_epochs_zero': (resume('ck/good.pt', '--epochs', '0'), ['train.epochs']),
    'resume_epochs_not_int': (resume('ck/good.pt', '--epochs', 'x'), ['--epochs', "'x'"]),
    'resume_with_config': (resume('ck/good.pt', '--config', 'c.yaml'), ['--resume', 'drop --config']),
    'resume_device': (resume('ck/good.pt', '--device', 'cuda'), ['cuda', 'not available']) if NO_CUDA else
                     (resume('ck/good.pt', '--device', 'gpu'), ['train.device']),
    'resume_weights_do_not_fit': (resume('run'), ['run/checkpoints/latest.pt', 'does not match']),
    'resume_without_value': (train('--resume'), ['--resume', 'expected one argument']),
    'resume_empty_value': (train('--resume', '', *tiny('out')), ['--resume needs a value (it was given an empty one)']),
    # ---- train.py flags given an empty value (a fresh run would start, the flag ignored)
    'train_config_empty_value': (train('--config', '', *tiny('out')), ['--config needs a value (it was given an empty one)']),
    'train_name_empty_value': (train('--name', '', *tiny('out')), ['--name needs a value']),
    'train_data_dir_empty_value': (train('--data-dir', '', *tiny('out')), ['--data-dir needs a value']),
    'train_device_empty_value': (train('--device', '', *tiny('out')), ['--device needs a value']),
    # ---- config files that inherit (the rest of train.py's config files: tests/test_cli.py)
    'config_parent_missing': (train('--config', 'child.yaml', *tiny('out')), ['parent.yaml', 'not found']),
    'config_inherit_loop': (train('--config', 'loop_a.yaml', *tiny('out')), ['inherits itself']),
    'config_not_utf8': (train('--config', 'bin.yaml', *tiny('out')), ['config file bin.yaml is not UTF-8 text (byte 0)', 'YAML file']),
    'config_quantizer_type_list': (train(*tiny('out', 'quantizer.type=[vqema]')), ["config key 'quantizer.type' must be one of", QTYPES, "got ['vqema']"]),
    # ---- sweep
    'sweep_no_sweep_flag': (sweep('--list'), ['--sweep', 'required']),
    'sweep_missing_file': (sweep('--sweep', 'sw/nope.yaml'), ['sw/nope.yaml', 'not found']),
    'sweep_file_is_folder': (sweep('--sweep', 'emptydir'), ['emptydir', 'not found']),
    'sweep_broken_yaml': (sweep('--sweep', 'sw/broken.yaml', '--list'), ['sw/broken.yaml', 'not valid YAML', 'line 2']),
    'sweep_not_mapping': (sweep('--sweep', 'sw/list.yaml', '--list'), ['sw/list.yaml', 'mapping']),
    'sweep_unknown_key': (sweep('--sweep', 'sw/unknown_key.yaml', '--list'), ['sw/unknown_key.yaml', 'bogus', 'grids']),
    'sweep_grid_scalar': (sweep('--sweep', 'sw/grid_scalar.yaml', '--list'), ['sw/grid_scalar.yaml', 'non-empty lists']),
    'sweep_grid_empty_list': (sweep('--sweep', 'sw/grid_empty_list.yaml', '--list'), ['grid_empty_list.yaml', 'non-empty lists']),
    'sweep_grid_not_mapping': (sweep('--sweep', 'sw/grid_not_mapping.yaml', '--list'), ['grid_not_mapping.yaml', 'grid must map config keys']),
    'sweep_grids_not_list': (sweep('--sweep', 'sw/grids_not_list.yaml', '--list'), ['grids_not_list.yaml', 'grids must be a non-empty list']),
    'sweep_grids_empty': (sweep('--sweep', 'sw/grids_empty.yaml', '--list'), ['grids_empty.yaml', 'grids must be a non-empty list']),
    'sweep_grid_and_grids': (sweep('--sweep', 'sw/grid_and_grids.yaml', '--list'), ['grid_and_grids.yaml', 'not both']),
    'sweep_grids_unknown_key': (sweep('--sweep', 'sw/grids_unknown_key.yaml', '--list'), ['grids_unknown_key.yaml', 'nope', 'prefix']),
    'sweep_grids_entry_not_mapping': (sweep('--sweep', 'sw/grids_entry_not_mapping.yaml', '--list'), ['grids_entry_not_mapping.yaml', 'not a mapping']),
    'sweep_grid_bad_value': (sweep('--sweep', 'sw/grid_bad_lr.yaml', '--list'), ['optim.lr', '-1']),
    'sweep_grid_unknown_config_key': (sweep('--sweep', 'sw/grid_unknown_config_key.yaml', '--list'), ["'foo'"]),
    'sweep_grid_missing_config': (sweep('--sweep', 'sw/grid_missing_config.yaml', '--list'), ['nope.yaml', 'not found']),
    'sweep_missing_top_config': (sweep('--sweep', 'sw/missing_top_config.yaml', '--list'), ['nope2.yaml', 'not found']),
    'sweep_same_names': (sweep('--sweep', 'sw/same_names.yaml', '--list'), ['same_names.yaml', 'same name']),
    'sweep_epochs_text': (sweep('--sweep', 'sw/epochs_text.yaml', '--list'), ['epochs_text.yaml', 'epochs must be a whole number', "got 'abc'"]),
    'sweep_epochs_negative': (sweep('--sweep', 'sw/epochs_negative.yaml', '--list'), ['epochs_negative.yaml', 'epochs must be a whole number', 'got -1']),
    'sweep_epochs_float': (sweep('--sweep', 'sw/epochs_float.yaml', '--list'), ['epochs_float.yaml', 'epochs must be a whole number', 'got 1.5']),
    'sweep_bad_name': (sweep('--sweep', 'sw/bad_name.yaml', '--list'), ['../escape']),
    'sweep_grid_quantizer_scalar': (sweep('--sweep', 'sw/grid_quantizer_scalar.yaml', '--list'), ["'quantizer'", 'mapping']),
    'sweep_grid_value_mapping': (sweep('--sweep', 'sw/grid_value_mapping.yaml', '--list'), ['quantizer.K', 'int']),
    'sweep_override_unknown_key': (sweep('--sweep', 'sw/override_unknown_key.yaml', '--list'), ['optim.momentum']),
    'sweep_not_utf8': (sweep('--sweep', 'sw/not_utf8.yaml', '--list'), ['sweep file sw/not_utf8.yaml is not UTF-8 text (byte 0)']),
    'sweep_empty_file': (sweep('--sweep', 'sw/empty.yaml', '--list'), ['sw/empty.yaml', 'grid must map config keys (e.g. quantizer.K) to non-empty lists']),
    'sweep_grid_key_int': (sweep('--sweep', 'sw/grid_key_int.yaml', '--list'), ['sw/grid_key_int.yaml', 'grid must map config keys']),
    'sweep_grid_config_not_path': (sweep('--sweep', 'sw/grid_config_not_path.yaml', '--list'),
                                   ['sw/grid_config_not_path.yaml', 'grid values of config must be config file paths']),
    'sweep_top_config_not_path': (sweep('--sweep', 'sw/top_config_not_path.yaml', '--list'), ['sw/top_config_not_path.yaml', 'config must be a config file path']),
    'sweep_overrides_list': (sweep('--sweep', 'sw/overrides_list.yaml', '--list'), ['sw/overrides_list.yaml', 'overrides must map config keys to values']),
    'sweep_overrides_text': (sweep('--sweep', 'sw/overrides_text.yaml', '--list'), ['sw/overrides_text.yaml', 'overrides must map config keys to values']),
    'sweep_grids_overrides_list': (sweep('--sweep', 'sw/grids_overrides_list.yaml', '--list'), ['grids_overrides_list.yaml', 'overrides must map config keys']),
    'sweep_grids_overrides_text': (sweep('--sweep', 'sw/grids_overrides_text.yaml', '--list'), ['grids_overrides_text.yaml', 'overrides must map config keys']),
    'sweep_unknown_keys_mixed': (sweep('--sweep', 'sw/unknown_keys_mixed.yaml', '--list'), ['unknown_keys_mixed.yaml', 'unknown key(s) 0, bogus', 'use name']),
    'sweep_grids_unknown_keys_mixed': (sweep('--sweep', 'sw/grids_unknown_keys_mixed.yaml', '--list'),
                                       ['grids_unknown_keys_mixed.yaml', 'a grids entry has unknown key(s) 0, bogus', 'prefix']),
    'sweep_epochs_zero': (sweep('--sweep', 'sw/epochs_zero.yaml', '--list'), ['sw/epochs_zero.yaml', 'epochs must be a whole number >= 1, got 0']),
    'sweep_grids_epochs_zero': (sweep('--sweep', 'sw/grids_epochs_zero.yaml', '--list'), ['grids_epochs_zero.yaml', 'epochs must be a whole number >= 1, got 0']),
    'sweep_index_out_of_range': (sweep('--sweep', 'sw/good.yaml', '--index', '5'), ['--index 5', 'out of range', '1 runs']),
    'sweep_index_negative': (sweep('--sweep', 'sw/good.yaml', '--index', '-1'), ['--index -1', 'out of range']),
    'sweep_index_not_int': (sweep('--sweep', 'sw/good.yaml', '--index', 'one'), ['--index', "'one'"]),
    'sweep_parallel_zero': (sweep('--sweep', 'sw/good.yaml', '--parallel', '0'), ['--parallel', 'at least 1']),
    'sweep_parallel_not_int': (sweep('--sweep', 'sw/good.yaml', '--parallel', '2.5'), ['--parallel', "'2.5'"]),
    'sweep_threads_zero': (sweep('--sweep', 'sw/good.yaml', '--threads', '0'), ['--threads must be in 1..256', 'got 0']),
    'sweep_threads_huge': (sweep('--sweep', 'sw/good.yaml', '--index', '0', '--threads', '100000'), ['--threads must be in 1..256, got 100000']),
    'sweep_results_is_a_file': (sweep('--sweep', 'sw/good.yaml', '--index', '0', '--results', 'afile'),   # before training: nothing written
                                ['--results afile is a file, not a folder of records']),
    'sweep_results_is_out_dir': (sweep('--sweep', 'sw/default_out_dir.yaml', '--results', 'experiments', '--list'),
                                 ["--results experiments is the runs' own folder (out_dir experiments)", 'would replace its run folder']),
    'sweep_epochs_flag_zero': (sweep('--sweep', 'sw/good.yaml', '--epochs', '0', '--list'), ['--epochs must be at least 1, got 0']),
    'sweep_epochs_not_int': (sweep('--sweep', 'sw/good.yaml', '--epochs', 'x'), ['--epochs', "'x'"]),
    'sweep_epochs_flag_negative': (sweep('--sweep', 'sw/good.yaml', '--epochs', '-1', '--list'), ['--epochs must be at least 1, got -1']),
    'sweep_epochs_flag_huge': (sweep('--sweep', 'sw/good.yaml', '--epochs', '1000000', '--list'), ['train.epochs', '1000000']),
    'sweep_unknown_flag': (sweep('--sweep', 'sw/good.yaml', '--bogus'), ['unrecognized arguments', '--bogus']),
    'sweep_extra_word': (sweep('--sweep', 'sw/good.yaml', '--list', 'extra'), ['unrecognized arguments', 'extra']),
    # ---- analyze
    'analyze_no_source': (analyze(), ['--experiment', '--results', 'required']),
    'analyze_missing_experiment': (analyze('--experiment', 'nope'), ['experiments/nope', 'not found']),
    'analyze_missing_root': (analyze('--experiment', 'x', '--root', 'nowhere'), ['nowhere/x', 'not found']),
    'analyze_missing_results': (analyze('--results', 'nope'), ['nope', 'not found']),
    'analyze_results_is_a_file': (analyze('--results', 'afile'), ['afile', 'not found']),
    'analyze_results_without_records': (analyze('--results', 'emptydir'), ['emptydir', 'no runs or records']),
    'analyze_no_finished_epoch': (analyze('--results', 'rec/no_metrics'), ['rec/no_metrics', 'finished an epoch']),
    'analyze_config_bad_yaml': (analyze('--results', 'rec/bad_yaml'), ['rec/bad_yaml/r/config.yaml', 'not valid YAML']),
    'analyze_config_list': (analyze('--results', 'rec/list_config'), ['rec/list_config/r/config.yaml', 'not a run config']),
    'analyze_config_K_text': (analyze('--results', 'rec/K_text'), ['rec/K_text/r/config.yaml', 'integer K']),
    'analyze_config_no_quantizer': (analyze('--results', 'rec/no_quantizer'), ['rec/no_quantizer/r/config.yaml', 'quantizer section']),
    'analyze_counts_not_json': (analyze('--results', 'rec/bad_counts'), ['rec/bad_counts/r/code_counts.json', 'JSON list of counts']),
    'analyze_counts_a_mapping': (analyze('--results', 'rec/dict_counts'), ['rec/dict_counts/r/code_counts.json', 'JSON list of counts']),
    'analyze_record_not_json': (analyze('--results', 'rec/bad_record'), ['rec/bad_record/r/record.json', 'not valid JSON']),
    'analyze_bench_not_json': (analyze('--results', 'rec/ok', '--bench', 'notjson.json'), ['notjson.json', 'not readable JSON']),
    'analyze_bench_missing': (analyze('--results', 'rec/ok', '--bench', 'missing.json'), ['missing.json', 'not readable JSON']),
    'analyze_bench_binary': (analyze('--results', 'rec/ok', '--bench', 'binary.json'), ['binary.json', 'not readable JSON']),
    'analyze_bench_folder': (analyze('--results', 'rec/ok', '--bench', 'emptydir'), ['emptydir', 'not readable JSON']),
    'analyze_out_is_a_file': (analyze('--results', 'rec/ok', '--out', 'afile'), ['cannot write the analysis to afile', '--out']),
    'analyze_out_under_a_file': (analyze('--results', 'rec/ok', '--out', 'afile/analysis'), ['cannot write the analysis to afile/analysis']),
    'analyze_both_sources': (analyze('--results', 'rec/ok', '--experiment', 'x'), ['--experiment', 'not allowed with', '--results']),
    'analyze_unknown_flag': (analyze('--results', 'rec/ok', '--bogus'), ['unrecognized arguments', '--bogus']),
    'analyze_flag_without_value': (analyze('--results'), ['--results', 'expected at least one argument']),
    'analyze_results_empty_value': (analyze('--results', ''), ['--results needs a value (it was given an empty one)']),
    'analyze_experiment_empty_value': (analyze('--experiment', ''), ['--experiment needs a value (it was given an empty one)']),
    **{f'analyze_bench_{k}': (analyze('--results', 'rec/ok', '--bench', f'bench_{k}.json', '--out', 'analysis_out'),   # nothing in --out
                              [f'benchmark file bench_{k}.json is not a benchmark', 'a mapping with runs']) for k in ('list', 'text', 'runs_int')},
    # ---- bench (never gets to measure: every row fails before; the --json ones would run the tiny benchmark)
    'bench_unknown_flag': (bench('--bogus'), ['unrecognized arguments', '--bogus']),
    'bench_steps_zero': (bench('--steps', '0'), ['--steps must be at least 1', 'got 0']),
    'bench_images_negative': (bench('--images', '-5'), ['--images must be at least 1', '-5']),
    'bench_repeats_not_int': (bench('--repeats', 'abc'), ['--repeats', "'abc'"]),
    'bench_warmup_zero': (bench('--warmup', '0'), ['--warmup must be at least 1']),
    'bench_eval_images_zero': (bench('--eval-images', '0'), ['--eval-images must be at least 1']),
    'bench_threads_zero': (bench('--threads', '0'), ['--threads must be at least 1']),
    'bench_threads_float': (bench('--threads', '1.5'), ['--threads', "'1.5'"]),
    'bench_threads_huge': (bench('--threads', '100000'), ['--threads must be in 1..256, got 100000']),
    'bench_device_gpu': (bench('--device', 'gpu'), ["--device must be cpu, cuda, cuda:N or mps; got 'gpu'"]),
    'bench_device_cuda_x': (bench('--device', 'cuda:x'), ["--device must be cpu, cuda, cuda:N or mps; got 'cuda:x'"]),
    'bench_device_empty': (bench('--device', ''), ["--device must be cpu, cuda, cuda:N or mps; got ''"]),
    'bench_device_cuda': (bench('--device', 'cuda'), ['--device cuda: CUDA is not available here; use --device cpu']) if NO_CUDA else
                         (bench('--device', 'cuda'), ['configs/base.yaml', 'not found']),   # the device is fine: the default config stops it
    'bench_device_mps': (bench('--device', 'mps'), ['--device mps: MPS is not available here; use --device cpu']) if NO_MPS else
                        (bench('--device', 'mps'), ['configs/base.yaml', 'not found']),
    'bench_unknown_quantizer': (bench('--quantizers', 'vqema,nope'), ["unknown quantizer 'nope'", 'ba_generic']),
    'bench_empty_quantizer_list': (bench('--quantizers', ''), ["unknown quantizer ''"]),
    'bench_default_config_elsewhere': (bench(), ['configs/base.yaml', 'not found']),   # run outside the repository
    'bench_config_missing': (bench('--config', 'missing.yaml'), ['missing.yaml', 'not found']),
    'bench_config_broken': (bench('--config', 'broken.yaml'), ['broken.yaml', 'not valid YAML']),
    'bench_config_not_mapping': (bench('--config', 'list.yaml'), ['list.yaml', 'mapping']),
    'bench_config_unknown_key': (bench('--config', 'unknown.yaml', '--images', '64', '--eval-images', '64'), ["unknown config key 'foo'"]),
    'bench_config_K_zero': (bench('--config', 'k0.yaml', '--images', '64', '--eval-images', '64'), ['quantizer.K', 'got 0']),
    'bench_json_unwritable': (bench(*TINY_BENCH, '--json', 'afile/out.json'), ['cannot write --json afile/out.json', 'its folder is missing or not writable']),
    'bench_json_folder_missing': (bench(*TINY_BENCH, '--json', 'nodir/x.json'), ['cannot write --json nodir/x.json: its folder is missing or not writable']),
    'bench_config_not_utf8': (bench('--config', 'bin.yaml'), ['config file bin.yaml is not UTF-8 text (byte 0)']),
    # ---- Python API: build_quantizer and quantizer_keys raise ValueError
    'api_quantizer_without_type': (api(ValueError, lambda: build_quantizer({'K': 64})), ["'type'", 'vqema', "{'K': 64}"]),
    'api_quantizer_not_a_dict': (api(ValueError, lambda: build_quantizer('vqema')), ["'type'", QTYPES]),
    'api_quantizer_unknown_type': (api(ValueError, lambda: build_quantizer({'type': 'nope'})), ['quantizer.type', QTYPES, "'nope'"]),
    'api_quantizer_type_none': (api(ValueError, lambda: build_quantizer({'type': None})), ['quantizer.type', QTYPES]),
    'api_quantizer_type_list': (api(ValueError, lambda: build_quantizer({'type': ['vqema']})),
                                ["config key 'quantizer.type' must be one of", QTYPES, "got ['vqema']"]),
    'api_quantizer_K_text': (api(ValueError, lambda: build_quantizer({'type': 'vqema', 'K': '64'})), ['quantizer.K', 'int', "'64'"]),
    'api_quantizer_K_bool': (api(ValueError, lambda: build_quantizer({'type': 'vqema', 'K': True})), ['quantizer.K', 'bool']),
    'api_quantizer_K_float': (api(ValueError, lambda: build_quantizer({'type': 'vqema', 'K': 3.0})), ['quantizer.K', 'float']),
    'api_quantizer_unknown_key': (api(ValueError, lambda: build_quantizer({'type': 'vqema', 'foo': 1})), ['quantizer.foo', 'vqema', 'decay']),
    'api_quantizer_K_negative': (api(ValueError, lambda: build_quantizer({'type': 'vqema', 'K': -1})), ['K must be at least 1', '-1']),
    'api_quantizer_dim_zero': (api(ValueError, lambda: build_quantizer({'type': 'vqema', 'dim': 0})), ['dim must be at least 1']),
    'api_quantizer_decay': (api(ValueError, lambda: build_quantizer({'type': 'vqema', 'decay': 1.5})), ['decay', '1.5']),
    'api_quantizer_init': (api(ValueError, lambda: build_quantizer({'type': 'vqema', 'init': 'zeros'})), ['init', "'data'", "'normal'", "'zeros'"]),
    'api_quantizer_eps_zero': (api(ValueError, lambda: build_quantizer({'type': 'vqema', 'eps': 0.0})), ['eps must be > 0']),
    'api_quantizer_ba_soft_dist_norm': (api(ValueError, lambda: build_quantizer({'type': 'ba_soft', 'K': 8, 'dim': 4, 'dist_norm': 'x'})),
                                   ['dist_norm', 'running', "'x'"]),
    'api_quantizer_fsq_K_without_levels': (api(ValueError, lambda: build_quantizer({'type': 'fsq', 'K': 7})), ['K=7', 'quantizer.levels']),
    'api_quantizer_fsq_levels_product': (api(ValueError, lambda: build_quantizer({'type': 'fsq', 'K': 8, 'levels': [3, 3]})), ['[3, 3]', 'K=8']),
    'api_quantizer_keys_unknown': (api(ValueError, lambda: quantizer_keys('nope')), ["'nope'", QTYPES]),
    # ---- Python API: the config raises UserError
    'api_config_epochs_text': (api(UserError, lambda: C.config_from_dict({'train': {'epochs': '3'}})), ['train.epochs', 'int', "'3'"]),
    'api_config_section_scalar': (api(UserError, lambda: C.config_from_dict({'data': 5})), ["'data'", 'mapping']),
    'api_config_section_none': (api(UserError, lambda: C.config_from_dict({'train': None})), ["'train'", 'mapping']),
    'api_config_unknown_key': (api(UserError, lambda: C.config_from_dict({'foo': 1})), ["'foo'", 'quantizer', 'wandb']),
    **{f'api_config_{k}': (api(UserError, lambda v=v: C.config_from_dict(v)),
                           ['a config is a mapping of sections (data, model, quantizer, optim, train, wandb) to their keys', f'got {got}'])
       for k, v, got in (('list', [1, 2], 'list [1, 2]'), ('int', 5, 'int 5'), ('str', 'abc', "str 'abc'"))},
    'api_config_quantizer_scalar': (api(UserError, lambda: C.config_from_dict({'quantizer': 5})), ["'quantizer'", 'mapping']),
    'api_config_lr_text': (api(UserError, lambda: C.config_from_dict({'optim': {'lr': 'fast'}})), ['optim.lr', 'float', "'fast'"]),
    'api_config_device': (api(UserError, lambda: C.config_from_dict({'train': {'device': 'tpu'}})), ['train.device', 'cuda:N', "'tpu'"]),
    'api_config_wandb_mode': (api(UserError, lambda: C.config_from_dict({'wandb': {'mode': 'x'}})), ['wandb.mode', 'offline', 'disabled']),
    'api_config_on_nonfinite': (api(UserError, lambda: C.config_from_dict({'train': {'on_nonfinite': 'ignore'}})), ['train.on_nonfinite', 'stop', 'skip']),
    'api_config_name_int': (api(UserError, lambda: C.config_from_dict({'name': 5})), ["'name'", 'str']),
    'api_config_subset_float': (api(UserError, lambda: C.config_from_dict({'data': {'subset': 2.5}})), ['data.subset', 'int']),
    'api_config_n_hid_small': (api(UserError, lambda: C.config_from_dict({'model': {'n_hid': 1}})), ['model.n_hid', '[2, 1024]']),
    'api_config_epochs_huge': (api(UserError, lambda: C.config_from_dict({'train': {'epochs': 10 ** 20}})), ['train.epochs', '100000']),
    'api_config_quantizer_unknown_key': (api(UserError, lambda: C.config_from_dict({'quantizer': {'type': 'vqema', 'x': 1}})), ['quantizer.x', 'vqema']),
    'api_config_gumbel_features': (api(UserError, lambda: C.config_from_dict({'quantizer': {'type': 'gumbel', 'K': 8, 'dim': 4, 'features': 5}})),
                                   ['quantizer.features', 'model.n_hid', '128']),
    'api_read_yaml_missing': (api(UserError, lambda: C.read_yaml('nope.yaml')), ['nope.yaml', 'not found']),
    'api_read_yaml_broken': (api(UserError, lambda: C.read_yaml('broken.yaml')), ['broken.yaml', 'not valid YAML']),
    'api_read_yaml_list': (api(UserError, lambda: C.read_yaml('list.yaml')), ['list.yaml', 'mapping']),
    'api_read_yaml_parent_missing': (api(UserError, lambda: C.read_yaml('child.yaml')), ['parent.yaml', 'not found']),
    'api_read_yaml_loop': (api(UserError, lambda: C.read_yaml('loop_a.yaml')), ['inherits itself']),
    'api_read_yaml_not_utf8': (api(UserError, lambda: C.read_yaml('bin.yaml')), ['config file bin.yaml is not UTF-8 text (byte 0): is it a YAML file?']),
    'api_override_without_equals': (api(UserError, lambda: C.apply_overrides({}, ['oops'])), ["'oops'", 'key=value']),
    # ---- Python API: data, checkpoints, runs, analysis, sweeps, parsers (all UserError)
    'api_cifar_missing_no_download': (api(UserError, lambda: D.load_cifar10('nodata', 'train', download=False)),
                                      ['nodata/cifar-10-batches-py', 'data.download', '--data-dir']),
    'api_cifar_batches_missing': (api(UserError, lambda: D.load_cifar10('cifar_empty', 'test', download=False)), ['test_batch', 'missing']),
    'api_cifar_bad_split': (api(UserError, lambda: D.load_cifar10('nodata', 'val', download=False)), ["'val'", "'train'", "'test'"]),
    'api_load_checkpoint_missing': (api(UserError, lambda: R.load_checkpoint('ck/nope.pt')), ['ck/nope.pt', 'not found']),
    'api_load_checkpoint_folder': (api(UserError, lambda: R.load_checkpoint('emptydir')), ['emptydir', 'not found']),
    'api_load_checkpoint_not_vqba': (api(UserError, lambda: R.load_checkpoint('ck/plain_dict.pt')), ['ck/plain_dict.pt', 'not a vqba_nb checkpoint']),
    'api_load_checkpoint_truncated': (api(UserError, lambda: R.load_checkpoint('ck/truncated.pt')), ['ck/truncated.pt', 'unreadable']),
    'api_resume_path_empty_folder': (api(UserError, lambda: R.resume_path('emptydir')), ['emptydir', 'checkpoints/latest.pt']),
    'api_write_record_unfinished': (api(UserError, lambda: R.write_record('emptydir', 'recorded')), ['emptydir', 'has not finished']),
    'api_find_runs_missing': (api(UserError, lambda: A.find_runs('nope')), ['nope', 'not found']),
    'api_find_runs_empty': (api(UserError, lambda: A.find_runs('emptydir')), ['emptydir', 'no runs or records']),
    'api_read_run_bad_yaml': (api(UserError, lambda: A.read_run('rec/bad_yaml/r')), ['rec/bad_yaml/r/config.yaml', 'not valid YAML']),
    'api_expand_sweep_missing': (api(UserError, lambda: SW.expand_sweep('sw/nope.yaml')), ['sw/nope.yaml', 'not found']),
    'api_expand_sweep_unknown_key': (api(UserError, lambda: SW.expand_sweep('sw/unknown_key.yaml')), ['bogus']),
    'api_bench_parse_args': (api(UserError, lambda: BE.parse_args(['--steps', '0'])), ['--steps must be at least 1']),
    'api_bench_quantizers': (api(UserError, lambda: BE.bench_quantizers(['nope'], Path('.'))), ["'nope'", 'ba_generic']),
    'api_train_parse_args': (api(UserError, lambda: T.parse_args(['--bogus'])), ['--bogus', 'unrecognized']),
}


@pytest.mark.parametrize('case', list(BAD_INPUTS))
def test_bad_input(case, in_world, repo_results_untouched, capsys):
    "Exit 2 with one 'error:' line naming the problem, nothing written (commands); ValueError/UserError naming it (API)."
    target, needles = BAD_INPUTS[case]
    before = snapshot(in_world)
    if isinstance(target, Cli):
        with warnings.catch_warnings(record=True) as caught:   # shown on stderr when run as a script: more than one line
            warnings.simplefilter('always')
            code, out, err = run_cli(target.entry, target.argv, capsys)
        assert_user_error(code, err, *needles)
        shown = [f'{w.category.__name__}: {w.message}' for w in caught if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning, ResourceWarning))]
        assert not shown, shown
        if target.entry == 'bench': assert 'timing' not in out, 'the benchmark started measuring'
    else:
        with pytest.raises(Exception) as e: target.fn()
        assert type(e.value) is target.exc, f'{case} raised {type(e.value).__name__}, not {target.exc.__name__}: {e.value}'
        msg = str(e.value)
        assert '\n' not in msg and msg.strip(), repr(msg)
        for n in needles: assert n in msg, f'{n!r} not in {msg!r}'
    after = snapshot(in_world)
    assert after == before, f'{case} wrote {sorted(set(after) ^ set(before)) or [k for k in after if after[k] != before.get(k)]}'


def test_table_spans_every_entry_point():
    kinds = {t.entry if isinstance(t, Cli) else 'api' for t, _ in BAD_INPUTS.values()}
    assert kinds == {'train', 'sweep', 'analyze', 'bench', 'api'} and len(BAD_INPUTS) >= 40
    assert sum(isinstance(t, Api) and t.exc is ValueError for t, _ in BAD_INPUTS.values()) >= 5
    assert sum(isinstance(t, Api) and t.exc is UserError for t, _ in BAD_INPUTS.values()) >= 5


# ================================================================ random input (hypothesis)
FUZZ = settings(max_examples=25, deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much])

# argv holds no NUL; no '\n' either (a raw newline inside a path splits the error line: the known cosmetic bug that
# tests/test_faults.py::test_newline_in_argument_keeps_one_error_line covers)
odd_text = st.text(st.characters(blacklist_categories=('Cs',), blacklist_characters='\x00\n'), max_size=12)
# words of argv, also where they become a flag's value, a path: none with '/' or '..', so that a folder a command writes
# to (--out, --results, --json) stays inside the test's folder
words = st.one_of(odd_text.filter(lambda w: '/' not in w and '..' not in w),
                  st.sampled_from(['-', '--', '-x', '--bogus', '--list=1', '--=', 'key=value', '0', '-1', '1e3', '.', '~']))
scalars = st.one_of(st.integers(-10, 10), st.integers(-2 ** 70, 2 ** 70), st.floats(), st.booleans(), st.none(), odd_text,
                    st.sampled_from(['', 'null', '~', 'yes', 'no', '1e-3', '.inf', '.nan', '0x10', '1_000', '[', '{a: 1}', 'vqema',
                                     'identity', 'ba', 'cpu', 'skip', 'data', 'normal']))


def argv_from(groups) -> list[str]: return [str(t) for g in groups for t in g]


def check_cli_outcome(code, out, err) -> str:
    "Exit 0, or exit 2 with one 'error:' line; no traceback either way. Returns the outcome, for `event`."
    assert 'Traceback' not in err, err
    assert code in (0, 2), f'exit {code}: {err}'
    if code == 2:
        line = assert_user_error(code, err)
        return 'exit 2: ' + line[7:40]
    return 'exit 0'


# ---------------------------------------------------------------- sweep: random argv, every run already done
FZ_SWEEP = {'name': 'fz', 'epochs': 1, 'grid': {'train.seed': [0, 1]}, 'overrides': TINY_SWEEP_OVERRIDES}


@pytest.fixture(scope='module')
def sweep_world(tmp_path_factory) -> Path:
    """A sweep of two tiny runs, both finished in exp/ (their metrics say epoch 1,000,000, beyond any --epochs a config
    allows) and recorded in results/: whatever the flags, the sweep lists, skips or records; it never trains."""
    w = tmp_path_factory.mktemp('sweep_world')
    (w / 'sw.yaml').write_text(yaml.safe_dump(FZ_SWEEP))
    (w / 'broken.yaml').write_text('grid: [\n')
    (w / 'afile').write_text('x')
    for name, cfg in SW.expand_sweep(w / 'sw.yaml'):
        for d in (w / 'exp' / name, w / 'results' / name):
            d.mkdir(parents=True)
            (d / 'config.yaml').write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
            (d / 'metrics.jsonl').write_text(json.dumps({'epoch': 10 ** 6, 'step': 8, 'test_psnr': 20.0}) + '\n')
            (d / 'code_counts.json').write_text(json.dumps([1] * 32))
        (w / 'results' / name / 'record.json').write_text('{}\n')
    return w


SWEEP_GROUPS = [['--list'], ['--no-record'], ['--sweep', 'sw.yaml'], ['--sweep', 'missing.yaml'], ['--sweep', 'broken.yaml'],
                ['--sweep', '.'], ['--sweep'], ['--index'], ['--epochs'], ['--results', 'other'], ['--results', 'results'],
                ['--results', 'a/b'], ['--results'], ['--results', 'afile'], ['--results', 'exp'], ['--results', ''], ['--epochs=1'],
                ['--ind', '0'], ['--help'], ['-h'], ['--', 'x']]   # --results afile: a file; exp: the runs' own out_dir
# --threads: a few, or a count out of range (refused; a large one that is allowed would only be slow); --parallel: never
# above 1 (each worker would be a fresh process importing torch)
sweep_groups = st.one_of(
    st.sampled_from(SWEEP_GROUPS), st.sampled_from(SWEEP_GROUPS),
    st.tuples(st.just('--index'), st.one_of(st.integers(-3, 3), words)),
    st.tuples(st.just('--epochs'), st.one_of(st.sampled_from([-2, -1, 0, 1, 2, 3, 100000, 100001, 10 ** 12]), words)),
    st.tuples(st.just('--parallel'), st.one_of(st.integers(-2, 1), st.sampled_from(['x', '1.5', '']))),
    st.tuples(st.just('--threads'), st.one_of(st.integers(-2, 2), st.sampled_from([257, 100000, 10 ** 12, 'x', '']))),
    words.map(lambda w: [w]))


@FUZZ
@given(st.lists(sweep_groups, max_size=4).map(argv_from))
def test_fuzz_sweep_argv(sweep_world, repo_results_untouched, tmp_path_factory, monkeypatch, capsys, argv):
    "Random sweep flags and words: exit 0 (listed, skipped or recorded) or exit 2 with one line; nothing trains."
    tmp = tmp_path_factory.mktemp('fz_sweep')
    shutil.copytree(sweep_world, tmp, dirs_exist_ok=True)
    monkeypatch.chdir(tmp)
    exp_before = snapshot(tmp / 'exp')
    code, out, err = run_cli('sweep', ['--sweep', 'sw.yaml', *argv], capsys)
    event(check_cli_outcome(code, out, err))
    assert snapshot(tmp / 'exp') == exp_before, 'the sweep touched its finished runs'
    assert not [p for p in tmp.rglob('*') if p.name in ('checkpoints', 'samples', '.lock')], 'something trained'
    assert not re.search(r': (ran|resumed)\b', out), out


# ---------------------------------------------------------------- sweep files: random documents, listed
SW_GRID_KEYS = ['train.seed', 'quantizer.K', 'optim.lr', 'model.n_res', 'data.augment', 'foo', 'train..epochs', 'quantizer']
grid_values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.sampled_from(['type', 'K', 'x']), scalars, max_size=2))
# grid keys that are not strings, `config` values that are not paths, overrides that are not a mapping, keys of mixed types
grid_entry = st.one_of(st.tuples(st.sampled_from(SW_GRID_KEYS), grid_values),
                       st.tuples(st.sampled_from([5, 0, None, True, 1.5]), grid_values),
                       st.tuples(st.just('config'), st.lists(st.one_of(st.sampled_from(['c.yaml', 'missing.yaml', 'broken.yaml', 'vq.yaml']),
                                                                       st.sampled_from(['c.yaml', 'vq.yaml']), scalars), max_size=3)))
grid = st.one_of(scalars, st.lists(grid_entry, max_size=3).map(dict))
overrides = st.dictionaries(st.sampled_from(['optim.lr', 'train.seed', 'quantizer.decay', 'data.augment', 'bogus', 'train.device']),
                            scalars, max_size=2).map(lambda d: {**TINY_SWEEP_OVERRIDES, **d})
wild_overrides = st.one_of(overrides, overrides, scalars, st.lists(scalars, max_size=2))
grids_entry = st.one_of(scalars, st.fixed_dictionaries({'grid': grid}, optional={'epochs': scalars, 'prefix': st.sampled_from(['p-', '', 5]),
                                                                                'overrides': wild_overrides, 'bogus': scalars, 0: scalars}))
wild_sweep_doc = st.fixed_dictionaries({}, optional={'name': st.sampled_from(['fz', 'fz/sub', '', 5, '../x', 'a b']), 'epochs': scalars,
                                                'grid': grid, 'grids': st.one_of(scalars, st.lists(grids_entry, max_size=2)),
                                                'overrides': wild_overrides, 'config': st.one_of(st.sampled_from(['c.yaml', 'missing.yaml', 'vq.yaml']), scalars),
                                                'bogus': scalars, 0: scalars})
plain_grid = st.lists(st.one_of(
    st.tuples(st.just('train.seed'), st.lists(st.integers(0, 3), min_size=1, max_size=3)),
    st.tuples(st.just('quantizer.K'), st.lists(st.sampled_from([8, 16, 0, 'x']), min_size=1, max_size=2)),
    st.tuples(st.just('optim.lr'), st.lists(st.floats(1e-4, 1e-2), min_size=1, max_size=2)),
    st.tuples(st.just('config'), st.lists(st.sampled_from(['c.yaml', 'vq.yaml', 'missing.yaml']), min_size=1, max_size=2))),
    min_size=1, max_size=3).map(dict)
plain_sweep_doc = st.one_of(   # a grid (or grids) of the tiny config that mostly expands
    st.fixed_dictionaries({'name': st.sampled_from(['fz', 'fz/sub']), 'grid': plain_grid, 'overrides': overrides},
                          optional={'epochs': st.one_of(st.sampled_from([-1, 0, 1, 2, 3, 'x']), scalars), 'config': st.sampled_from(['c.yaml', 'missing.yaml'])}),
    st.fixed_dictionaries({'grids': st.lists(st.fixed_dictionaries({'grid': plain_grid}, optional={'prefix': st.sampled_from(['a-', 'b-', '']),
                                                                                                   'epochs': st.sampled_from([-1, 0, 1, 2, 3])}),
                                             min_size=1, max_size=2), 'overrides': overrides}))
sweep_doc = st.one_of(plain_sweep_doc, plain_sweep_doc, wild_sweep_doc)
YAML_SNIPPETS = ['', '---\n---\n', 'grid: [1\n', '- 1\n', '{', 'a: b: c\n', '&a [*a]\n', '? [1]: 2\n', '%YAML 1.1\n---\na: 1\n',
                 'grid: !!python/object/apply:os.system [echo hi]\n', '\t', 'name: fz\ngrid: {train.seed: [0]}\ngrid: {train.seed: [1]}\n',
                 'grid:\n  train.seed: [0, 1]\n  quantizer.K: [8]\n']


def yaml_of(docs):
    "YAML text of the documents `docs` draws, in block or flow style."
    return st.tuples(docs, st.booleans()).map(lambda t: yaml.safe_dump(t[0], default_flow_style=t[1], allow_unicode=True, sort_keys=False))


# files that are not UTF-8 (0xff never is), some of them YAML otherwise
not_utf8 = st.one_of(st.binary(max_size=30).map(lambda b: b + b'\xff'), st.sampled_from([b'\xff\xfe', b'grid: {train.seed: [0]}\n\xe9\n', b'\x80']))


def write_doc(path: Path, doc: str | bytes):
    "A document the fuzz drew: text (UTF-8) or bytes."
    if isinstance(doc, bytes): path.write_bytes(doc)
    else: path.write_text(doc)


def write_arm_files(tmp: Path):
    (tmp / 'c.yaml').write_text('quantizer: {type: vqema, K: 16, dim: 8}\n')
    (tmp / 'vq.yaml').write_text('inherit: c.yaml\nquantizer: {decay: 0.9}\n')
    (tmp / 'broken.yaml').write_text('a: [1\n')


@FUZZ
@given(st.one_of(yaml_of(sweep_doc), yaml_of(sweep_doc), st.sampled_from(YAML_SNIPPETS), st.text(max_size=40), not_utf8),
       st.sampled_from([[], ['--no-record'], ['--epochs', '2'], ['--epochs', '0']]))
def test_fuzz_sweep_files(repo_results_untouched, tmp_path_factory, monkeypatch, capsys, text, flags):
    "Random sweep files, listed (--list trains nothing): exit 0 or exit 2 with one line naming the problem; nothing written."
    tmp = tmp_path_factory.mktemp('fz_sweepfile')
    monkeypatch.chdir(tmp)
    write_arm_files(tmp)
    write_doc(tmp / 'sw.yaml', text)
    before = snapshot(tmp)
    code, out, err = run_cli('sweep', ['--sweep', 'sw.yaml', '--list', *flags], capsys)
    event(check_cli_outcome(code, out, err))
    assert snapshot(tmp) == before


# ---------------------------------------------------------------- analyze: random argv
@pytest.fixture(scope='module')
def analyze_world(world, tmp_path_factory) -> Path:
    w = tmp_path_factory.mktemp('analyze_world')
    for f in ('rec', 'afile', 'emptydir', 'notjson.json', 'binary.json', 'bench_ok.json', 'bench_list.json', 'bench_text.json', 'bench_runs_int.json'):
        (shutil.copytree if (world / f).is_dir() else shutil.copy)(world / f, w / f)
    shutil.copy(max((REPO / 'benchmarks').glob('*.json')), w / 'bench_real.json')
    return w


ANALYZE_GROUPS = [['--results', 'rec/ok'], ['--results', 'rec/ok'], ['--results', 'rec/no_metrics'], ['--results', 'rec/bad_counts'],
                  ['--results', 'nope'], ['--results', 'emptydir'], ['--results', 'afile'], ['--results', ''], ['--experiment', 'vqema-K8-s0'],
                  ['--experiment', 'rec/ok'], ['--experiment', 'nope'], ['--experiment', ''], ['--root', 'rec/ok'], ['--root', 'afile'],
                  ['--root', 'nowhere'], ['--out', 'o'], ['--out', 'o/deep/er'], ['--out', 'afile'], ['--out', 'afile/x'],
                  ['--bench', 'bench_ok.json'], ['--bench', 'bench_real.json'], ['--bench', 'notjson.json'], ['--bench', 'binary.json'],
                  ['--bench', 'missing.json'], ['--bench', 'emptydir'], ['--bench', 'bench_list.json'], ['--bench', 'bench_text.json'],
                  ['--bench', 'bench_runs_int.json'], ['--results'], ['--out'], ['--bench'], ['--help'], ['--res', 'rec/ok'],
                  ['--experiment=rec/ok'], ['--', 'x']]


@FUZZ
@given(st.lists(st.one_of(st.sampled_from(ANALYZE_GROUPS), st.sampled_from(ANALYZE_GROUPS), words.map(lambda w: [w])),
                max_size=4).map(argv_from))
def test_fuzz_analyze_argv(analyze_world, tmp_path_factory, monkeypatch, capsys, argv):
    "Random analysis flags and words: exit 0 (report written) or exit 2 with one line and nothing written."
    tmp = tmp_path_factory.mktemp('fz_analyze')
    shutil.copytree(analyze_world, tmp, dirs_exist_ok=True)
    monkeypatch.chdir(tmp)
    before = snapshot(tmp)
    code, out, err = run_cli('analyze', argv, capsys)
    event(check_cli_outcome(code, out, err))
    if code == 2: assert snapshot(tmp) == before, 'a failed analysis wrote files'
    elif not {'-h', '--help'} & set(argv): assert 'written to' in out, out[-300:]


# ---------------------------------------------------------------- bench: random argv, then a config that stops it
BENCH_GROUPS = [['--device', 'cpu'], ['--device=cpu'], ['--device', 'gpu'], ['--device', 'cuda:x'], ['--device', ''], ['--device', 'cuda'],
                ['--device', 'cuda:0'], ['--device', 'mps'], ['--images', '64'], ['--images', '0'], ['--images=-3'], ['--images', '1e3'],
                ['--warmup', '0'], ['--warmup', '2'], ['--steps', '-1'], ['--steps', '3'], ['--repeats', '0'], ['--repeats', 'two'],
                ['--eval-images', '10'], ['--eval-images', '0'], ['--quantizers', 'vqema'], ['--quantizers', 'ba,identity,ba_generic'],
                ['--quantizers', 'vqema,,ba'], ['--quantizers', 'nope'], ['--quantizers', ''], ['--no-reference'], ['--no-compile'],
                ['--json', 'out.json'], ['--json', 'nodir/out.json'], ['--json', '.'], ['--json'], ['--data-dir', 'nodata'], ['--data-dir'], ['--help'], ['--bogus'], ['-x'], ['--'],
                ['--config'], ['--steps'], ['--thr', '1'], ['--no-ref']]
INT_FLAGS = ['--images', '--warmup', '--steps', '--repeats', '--eval-images']
# the configs the benchmark stops at (before timing anything): read_yaml or config_from_dict refuse them
STOP_CONFIGS = ['missing.yaml', 'broken.yaml', 'list.yaml', 'unknown.yaml', 'k0.yaml', 'bin.yaml']
bench_groups = st.one_of(st.sampled_from(BENCH_GROUPS), st.sampled_from(BENCH_GROUPS), st.sampled_from(BENCH_GROUPS),
                         st.tuples(st.sampled_from(INT_FLAGS), st.one_of(st.integers(-3, 2000), words)),
                         st.tuples(st.just('--threads'), st.one_of(st.integers(-3, 4), st.sampled_from([257, 100000, 10 ** 12]), words)),   # refused above 256
                         words.map(lambda w: [w]))


@FUZZ
@given(st.lists(bench_groups, max_size=4).map(argv_from), st.sampled_from(STOP_CONFIGS))
def test_fuzz_bench_argv(world, tmp_path_factory, monkeypatch, capsys, argv, stop):
    """Random benchmark flags, values and words, ended by a --config the benchmark refuses (so it never measures): the
    parser refuses the flags, or the config stops the run; either way exit 2 with one line, or --help; nothing written.
    The data folder is one without CIFAR-10 (synthetic images); a device other than the CPU is refused, or (where there is
    one) stopped by the config like the CPU."""
    monkeypatch.delenv('VQBA_DATA', raising=False)   # --data-dir '' would mean $VQBA_DATA: real CIFAR-10
    tmp = tmp_path_factory.mktemp('fz_bench')
    for f in STOP_CONFIGS[1:]: shutil.copy(world / f, tmp / f)
    monkeypatch.chdir(tmp)
    before = snapshot(tmp)
    full = ['--data-dir', 'nodata', '--images', '64', '--eval-images', '64', *argv, '--config', stop]   # small data, unless the fuzz says otherwise
    code, out, err = run_cli('bench', full, capsys)
    event(check_cli_outcome(code, out, err))
    if code == 0: assert out.startswith('usage:'), out[-300:]   # --help
    else: assert 'timing' not in out, 'the benchmark started measuring'
    assert snapshot(tmp) == before


# ---------------------------------------------------------------- config files: random documents through train.py
def section_keys() -> list[str]:
    "Every key of every config section and of every quantizer type, and a few unknown ones."
    keys = {'x', 'bogus'}
    for t in typing.get_type_hints(C.Config).values():
        if dataclasses.is_dataclass(t): keys |= set(typing.get_type_hints(t))
    for cls in QUANTIZERS.values(): keys |= set(typing.get_type_hints(cls.__init__)) - {'return'}
    return sorted(keys | {'type'})


SUB_KEYS = section_keys()
SECTIONS = {k: t for k, t in typing.get_type_hints(C.Config).items() if dataclasses.is_dataclass(t)}
VQEMA_KEYS = {k: t for k, t in typing.get_type_hints(QUANTIZERS['vqema'].__init__).items() if k != 'return'}


def typed(t):
    "Values of type hint `t`, mostly valid (small: the keys that make a run big are the tiny overrides' in train.py)."
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        return st.one_of(st.none(), *[typed(a) for a in typing.get_args(t) if a is not type(None)])
    if typing.get_origin(t) is typing.Literal: return st.sampled_from(typing.get_args(t))
    if t is bool: return st.booleans()
    if t is int: return st.integers(-2, 300)
    if t is float: return st.one_of(st.floats(0, 1), st.floats(1e-5, 1e-2), st.floats(-10, 10))
    if t is str: return st.sampled_from(['cpu', 'data', 'normal', 'x', 'a/b', '', 'cuda:0', 'mps'])
    return scalars


def section(hints: dict):
    "A config section: a few of its keys, values mostly of their types."
    entry = st.sampled_from(sorted(hints)).flatmap(lambda k: st.tuples(st.just(k), st.one_of(typed(hints[k]), typed(hints[k]), typed(hints[k]), scalars)))
    return st.lists(entry, max_size=3).map(dict)


plain_config_doc = st.fixed_dictionaries({}, optional={
    **{name: section(typing.get_type_hints(cls)) for name, cls in SECTIONS.items()},
    'quantizer': section({**VQEMA_KEYS, 'type': typing.Literal[tuple(QUANTIZERS)]}),
    'name': st.sampled_from(['fz', 'a/b', 'x y', '', '..']),
    'inherit': st.sampled_from(['c.yaml', 'vq.yaml', 'missing.yaml', 'self.yaml'])}).filter(lambda d: 'inherit' not in d or len(d) > 2)
TOP_KEYS = ['name', 'data', 'model', 'quantizer', 'optim', 'train', 'wandb', 'inherit', 'out_dir', 'bogus', 'train.epochs']
wild_config_doc = st.dictionaries(st.sampled_from(TOP_KEYS),
                             st.one_of(scalars, st.dictionaries(st.sampled_from(SUB_KEYS), st.one_of(scalars, st.lists(scalars, max_size=2)), max_size=4)),
                             max_size=4)
config_doc = st.one_of(plain_config_doc, plain_config_doc, wild_config_doc)
CONFIG_SNIPPETS = YAML_SNIPPETS + ['inherit: c.yaml\n', 'inherit: self.yaml\n', 'inherit: [1]\n', 'train: {epochs: 1}\ntrain: {seed: 2}\n',
                                   'quantizer: {type: ba, K: 8}\n', 'optim:\n  lr: 1e-3\n  beta1: 1.0\n', 'data: {dir: /nonexistent}\n',
                                   'quantizer: {type: [vqema]}\n', 'quantizer: {type: {vqema: 1}}\n']


@FUZZ
@given(st.one_of(yaml_of(config_doc), yaml_of(config_doc), st.sampled_from(CONFIG_SNIPPETS), st.text(max_size=40), not_utf8))
def test_fuzz_config_files(tmp_path_factory, monkeypatch, capsys, text):
    """Random config files given to train.py --config, with the tiny overrides after them (which win for data, model size,
    quantizer type and size, out_dir, W&B) and one epoch: a tiny run (exit 0) or exit 2 with one line and nothing written."""
    tmp = tmp_path_factory.mktemp('fz_config')
    monkeypatch.chdir(tmp)
    write_arm_files(tmp)
    write_doc(tmp / 'self.yaml', text)
    out = tmp / 'out'
    code, _, err = run_cli('train', ['--quiet', '--config', 'self.yaml', *tiny(out, 'train.epochs=1', 'train.compile=false')], capsys)
    outcome = check_cli_outcome(code, '', err)
    if code == 2 and 'non-finite' not in err:   # input errors come before anything is written; a diverging run stops after
        assert files_under(out) == [], (err, files_under(out))
    assert not (tmp / 'experiments').exists()
    event(outcome)


@FUZZ
@given(st.one_of(yaml_of(config_doc), st.sampled_from(CONFIG_SNIPPETS), st.text(max_size=40), not_utf8))
def test_fuzz_config_loader_api(tmp_path_factory, text):
    """The same documents through read_yaml + config_from_dict, and (where they are YAML) straight to config_from_dict,
    which gets documents that are not mappings that way: a Config, or a UserError with a one-line message."""
    tmp = tmp_path_factory.mktemp('fz_loader')
    write_arm_files(tmp)
    write_doc(tmp / 'self.yaml', text)
    def parsed():
        try: return yaml.safe_load(text)
        except yaml.YAMLError as e: raise UserError('not YAML') from e   # (bytes that are not UTF-8: a YAMLError too)
    for load in (lambda: C.read_yaml(tmp / 'self.yaml'), parsed):
        try: cfg = C.config_from_dict(load())
        except UserError as e:
            assert str(e).strip() and '\n' not in str(e), repr(str(e))
            event('UserError: ' + str(e)[:30])
        else:
            assert isinstance(cfg, C.Config)
            event('valid')
