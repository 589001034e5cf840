"""What a new user meets besides bad input: the whole run's time left in the progress bar, plain lines (no `\\r`) in a
log file, a quick test of the continuous model that shows no codebook metrics, a clean `git status` after the README's
analysis command, and no development-machine paths outside the README section meant for it."""
from __future__ import annotations
import io, json, re, shutil, subprocess, sys

import pytest
from conftest import REPO, TINY_EPOCHS, _env, cmd, tiny, tiny_dict
import vqba_nb.train as T
from vqba_nb.config import config_from_dict

CODEBOOK_KEYS = re.compile(r'perplexity|usage|dead|codes')   # what a model without a codebook must not report


class Terminal(io.StringIO):
    def isatty(self): return True


def test_progress_bar_shows_the_whole_runs_time_left(tmp_path, monkeypatch):
    "On a terminal the bar's postfix carries run_left (hours and minutes for the whole run), next to tqdm's own time left in the epoch."
    import tqdm.auto
    posted = []

    class Bar(tqdm.auto.tqdm):
        def set_postfix(self, **kw): posted.append(kw); super().set_postfix(**kw)
    monkeypatch.setattr(tqdm.auto, 'tqdm', Bar)
    monkeypatch.setattr(sys, 'stderr', Terminal())
    cfg = config_from_dict(tiny_dict(tmp_path, train={'threads': 1, 'epochs': 2}))
    T.run(cfg, quiet=False)
    assert posted, 'the progress bar never got a postfix'
    assert all(re.fullmatch(r'\d+h\d\dm', p['run_left']) for p in posted), posted[:3]
    assert '\r' in sys.stderr.getvalue()   # a terminal's bar redraws in place


def test_log_file_lines_show_the_whole_runs_time_left(tmp_path, monkeypatch):
    "In a log file the progress is plain lines (here one at every look: Progress.every=0) with the epoch's loss and run_left; no bar, no \\r."
    monkeypatch.setattr(T.Progress, 'every', 0.)
    monkeypatch.setattr(sys, 'stderr', io.StringIO())
    T.run(config_from_dict(tiny_dict(tmp_path, train={'threads': 1, 'epochs': 2})), quiet=False)
    log = sys.stderr.getvalue()
    assert '\r' not in log and log, repr(log[:200])
    lines = log.splitlines()
    assert all(re.fullmatch(r'epoch [12]/2 batch [1-8]/8 loss=\d+\.\d{4} run_left=\d+h\d\dm', l) for l in lines), lines[:3]
    assert len(lines) == 2 * 8   # a look at every step on a CPU


def run_to_log(tmp_path, *args) -> tuple[int, str]:
    "The training CLI with stdout and stderr redirected to one file, as `python scripts/train.py ... > log 2>&1`; (exit status, the log)."
    log = tmp_path / 'train.log'
    with open(log, 'w') as f:
        rc = subprocess.run(cmd(args), cwd=tmp_path, env=_env(), stdout=f, stderr=subprocess.STDOUT, timeout=300).returncode
    return rc, log.read_text()


def test_log_file_gets_few_plain_lines(tmp_path):
    "A run logging to a file writes plain lines: its epoch records and the closing summary, no tqdm redraws joined by \\r."
    rc, log = run_to_log(tmp_path, '--name', 'logged', *tiny(tmp_path / 'out'))
    assert rc == 0, log
    assert '\r' not in log, repr(log[:300])
    lines = log.splitlines()
    assert [l.split()[0] for l in lines if l.startswith('epoch=')] == [f'epoch={e}' for e in range(1, TINY_EPOCHS + 1)], lines
    assert len(lines) <= TINY_EPOCHS + 2, lines   # the epochs, 'done: ...' and its metrics (a short run: no progress line a minute)


def test_quick_test_of_the_continuous_model_shows_no_codebook_metrics(tmp_path):
    "configs/base.yaml (quantizer identity, the README's quick test): its lines, its metrics.jsonl and code_counts.json hold no code usage."
    rc, log = run_to_log(tmp_path, '--config', REPO / 'configs' / 'base.yaml', '--name', 'test', *tiny(tmp_path / 'out', epochs=2), 'quantizer.type=identity')
    assert rc == 0, log
    assert not CODEBOOK_KEYS.search(log), log
    assert len(re.findall(r'test_psnr=\d', log)) == 2 and re.search(r'\n  psnr=[\d.]+  loss=[\d.]+\n', log), log
    run_dir = tmp_path / 'out' / 'test'
    recs = [json.loads(l) for l in (run_dir / 'metrics.jsonl').read_text().splitlines()]
    assert [r['epoch'] for r in recs] == [1, 2] and not [k for r in recs for k in r if CODEBOOK_KEYS.search(k)], recs
    assert json.loads((run_dir / 'code_counts.json').read_text()) == []


def test_identity_logs_no_code_counts_to_wandb(tmp_path, monkeypatch):
    "What W&B gets (the record, and code counts for the usage histogram): no codebook metrics and no counts for the identity quantizer; both for VQ-EMA."
    logged = []
    monkeypatch.setattr(T.Logger, 'log', lambda self, record, samples=None, counts=None: logged.append((dict(record), counts)))
    for q in ('identity', 'vqema'):
        T.run(config_from_dict(tiny_dict(tmp_path, q, quantizer={'type': q, 'K': 32, 'dim': 8}, train={'threads': 1, 'epochs': 1})), quiet=True)
    (ident, ident_counts), (vq, vq_counts) = logged
    assert ident_counts is None and not [k for k in ident if CODEBOOK_KEYS.search(k)], ident
    assert vq_counts is not None and vq_counts.sum() == 64 * 8 * 8 and {'test_perplexity', 'test_dead_codes', 'test_usage_rate'} <= set(vq)


def test_analysis_output_is_not_left_untracked():
    "`python scripts/analyze.py --results results/study` writes results/study/analysis/, which git ignores: git status stays clean."
    if shutil.which('git') is None or not (REPO / '.git').exists(): pytest.skip('not a git checkout')
    r = subprocess.run(['git', 'check-ignore', '-q', 'results/study/analysis/report.md'], cwd=REPO)
    assert r.returncode == 0, 'results/<sweep>/analysis/ is not ignored by git'


def test_no_development_machine_paths_for_users():
    "No notebook's code points at ../shared (a user's clone has none); the README names it only in its section for the project's machine."
    for nb in sorted((REPO / 'nbs').glob('*.ipynb')):
        for cell in json.loads(nb.read_text())['cells']:
            if cell['cell_type'] == 'code': assert 'shared/' not in ''.join(cell['source']), f'{nb.name} has a ../shared path in its code'
    sections = re.split(r'\n(?=## )', (REPO / 'README.md').read_text())
    where = [s.splitlines()[0] for s in sections if '../shared' in s]
    assert [w.replace('\u2019', "'") for w in where] == ["## Developing on the project's machine"], where   # Quarto curls the apostrophe
