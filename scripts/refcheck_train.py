"""Train the study's model with a quantizer and with its reference's, side by side: the harness that
`refcheck_cvq.py --train` and `refcheck_simvq.py --train` share.

Each variant is a quantizer class registered under a temporary type; all train from the same seed on the same CIFAR-10
subset with the arm's config, so the model starts from the same weights (a reference's constructor must keep its
draws off the global generator). Every training step's VQ loss and number of codes used is recorded, and the first step
where a variant parts from the first one is printed, with the epochs' metrics.
"""
from __future__ import annotations
import tempfile

KEYS = ('epoch', 'train_loss', 'train_commitment_loss', 'test_recon_loss', 'test_psnr', 'test_perplexity', 'test_dead_codes')


def train_side_by_side(config:str, variants:dict, data_dir:str, images:int, epochs:int, test_images:int, seed:int) -> list[dict]:
    "`variants` {name: quantizer class taking the config's quantizer keys}: one run each of `config`; the first is the one the others are held against."
    from vqba_nb.config import config_from_dict, merge_configs, read_yaml
    from vqba_nb.registry import QUANTIZERS
    from vqba_nb.runs import read_metrics
    from vqba_nb.train import load_data, run
    trace = {}
    def traced(cls, name):
        class Traced(cls):
            def quantize(self, v):
                out = super().quantize(v)
                if self.training: trace.setdefault(name, []).append((out.loss.item(), int(out.indices.unique().numel())))
                return out
        Traced.__name__ = cls.__name__
        return Traced
    base = read_yaml(config)
    over = {'data': {'dir': data_dir, 'subset': images, 'test_subset': test_images}, 'train': {'epochs': epochs, 'seed': seed, 'ckpt_every': 0},
            'wandb': {'mode': 'disabled'}}
    data = load_data(config_from_dict(merge_configs(base, over)))
    rows = []
    for name, cls in variants.items():
        QUANTIZERS[f'side_{name}'] = traced(cls, name)
        cfg = merge_configs(base, over)
        cfg['quantizer'] = {**cfg['quantizer'], 'type': f'side_{name}'}
        with tempfile.TemporaryDirectory() as t:
            _, rd = run(config_from_dict({**cfg, 'name': name, 'out_dir': t}), data=data, quiet=True)
            rows += [{'quantizer': name, **{k: m[k] for k in KEYS}} for m in read_metrics(rd)]
    first, *others = variants
    for other in others:
        a, b = trace[first], trace[other]
        rel = [abs(x[0] - y[0]) / max(abs(y[0]), 1e-12) for x, y in zip(a, b)]
        part = next((i for i, r in enumerate(rel) if r > 1e-3 or a[i][1] != b[i][1]), None)
        print(f"{first} against {other}, {len(a)} steps: VQ loss equal to 1e-3 relative and the same number of codes used in the first {len(a) if part is None else part} steps")
        for i in sorted({0, 1, 9, 24, 49, 99, 199, 299, len(a) - 1} | ({part - 1, part, part + 1} if part else set())):
            if 0 <= i < len(a): print(f'  step {i + 1}: VQ loss {a[i][0]:.6g} vs {b[i][0]:.6g} (relative difference {rel[i]:.2e}); codes used {a[i][1]} vs {b[i][1]}')
    cols = list(rows[0])
    print('| ' + ' | '.join(cols) + ' |'); print('|' + '---|' * len(cols))
    for r in rows: print('| ' + ' | '.join(f'{r[c]:.4g}' if isinstance(r[c], float) else str(r[c]) for c in cols) + ' |')
    return rows


def add_train_args(p):
    "The `--train` options of a refcheck script."
    p.add_argument('--train', metavar='DATA_DIR', help='instead: train the study model with each quantizer on CIFAR-10 from DATA_DIR (holding cifar-10-batches-py)')
    p.add_argument('--images', type=int, default=12800, help='--train: training images (a subset)')
    p.add_argument('--epochs', type=int, default=3, help='--train: epochs')
    p.add_argument('--test-images', type=int, default=1000, help='--train: test images')
