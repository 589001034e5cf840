#!/usr/bin/env python
"""Small grid search over BA-VQ options (the generic class BASoftQuantizer, type ba_soft) on a CIFAR-10 training subset; prints a markdown table, writes JSON.

python scripts/ba_search.py --subset 10000 --epochs 2 --out experiments/ba_search
Every run is a normal run folder under --out; results are read back from their metrics.jsonl.
"""
import itertools, json, time
from pathlib import Path
from vqba_nb.config import config_from_dict, read_yaml, merge_configs
from vqba_nb.runs import read_metrics
from vqba_nb.train import run
from vqba_nb.core import ArgumentParser, UserError, fail

p = ArgumentParser(prog='ba_search', hint=' (see ba_search.py --help)', description='Grid search over BA-VQ options (dist_norm, assign, codebook_update, beta range) of the generic class '
                            '(type ba_soft) from configs/ba_seed.yaml on a CIFAR-10 training subset; prints a markdown table and writes search.json.')
p.add_argument('--subset', type=int, default=10000, help='CIFAR-10 training images per run (data.subset)')
p.add_argument('--test-subset', type=int, default=2000, help='test images of the hard evaluation (data.test_subset)')
p.add_argument('--epochs', type=int, default=2, help='epochs per run')
p.add_argument('--out', default='experiments/ba_search', help='folder of the run folders and search.json; runs already there are read back, not redone')
p.add_argument('--betas', default='0.1:5,1:100', help='comma-separated start:end pairs of the beta schedule')
p.add_argument('--part', default='0/1', help='I/N: run only every N-th grid point from I (to split over processes)')
p.add_argument('--threads', type=int, default=1, help='torch CPU threads per run (train.threads)')
p.add_argument('--full', action='store_true', help='the full 36-run product instead of the chosen 23 runs')
p.add_argument('--only', help='run only grid points whose name contains this (default: all)')
try:   # bad input: one line on stderr, exit status 2, as every script of the project
    a = p.parse_args()
    try: betas = [tuple(float(x) for x in b.split(':')) for b in a.betas.split(',')]
    except ValueError: betas = []
    if not betas or any(len(b) != 2 or b[0] < 0 or b[1] < 0 for b in betas):
        raise UserError(f'--betas must be comma-separated start:end pairs of non-negative numbers, e.g. 0.1:5,1:100; got {a.betas!r}')
    try: part, nparts = map(int, a.part.split('/'))
    except ValueError: part, nparts = -1, 0
    if not 0 <= part < nparts: raise UserError(f'--part must be I/N with 0 <= I < N, e.g. 0/2; got {a.part!r}')
except UserError as e: fail(e)
# The full product is 36 runs; this machine affords about half. 'running' (distances in units of the current hard
# distortion) gets the full grid; raw distances ('none') the seed's setting and two hard variants; 'dim' (per-dimension
# squared error, ~1/64 of raw, so beta 0.1 -> 5 is nearly uniform throughout) three runs at the high beta range.
grid = ([('none', 'soft', 'grad', b) for b in betas] + [('none', m, 'ema', betas[0]) for m in ('hard_soft_grad', 'hard_st')]
        + [('dim', m, u, betas[-1]) for m, u in (('soft', 'ema'), ('hard_soft_grad', 'grad'), ('hard_soft_grad', 'ema'))]
        + list(itertools.product(['running'], ['soft', 'hard_soft_grad', 'hard_st'], ['grad', 'ema'], betas))
        # added after the first results: starting below the first critical beta collapses the codebook, so start above it
        + [('running', m, u, (10., 1000.)) for m, u in (('hard_st', 'ema'), ('hard_soft_grad', 'ema'), ('soft', 'grad'), ('hard_st', 'grad'))])
if a.full: grid = list(itertools.product(['none', 'dim', 'running'], ['soft', 'hard_soft_grad', 'hard_st'], ['grad', 'ema'], betas))
base = read_yaml('configs/ba_seed.yaml')
rows = []
for gi, (norm, assign, upd, (b0, b1)) in enumerate(grid):
    name = f'{norm}-{assign}-{upd}-b{b0:g}_{b1:g}'
    over = {'name': name, 'out_dir': a.out, 'wandb': {'mode': 'disabled'},
            'data': {'subset': a.subset, 'test_subset': a.test_subset}, 'train': {'epochs': a.epochs, 'ckpt_every': 0, 'threads': a.threads},
            'quantizer': {'dist_norm': norm, 'assign': assign, 'codebook_update': upd, 'beta_start': b0, 'beta_end': b1}}
    cfg = config_from_dict(merge_configs(base, over))
    t0 = time.time()
    if gi % nparts == part and (a.only or '') in name and not (Path(a.out) / name / 'metrics.jsonl').exists():
        try: run(cfg, quiet=True)
        except UserError as e: print(f'{name}: {e}')
    rec = (read_metrics(Path(a.out) / name) or [{}])[-1]
    rows.append({'dist_norm': norm, 'assign': assign, 'codebook_update': upd, 'beta': f'{b0:g}->{b1:g}',
                 **{k: rec.get(k) for k in ('test_psnr', 'test_perplexity', 'test_usage_rate', 'train_loss', 'train_soft_hard_gap', 'train_perplexity_q')}})
    r = rows[-1]
    print(f"{name:40s} psnr={r['test_psnr']} ppl={r['test_perplexity']} ({time.time() - t0:.0f}s)", flush=True)
Path(a.out).mkdir(parents=True, exist_ok=True)
(Path(a.out) / 'search.json').write_text(json.dumps(rows, indent=1))
fmt = lambda v, f: '-' if v is None else format(v, f)
print('| dist_norm | assign | codebook | beta | hard PSNR | perplexity | usage | soft-hard gap |\n|---|---|---|---|---|---|---|---|')
for r in sorted(rows, key=lambda r: -(r['test_psnr'] or 0)):
    print(f"| {r['dist_norm']} | {r['assign']} | {r['codebook_update']} | {r['beta']} | {fmt(r['test_psnr'], '.2f')} | {fmt(r['test_perplexity'], '.1f')} | {fmt(r['test_usage_rate'], '.3f')} | {fmt(r['train_soft_hard_gap'], '.3f')} |")
