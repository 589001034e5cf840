"""A fork server for the kill tests: imports vqba_nb.train (torch, torchvision) once, then forks one child per request
that runs `vqba_nb.train.main(argv)` as `scripts/train.py` would, in its own process (so it can be SIGKILLed).

Protocol, one JSON object a line. stdin: {"argv": [...], "cwd": dir, "out": file, "err": file, "env": {...}}.
stdout: {"pid": pid} once the child is forked, {"exited": pid, "code": exit status or -signal} once it is reaped.
The zygote runs no torch operation itself, so no thread pool exists when it forks.
"""
import json, os, select, signal, sys, traceback

import vqba_nb.train as T
import torchvision.utils  # noqa: F401  (imported lazily by the training loop; preload it)
import tqdm.auto  # noqa: F401


def child(req):
    os.chdir(req['cwd'])
    os.environ.update(req.get('env') or {})
    for fd, path in ((1, req['out']), (2, req['err'])):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd); os.close(f)
    nul = os.open(os.devnull, os.O_RDONLY); os.dup2(nul, 0); os.close(nul)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.argv = ['scripts/train.py', *req['argv']]
    code = 0
    try: T.main(req['argv'])
    except SystemExit as e: code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException: traceback.print_exc(); code = 1
    try: sys.stdout.flush(); sys.stderr.flush()
    finally: os._exit(code)


def main():
    buf, live = b'', set()
    stdin = sys.stdin.fileno()
    def say(obj): sys.stdout.write(json.dumps(obj) + '\n'); sys.stdout.flush()
    while True:
        r, _, _ = select.select([stdin], [], [], 0.005)
        if r:
            data = os.read(stdin, 65536)
            if not data: break
            buf += data
            while b'\n' in buf:
                line, buf = buf.split(b'\n', 1)
                req = json.loads(line)
                sys.stdout.flush(); sys.stderr.flush()
                pid = os.fork()
                if pid == 0: child(req)
                live.add(pid); say({'pid': pid})
        for pid in list(live):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done: live.discard(pid); say({'exited': pid, 'code': os.waitstatus_to_exitcode(status)})
    for pid in live:
        try: os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0)
        except OSError: pass


if __name__ == '__main__': main()
