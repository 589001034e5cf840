#!/usr/bin/env python
"""Side by side: lucidrains' rotation trick (vector-quantize-pytorch `rotate_to`) and `vqba_nb.rotation.rotation_trick`.

    python scripts/refcheck_rotation.py --ref /tmp/vqp_ref --ref /tmp/refdeps_rot [--n 10000] [--dim 64] [--seed 0]

Each --ref is appended to sys.path: an extracted checkout of the reference (the folder holding `vector_quantize_pytorch/`),
or a `pip install --target` folder with the package and/or its dependencies (einops, einx). Both functions get the same
tensors e (encoder vectors, with gradient) and q (codes); the script prints, per case and dtype, the largest differences
of the forward output and of the gradient to e for a random upstream gradient g, and the distance of each to the
truth λ Rᵀ g computed in float64 from the plane rotation (Rodrigues). A tool for the notebook 02f_rotation, not a test:
neither the package nor the tests import it.
"""
from __future__ import annotations
import argparse, datetime, math, sys
import torch


def cases(n: int, D: int, g: torch.Generator) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    "[(name, e (m,D), q (m,D))] in float64: generic pairs and the edge cases, n rows in all."
    m = max(n // 25, 1)                                                     # rows per edge case (400 of 10,000)
    rn = lambda k, s=1.: torch.randn(k, D, generator=g, dtype=torch.float64) * s
    logu = lambda k, lo, hi: torch.exp(torch.empty(k, 1, dtype=torch.float64).uniform_(math.log(lo), math.log(hi), generator=g))
    q = lambda k: rn(k) * logu(k, 0.1, 10)
    out = []
    qq = q(m); out.append(('e = q', qq.clone(), qq))
    qq = q(m); out.append(('e = c q, c in [0.01, 100]', qq * logu(m, 0.01, 100), qq))
    qq = q(m); out.append(('e = -c q (opposite)', -qq * logu(m, 0.01, 100), qq))
    qq = q(m); out.append(('e = -q + 1e-3 noise', -qq + 1e-3 * qq.norm(dim=1, keepdim=True) * rn(m) / math.sqrt(D), qq))
    qq = q(m); out.append(('||e|| in [1e-5, 1e-2]', rn(m) / math.sqrt(D) * logu(m, 1e-5, 1e-2), qq))
    qq = q(m); out.append(('||e|| in [1e-10, 1e-7] (< tol)', rn(m) / math.sqrt(D) * logu(m, 1e-10, 1e-7), qq))
    k = n - 6 * m
    out.insert(0, ('generic: e, q ~ N(0, s^2), s in [0.1, 10]', rn(k) * logu(k, 0.1, 10), q(k)))
    return out


def truth(e: torch.Tensor, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    "λ Rᵀ g in float64 (λ = ||q||/||e|| unclamped, R the plane rotation by the angle between e and q); NaN where e = -c q."
    e, q, g = e.double(), q.double(), g.double()
    u, qh = e / e.norm(dim=1, keepdim=True), q / q.norm(dim=1, keepdim=True)
    c = (u * qh).sum(1, keepdim=True)
    w = qh - c * u
    s = w.norm(dim=1, keepdim=True)
    w = torch.where(s > 0, w / s, torch.zeros_like(w))                     # e = c q (c > 0): R = I
    ug, wg = (u * g).sum(1, keepdim=True), (w * g).sum(1, keepdim=True)
    rtg = g + s * (u * wg - w * ug) + (c - 1) * (u * ug + w * wg)          # Rᵀ g, R = I + s (w uᵀ - u wᵀ) + (c - 1)(u uᵀ + w wᵀ)
    rtg = torch.where((c < -1 + 1e-12) & (s < 1e-6), torch.full_like(rtg, math.nan), rtg)   # exactly opposite: no unique rotation
    return q.norm(dim=1, keepdim=True) / e.norm(dim=1, keepdim=True) * rtg


def run(fn, e: torch.Tensor, q: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    "Forward output of fn(e, q) and the gradient of <output, g> to e."
    e = e.clone().requires_grad_(True)
    out = fn(e, q)
    out.backward(g)
    return out.detach(), e.grad


def rel(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> float:
    "max over rows of ||a - b|| / scale (NaN rows skipped; nan if none is left)."
    r = ((a.double() - b.double()).norm(dim=1) / scale)
    r = r[~torch.isnan(r)]
    return r.max().item() if len(r) else math.nan


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--ref', action='append', required=True, help='a folder to append to sys.path (the reference checkout, its dependencies); repeatable')
    p.add_argument('--n', type=int, default=10000, help='vectors in all (default 10,000)')
    p.add_argument('--dim', type=int, default=64, help='their dimension (default 64, the study\'s)')
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(1)
    sys.path.extend(a.ref)                                                  # after the venv's own packages
    from vector_quantize_pytorch.vector_quantize_pytorch import rotate_to
    import vector_quantize_pytorch
    from vqba_nb.rotation import rotation_trick
    print(f'reference: {vector_quantize_pytorch.__file__}; ours: vqba_nb.rotation.rotation_trick; torch {torch.__version__}; '
          f'{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; n={a.n}, dim={a.dim}, seed={a.seed}')
    print('command: python ' + ' '.join(sys.argv))
    g0 = torch.Generator().manual_seed(a.seed)
    rows = []
    for name, e64, q64 in cases(a.n, a.dim, g0):
        up64 = torch.randn(e64.shape, generator=g0, dtype=torch.float64)
        for dt in (torch.float64, torch.float32):
            e, q, up = e64.to(dt), q64.to(dt), up64.to(dt)
            f_ref, g_ref = run(rotate_to, e, q, up)
            f_our, g_our = run(rotation_trick, e, q, up)
            t = truth(e, q, up)                                             # of the inputs as rounded to dt
            scale = q.double().norm(dim=1) / e.double().norm(dim=1).clamp_min(1e-6) * up.double().norm(dim=1)   # λ ||g||, λ clamped as both clamp it
            rows.append((name, len(e), str(dt).split('.')[1], (f_ref - f_our).abs().max().item(), (f_our - q).abs().max().item(),
                         (f_ref - q).abs().max().item(), (g_ref - g_our).abs().max().item(), rel(g_ref, g_our, scale),
                         rel(g_our, t, scale), rel(g_ref, t, scale)))
    print('\n| case | n | dtype | fwd max abs(ref - ours) | fwd max abs(ours - q) | fwd max abs(ref - q) | grad max abs(ref - ours) '
          '| grad rel(ref, ours) | grad rel(ours, truth) | grad rel(ref, truth) |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    for r in rows: print(f'| {r[0]} | {r[1]} | {r[2]} | ' + ' | '.join(f'{x:.1e}' for x in r[3:]) + ' |')
    print('\nrel(a, b): max over vectors of ||a - b|| / (λ ||g||), λ = ||q|| / max(||e||, 1e-6); truth: λ Rᵀ g in float64 with the '
          'unclamped λ and R the plane rotation (nan: e exactly opposite q, where no rotation is unique).')


if __name__ == '__main__': main()
