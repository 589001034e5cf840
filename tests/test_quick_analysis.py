"""The quick test's analysis, as a new user meets it: `scripts/train.py --config configs/base.yaml --name test` (the
continuous autoencoder, alone) then `scripts/analyze.py --experiment test`, here on a tiny synthetic run. One run answers
none of the study's questions: the report says so once (with the command that runs the study), draws only panels that
have data, reads the run's provenance.jsonl, and claims no sharing of the machine that its records do not show. Checked
with the run's metrics as logged and without the codebook metrics (an identity run need not log them)."""
from __future__ import annotations
import json, shutil, subprocess, sys
from pathlib import Path

import pytest
from conftest import REPO, _env, train

ANALYZE = REPO / 'scripts' / 'analyze.py'
CODEBOOK_KEYS = ('test_perplexity', 'test_perplexity_batch_avg', 'test_usage_rate', 'test_dead_codes')
BENCH = max((REPO / 'benchmarks').glob('*.json'), default=None)   # in the repository a new user's analysis finds one


@pytest.fixture(scope='module')
def quick(tmp_path_factory) -> Path:
    "A folder holding experiments/test: the quick test's run (configs/base.yaml: quantizer identity), 2 epochs of tiny synthetic data."
    cwd = tmp_path_factory.mktemp('quick')
    r = train(['--config', REPO / 'configs' / 'base.yaml', '--epochs', 2, '--name', 'test', '--quiet', 'data.synthetic=true', 'data.subset=256',
               'data.test_subset=64', 'data.batch_size=32', 'data.eval_batch_size=64', 'model.n_hid=16', 'model.n_res=1', 'quantizer.dim=8',
               'wandb.mode=disabled', 'train.threads=1'], cwd)
    assert r.returncode == 0, r.stderr
    assert (cwd / 'experiments' / 'test' / 'provenance.jsonl').is_file()
    return cwd


@pytest.fixture(params=['as logged', 'without codebook metrics'])
def run_cwd(request, quick, tmp_path) -> Path:
    "The quick test's folder; or a copy whose run logged no codebook metrics and wrote no code counts."
    if request.param == 'as logged': return quick
    shutil.copytree(quick / 'experiments', tmp_path / 'experiments', ignore=shutil.ignore_patterns('analysis', 'checkpoints'))
    m = tmp_path / 'experiments' / 'test' / 'metrics.jsonl'
    m.write_text(''.join(json.dumps({k: v for k, v in json.loads(l).items() if k not in CODEBOOK_KEYS}) + '\n' for l in m.read_text().splitlines()))
    (m.parent / 'code_counts.json').unlink(missing_ok=True)
    return tmp_path


def section(report: str, title: str) -> str:
    return report.split(f'## {title}\n')[1].split('\n## ')[0].strip()


def test_quick_test_report(run_cwd):
    "The report of the quick test's run, with the repository's newest benchmark (as analyze.py finds it in the repository)."
    args = ['--experiment', 'test'] + (['--bench', str(BENCH)] if BENCH else [])
    r = subprocess.run([sys.executable, str(ANALYZE), *args], cwd=run_cwd, env=_env({'MPLBACKEND': 'Agg'}), capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    out = run_cwd / 'experiments' / 'test' / 'analysis'
    rep = (out / 'report.md').read_text()
    # the verdict: once, what one run cannot answer and the command that runs the study; no list of pending answers
    v = section(rep, 'Verdict')
    assert v.startswith("None of the study's 9 questions can be weighed from these runs (continuous K=512: 1 run(s))"), v
    assert '`python scripts/sweep.py --sweep sweeps/study.yaml`' in v and 'pending' not in v and '**1.' not in v, v
    # the provenance of the run folder (experiments/test/provenance.jsonl) is read
    prov = json.loads((run_cwd / 'experiments' / 'test' / 'provenance.jsonl').read_text().splitlines()[0])
    cost = section(rep, 'Cost')
    assert 'No provenance recorded.' not in rep and f"Machines: `{prov['machine']}`." in cost, cost
    # the cost: the run as it ran, no sharing claimed
    assert "The run's own wall time" in cost and 'two runs at a time' not in cost and 'shared' not in cost, cost
    assert ('The cost is the benchmark\'s ratio' in cost) == (BENCH is not None)   # the benchmark's cost, not a question answered
    # no empty table for a model without a codebook, and only the figures that have data
    assert 'No quantizer run: the continuous model has no codebook to fill.' in section(rep, 'Utilization over training')
    assert sorted(p.name for p in out.glob('*.png')) == ['curves.png', 'reconstructions.png']


def test_quick_test_figures(run_cwd):
    "The curves have a panel per metric the run logged (no empty axes); one reconstruction grid, one panel."
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from vqba_nb.analysis import find_runs
    from vqba_nb.report import CURVES, figures
    figs = figures(find_runs(run_cwd / 'experiments' / 'test'))
    assert [a.get_title() for a in figs['curves'].axes] == [CURVES['test_psnr'], CURVES['train_loss']]
    assert all(len(a.lines) == 1 for a in figs['curves'].axes)
    assert [a.get_title() for a in figs['reconstructions'].axes] == ['continuous K=512'] and figs['reconstructions'].axes[0].images
    assert {n for n, f in figs.items() if f is None} == {'rate_distortion', 'frontier', 'code_usage', 'ba_schedule'}
    plt.close('all')
