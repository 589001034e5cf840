"""Every script reports bad input the same way: one line on stderr starting with 'error:', exit status 2 (ba_search here;
train, sweep, analyze and bench have their own tests)."""
from __future__ import annotations
import subprocess, sys
import pytest
from conftest import REPO, _env, assert_user_error

@pytest.mark.parametrize('args,needle', [(['--betas', 'x'], '--betas must be'), (['--betas', '1:2:3'], '--betas must be'),
                                         (['--part', '3/2'], '--part must be'), (['--bogus'], 'unrecognized arguments'),
                                         (['--epochs', 'two'], 'invalid int value')])
def test_ba_search_bad_input(args, needle, tmp_path):
    r = subprocess.run([sys.executable, str(REPO / 'scripts' / 'ba_search.py'), *args, '--out', str(tmp_path / 'out')],
                       cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert_user_error(r.returncode, r.stderr, needle)
    assert not (tmp_path / 'out').exists()
