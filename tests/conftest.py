"""Shared helpers for the vqba_nb test suite.

Everything that trains uses the *tiny* config (synthetic CIFAR-shaped images, a 16-channel model, VQ-EMA with 32 codes),
so a 3-epoch run takes well under a second of training after the ~2 s import of torch. Subprocesses always run with
`cwd` in a temporary folder, `WANDB_MODE=disabled`, and `sys.executable` + the absolute path of scripts/train.py.
"""
from __future__ import annotations
import json, os, shutil, signal, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from hypothesis.configuration import set_hypothesis_home_dir

# hypothesis keeps caches in ./.hypothesis; keep the repository clean (the tests use no example database)
set_hypothesis_home_dir(Path(__import__('tempfile').gettempdir()) / 'vqba_nb-tests-hypothesis')

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / 'scripts' / 'train.py'
CONSOLE_SCRIPT = Path(sys.executable).parent / 'vqba-train'   # the venv's console script (else the one on PATH)
if not CONSOLE_SCRIPT.is_file() and shutil.which('vqba-train'): CONSOLE_SCRIPT = Path(shutil.which('vqba-train'))


def cifar_root() -> Path:
    "Folder holding `cifar-10-batches-py/`: $VQBA_DATA, else <repo>/../shared/data."
    return Path(os.environ.get('VQBA_DATA') or REPO.parent / 'shared' / 'data')


def require_cifar() -> Path:
    root = cifar_root()
    if not (root / 'cifar-10-batches-py' / 'test_batch').is_file():
        pytest.skip(f'real CIFAR-10 not found in {root}/cifar-10-batches-py (set VQBA_DATA to the folder holding it)')
    return root


# ---------------------------------------------------------------- the tiny config
TINY_EPOCHS = 3
TINY_STEPS_PER_EPOCH = 8   # 256 images / batch 32 (drop_last)


def tiny(out_dir, *extra: str, epochs: int = TINY_EPOCHS) -> list[str]:
    "Overrides for a fast run: synthetic data, tiny model, VQ-EMA K=32, no W&B, one thread."
    return ['data.synthetic=true', 'data.subset=256', 'data.test_subset=64', 'data.batch_size=32', 'data.eval_batch_size=64',
            'model.n_hid=16', 'model.n_res=1', 'quantizer.type=vqema', 'quantizer.K=32', 'quantizer.dim=8',
            'wandb.mode=disabled', 'train.threads=1', f'train.epochs={epochs}', f'out_dir={out_dir}', *extra]


def tiny_dict(out_dir, name='run', **sections) -> dict:
    "The tiny config as a nested dict for `config_from_dict` (sections are merged in)."
    d = {'name': name, 'out_dir': str(out_dir),
         'data': {'synthetic': True, 'subset': 256, 'test_subset': 64, 'batch_size': 32, 'eval_batch_size': 64},
         'model': {'n_hid': 16, 'n_res': 1}, 'quantizer': {'type': 'vqema', 'K': 32, 'dim': 8},
         'wandb': {'mode': 'disabled'}, 'train': {'threads': 1, 'epochs': TINY_EPOCHS}}
    for k, v in sections.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) and isinstance(d.get(k), dict) and k != 'quantizer' else v
    return d


# ---------------------------------------------------------------- running the CLI
def _env(extra=None) -> dict:
    "os.environ with W&B off, updated by `extra` (a None value removes the variable)."
    env = {**os.environ, 'WANDB_MODE': 'disabled', 'PYTHONUNBUFFERED': '1'}
    for k, v in (extra or {}).items():
        if v is None: env.pop(k, None)
        else: env[k] = v
    return env


def cmd(args, console: bool = False) -> list[str]:
    return ([str(CONSOLE_SCRIPT)] if console else [sys.executable, str(SCRIPT)]) + [str(a) for a in args]


def train(args, cwd, timeout: float = 120, env: dict | None = None, console: bool = False) -> subprocess.CompletedProcess:
    "Run the training CLI with `args` in a subprocess; returns the CompletedProcess (text stdout/stderr)."
    return subprocess.run(cmd(args, console), cwd=cwd, env=_env(env), capture_output=True, text=True, timeout=timeout)


