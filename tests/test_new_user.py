"""What a new user meets besides bad input: the whole run's time left in the progress bar, a clean `git status` after
the README's analysis command, and no development-machine paths outside the README section meant for it."""
from __future__ import annotations
import json, re, shutil, subprocess

import pytest
from conftest import REPO, tiny_dict
import vqba_nb.train as T
from vqba_nb.config import config_from_dict


def test_progress_bar_shows_the_whole_runs_time_left(tmp_path, monkeypatch):
    "The bar's postfix carries run_left (hours and minutes for the whole run), next to tqdm's own time left in the epoch."
    import tqdm.auto
    posted = []

    class Bar(tqdm.auto.tqdm):
        def set_postfix(self, **kw): posted.append(kw); super().set_postfix(**kw)
    monkeypatch.setattr(tqdm.auto, 'tqdm', Bar)
    cfg = config_from_dict(tiny_dict(tmp_path, train={'threads': 1, 'epochs': 2}))
    T.run(cfg, quiet=False)
    assert posted, 'the progress bar never got a postfix'
    assert all(re.fullmatch(r'\d+h\d\dm', p['run_left']) for p in posted), posted[:3]


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
