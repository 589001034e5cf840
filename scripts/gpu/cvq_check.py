"""CVQ on the GPU: no host sync in a training step (fp32, bf16; closest, probrandom, l2), and the step's time next to VQ-EMA's.

On the device (fastcore's wheel carried in .whl/, as scripts/gpu/check.sh says): `python3 scripts/gpu/cvq_check.py cuda`;
here, the plumbing on the CPU: `python scripts/gpu/cvq_check.py cpu` (slow)."""
import sys, time, torch
from vqba_nb.config import config_from_dict
from vqba_nb.data import synthetic_cifar
from vqba_nb.train import Trainer
dev = sys.argv[1] if len(sys.argv) > 1 else 'cuda'
cuda = dev.startswith('cuda')
sync = torch.cuda.synchronize if cuda else (lambda: None)
x = synthetic_cifar(4096, 1)[0]
def trainer(q, precision):
    cfg = config_from_dict({'name': 'sync', 'quantizer': {**q, 'K': 512, 'dim': 64}, 'train': {'device': dev, 'precision': precision}, 'wandb': {'mode': 'disabled'}})
    return Trainer(cfg, '/dev/null', data=(x, x[:256]))
for q in ({'type': 'cvq'}, {'type': 'cvq', 'anchor': 'probrandom'}, {'type': 'cvq', 'distance': 'l2'}):
    for precision in ('fp32', 'bf16'):
        tr = trainer(q, precision); it = tr.train_batches.epoch(0)
        tr.train_step(next(it)); sync()
        if cuda: torch.cuda.set_sync_debug_mode('error')
        try:
            for _ in range(6): tr.train_step(next(it))
        finally:
            if cuda: torch.cuda.set_sync_debug_mode(0)
        tr.poll(); print(q, precision, ': 6 steps without a host sync', flush=True)
for q in ({'type': 'vqema'}, {'type': 'vqema', 'restart_threshold': 1.0}, {'type': 'cvq'}, {'type': 'cvq', 'anchor': 'probrandom'}):
    tr = trainer(q, 'fp32'); ts = []
    for rep in range(3):
        it = tr.train_batches.epoch(rep)
        tr.train_step(next(it)); sync(); t0 = time.perf_counter(); n = 0
        for b in it: tr.train_step(b); n += 1
        sync(); ts.append((time.perf_counter() - t0) / n * 1e3)
    tr.poll(); print(q, f'fp32 step: {min(ts):.2f} ms (best of 3 passes over {n} steps, batch 128)', flush=True)