def train_many(arg_lists, cwd, timeout: float = 120, workers: int = 3) -> list[subprocess.CompletedProcess]:
    "`train` for each argument list, several at a time (each run is mostly the import of torch)."
    with ThreadPoolExecutor(workers) as ex:
        return list(ex.map(lambda a: train(a, cwd, timeout), arg_lists))


def start(args, cwd, env: dict | None = None) -> subprocess.Popen:
    "Start the training CLI without waiting; stdout/stderr are piped (text)."
    return subprocess.Popen(cmd(args), cwd=cwd, env=_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(pred, timeout: float = 60, proc: subprocess.Popen | None = None, interval: float = 0.002) -> bool:
    "Poll `pred()` until true (returns True); False if `proc` exits first or `timeout` passes."
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred(): return True
        if proc is not None and proc.poll() is not None: return bool(pred())
        time.sleep(interval)
    return False


def lock_owner(run_dir) -> int | None:
    "The pid written in `run_dir/.lock`, or None."
    try: return int((Path(run_dir) / '.lock').read_text().split()[1])
    except (OSError, IndexError, ValueError): return None


def kill(proc: subprocess.Popen, sig=signal.SIGKILL, timeout: float = 60) -> tuple[int, str, str]:
    "Send `sig` to `proc` (if still running), then wait; returns (returncode, stdout, stderr)."
    if proc.poll() is None:
        try: proc.send_signal(sig)
        except ProcessLookupError: pass
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


# ---------------------------------------------------------------- results
def read_metrics(run_dir) -> list[dict]:
    "The records of `run_dir/metrics.jsonl`, without the wall-clock key `epoch_time_s` (every line must parse)."
    lines = (Path(run_dir) / 'metrics.jsonl').read_text().splitlines()
    recs = [json.loads(l) for l in lines if l.strip()]
    for r in recs: r.pop('epoch_time_s', None)
    return recs


def model_state(ckpt) -> dict:
    "The model state dict of a checkpoint file (or of an already loaded checkpoint dict)."
    ck = ckpt if isinstance(ckpt, dict) else torch.load(ckpt, map_location='cpu', weights_only=True)
    return ck['model']


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8) if t.dtype.is_floating_point else t.detach().cpu()


def same_state(a: dict, b: dict) -> bool:
    "Two state dicts hold the same keys and bitwise-equal tensors (NaN == NaN, 0.0 != -0.0)."
    if a.keys() != b.keys(): return False
    return all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(_bits(a[k]), _bits(b[k])) for k in a)


def assert_same_weights(ckpt_a, ckpt_b):
    "The model weights of two checkpoints are bitwise equal (names the first differing tensor)."
    a, b = model_state(ckpt_a), model_state(ckpt_b)
    assert a.keys() == b.keys(), f'different parameter names: {sorted(a.keys() ^ b.keys())}'
    diff = [k for k in a if not same_state({k: a[k]}, {k: b[k]})]
    assert not diff, f'weights differ in {diff}'


def assert_same_run(run_dir, ref_dir):
    "Metrics (without timings) and the final model weights of two runs are bitwise equal."
    got, ref = read_metrics(run_dir), read_metrics(ref_dir)
    assert [r['epoch'] for r in got] == [r['epoch'] for r in ref], 'different epochs in metrics.jsonl'
    assert got == ref
    assert_same_weights(Path(run_dir) / 'checkpoints' / 'latest.pt', Path(ref_dir) / 'checkpoints' / 'latest.pt')


def assert_user_error(rc, stderr: str, *needles: str) -> str:
    "Exit status 2, one stderr line starting 'error:', no traceback, containing each of `needles`; returns the line."
    assert 'Traceback' not in stderr, stderr
    lines = stderr.rstrip('\n').split('\n')
    assert rc == 2, f'exit status {rc}, stderr: {stderr}'
    assert len(lines) == 1, f'expected one stderr line, got {len(lines)}: {stderr!r}'
    assert lines[0].startswith('error: '), lines[0]
    for n in needles: assert n in lines[0], f'{n!r} not in {lines[0]!r}'
    return lines[0]


