"""The benchmark command: a table by default and no files, JSON only where asked (no paths in it), one-line errors."""
from __future__ import annotations
import json, subprocess, sys
from pathlib import Path

import pytest

from conftest import REPO, _env

BENCH = REPO / 'scripts' / 'bench.py'
TINY = ['--config', str(REPO / 'configs' / 'base.yaml'), '--images', '256', '--steps', '1', '--repeats', '1', '--warmup', '1',
        '--eval-images', '250', '--no-reference', '--no-compile', '--quantizers', 'vqema', '--threads', '1']


def bench(args, cwd, timeout: float = 300) -> subprocess.CompletedProcess:
    "scripts/bench.py with `args`, run in `cwd`; its data folder is empty, so it uses synthetic images."
    return subprocess.run([sys.executable, str(BENCH), '--data-dir', str(cwd / 'no-data'), *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def strings(obj):
    "Every string in a JSON value, keys included."
    if isinstance(obj, str): yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items(): yield k; yield from strings(v)
    elif isinstance(obj, list):
        for v in obj: yield from strings(v)


def test_prints_table_and_writes_nothing(tmp_path):
    r = bench(TINY, tmp_path)
    assert r.returncode == 0, r.stderr
    assert 'pipeline' in r.stdout and 'images/s' in r.stdout and 'project vqema' in r.stdout and 'data path only' in r.stdout
    assert 'data: synthetic' in r.stdout
    assert list(tmp_path.iterdir()) == [], 'the benchmark wrote into its working folder'


def test_json_only_where_asked_and_without_paths(tmp_path):
    r = bench([*TINY, '--json', 'out.json'], tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out.json']
    res = json.loads((tmp_path / 'out.json').read_text())
    assert res['data'] == 'synthetic' and res['config'] == 'base.yaml' and res['threads'] == 1
    assert 'CPU' in res['machine'] or 'cuda' in res['device']          # the CPU model and core count, or the GPU
    assert res['runs']['project vqema']['images_per_s'] > 0 and res['runs']['project vqema']['quantizer_fwd_bwd_ms'] > 0
    text = (tmp_path / 'out.json').read_text()
    assert str(tmp_path) not in text and str(REPO) not in text
    assert not any(s.startswith('/') or s.startswith('~') for s in strings(res)), 'a path in the results'


@pytest.mark.parametrize('args, message', [
    (['--config', str(REPO / 'configs' / 'base.yaml'), '--quantizers', 'vqema,nope'], "unknown quantizer 'nope'"),
    (['--config', 'missing.yaml'], 'config file missing.yaml not found'),
    (['--steps', '0'], '--steps must be at least 1'),
    (['--bogus'], 'unrecognized arguments'),
], ids=['unknown_quantizer', 'missing_config', 'zero_steps', 'unknown_option'])
def test_bad_input_one_line_exit_2(args, message, tmp_path):
    r = bench(args, tmp_path, timeout=120)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and message in lines[0], r.stderr
    assert list(tmp_path.iterdir()) == []