def files_under(d) -> list[str]:
    "Every path under `d` (relative), sorted; [] when `d` does not exist."
    d = Path(d)
    return sorted(str(p.relative_to(d)) for p in d.rglob('*')) if d.exists() else []


# ---------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def _restore_torch_threads():
    "In-process runs call torch.set_num_threads(train.threads); put it back after each test."
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope='session')
def reference(tmp_path_factory):
    """`reference(*extra)` -> the folder of an uninterrupted tiny CLI run with those extra overrides (cached per session)."""
    cache, root = {}, tmp_path_factory.mktemp('reference')
    def get(*extra: str) -> Path:
        if extra not in cache:
            name = f'ref{len(cache)}'
            r = train(['--quiet', '--name', name, *tiny(root, *extra)], cwd=root)
            assert r.returncode == 0, r.stderr
            cache[extra] = root / name
        return cache[extra]
    return get


@pytest.fixture
def copy_run(tmp_path):
    "`copy_run(src, name)` -> a copy of run folder `src` under tmp_path/runs/name (checkpoints refer to nothing absolute)."
    def cp(src, name='copy') -> Path:
        dst = tmp_path / 'runs' / name
        shutil.copytree(src, dst)
        return dst
    return cp


# ---------------------------------------------------------------- a fork server for many short runs
class ZChild:
    "A training process forked by the zygote; the subset of Popen's interface that the tests use."
    def __init__(self, zyg: 'Zygote', pid: int, out: Path, err: Path):
        self.zyg, self.pid, self.out, self.err, self.returncode = zyg, pid, out, err, None

    def poll(self):
        if self.returncode is None: self.returncode = self.zyg.exit_code(self.pid)
        return self.returncode

    def send_signal(self, sig): os.kill(self.pid, sig)   # the zygote reaps it, so the pid stays ours until then

    def kill(self): self.send_signal(signal.SIGKILL)

    def communicate(self, timeout=None):
        end = time.monotonic() + (timeout or 1e9)
        while self.poll() is None:
            if time.monotonic() > end: raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.005)
        return self.out.read_text(), self.err.read_text()


class Zygote:
    """tests/_zygote.py: a process that has imported vqba_nb.train once and forks a child per run, so a run starts in
    milliseconds instead of the ~2 s of importing torch. Children run `vqba_nb.train.main(argv)` exactly as
    scripts/train.py does, with their own pid, cwd, stdout/stderr files and default signal handling."""
    def __init__(self, logdir: Path):
        import threading
        self.logdir, self.n, self.codes, self.cv = logdir, 0, {}, threading.Condition()
        self.pids: list[int] = []
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name('_zygote.py'))], cwd=logdir, env=_env(),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            msg = json.loads(line)
            with self.cv:
                if 'pid' in msg: self.pids.append(msg['pid'])
                else: self.codes[msg['exited']] = msg['code']
                self.cv.notify_all()

    def exit_code(self, pid):
        with self.cv: return self.codes.get(pid)

    def start(self, args, cwd, env: dict | None = None) -> ZChild:
        with self.cv:
            self.n += 1
            out, err = self.logdir / f'{self.n}.out', self.logdir / f'{self.n}.err'
            n_before = len(self.pids)
            self.proc.stdin.write(json.dumps({'argv': [str(a) for a in args], 'cwd': str(cwd), 'out': str(out), 'err': str(err),
                                              'env': {'WANDB_MODE': 'disabled', **(env or {})}}) + '\n')
            self.proc.stdin.flush()
            assert self.cv.wait_for(lambda: len(self.pids) > n_before, timeout=60), 'the zygote did not fork'
            return ZChild(self, self.pids[n_before], out, err)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope='session')
def zygote(tmp_path_factory):
    z = Zygote(tmp_path_factory.mktemp('zygote'))
    yield z
    z.close()
