"""Side by side: `vqba_nb.cvq.CVQQuantizer` against CVQ-VAE's own `VectorQuantiser` (lyndonzheng/CVQ-VAE, quantise.py).

Both start from the same codebook and a zero usage EMA, see the same batches of encoder vectors, and each takes an Adam
step on its codebook after every forward; the script prints, for every step, the largest differences of the codebooks,
usage EMAs, losses, gradients to the encoder vectors, and how many code indices differ. The reference is imported from
a checkout given by --ref (e.g. `git -C <mirror> archive HEAD | tar -x -C /tmp/cvq_ref`), never installed; `einops`,
which it imports for four axis permutations, is stubbed when missing. Anchors: 'closest' (the reference's CIFAR-10
default) is deterministic, so both draw the same ones; 'probrandom' samples, and is not compared here.

Ties: the anchor step puts every dead code whose closest vector is the same within a few float32 ulps of it, so
exactly equal similarities are common, and the reference's `sort` (not stable by default) picks an arbitrary one of
the tied codes. The reference runs here with `sort(..., stable=True)` (the last of the tied codes, its `[-1]`), which
is the rule `vqba_nb.cvq.last_argmax` follows; `--unstable` runs it as it is.

    python scripts/refcheck_cvq.py --ref /tmp/cvq_ref
    python scripts/refcheck_cvq.py --ref /tmp/cvq_ref --train ../shared/data   # the study model trained with each, side by side
"""
from __future__ import annotations
import argparse, contextlib, copy, sys, types
import torch
from refcheck_train import add_train_args, train_side_by_side


def stub_einops():
    "A stand-in for `einops.rearrange` on pure axis permutations ('b c h w -> b h w c'), all that quantise.py uses."
    def rearrange(x, pattern):
        src, dst = (s.split() for s in pattern.split('->'))
        return x.permute(*[src.index(a) for a in dst])
    sys.modules['einops'] = types.SimpleNamespace(rearrange=rearrange)


class stable_sort:
    "Within it, `Tensor.sort` is stable: among equal values the reference's `sort(...)[1][-1]` is the last index."
    def __enter__(self):
        self.orig = torch.Tensor.sort
        torch.Tensor.sort = lambda t, dim=-1, descending=False: self.orig(t, dim=dim, descending=descending, stable=True)
    def __exit__(self, *exc): torch.Tensor.sort = self.orig


def batches(n:int, B:int, D:int, seed:int):
    "`n` batches of latents (B,D,8,8): a few clusters, so that some codes get busy and others stay unused."
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(8, D, generator=g) * 2
    for _ in range(n):
        pick = torch.randint(8, (B, 8, 8), generator=g)
        yield (centres[pick] + 0.3 * torch.randn(B, 8, 8, D, generator=g)).permute(0, 3, 1, 2).contiguous()


def compare(VectorQuantiser, distance:str, steps:int, K:int, D:int, B:int, lr:float, seed:int, resync:bool, stable:bool=True) -> list[dict]:
    """`steps` steps of both quantizers on the same batches; `resync`: before each step, ours takes the reference's codebook,
    usage EMA and Adam state, so each row is one step from the same state (no drift carried over from earlier steps)."""
    from vqba_nb.cvq import CVQQuantizer
    ours = CVQQuantizer(K, D, distance=distance, anchor='closest', seed=seed).train()
    ref = VectorQuantiser(K, D, 0.25, distance=distance, anchor='closest').train()
    with torch.no_grad(): ref.embedding.weight.copy_(ours.codebook)          # the same start; both usage EMAs are zero
    assert torch.equal(ref.embed_prob, ours.usage)
    opt_o, opt_r = torch.optim.Adam([ours.codebook], lr=lr), torch.optim.Adam(ref.parameters(), lr=lr)
    rows = []
    for t, z in enumerate(batches(steps, B, D, seed), 1):
        if resync:
            with torch.no_grad(): ours.codebook.copy_(ref.embedding.weight); ours.usage.copy_(ref.embed_prob)
            opt_o.load_state_dict(copy.deepcopy(opt_r.state_dict()))   # a copy: loading shares the tensors
        zo, zr = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
        o = ours(zo)
        with (stable_sort() if stable else contextlib.nullcontext()): zq_r, loss_r, (_, _, idx_r) = ref(zr)
        (o.z_q.square().mean() + o.loss).backward(); (zq_r.square().mean() + loss_r).backward()   # a stand-in decoder loss
        d_grad = (ours.codebook.grad - ref.embedding.weight.grad).abs().max().item()
        opt_o.step(); opt_r.step(); opt_o.zero_grad(); opt_r.zero_grad()
        rows.append({'distance': distance, 'start': 'same state' if resync else 'free-running', 'step': t, 'codes differing': int((o.indices.flatten() != idx_r).sum()),
                     'max |d codebook|': (ours.codebook - ref.embedding.weight).abs().max().item(),
                     'max |d usage|': (ours.usage - ref.embed_prob).abs().max().item(),
                     '|d loss|': (o.loss - loss_r).abs().item(), 'max |d grad z|': (zo.grad - zr.grad).abs().max().item(), 'max |d grad codebook|': d_grad,
                     'max |d z_q|': (o.z_q - zq_r).abs().max().item(), 'anchored': int(o.stats['anchored'])})
    return rows


def reference_quantizer(VectorQuantiser):
    "CVQ-VAE's own `VectorQuantiser` behind this project's quantizer interface, to train the study's model with it."
    import torch.nn.functional as F
    from vqba_nb.quantizers import Quantizer, QuantOut
    from vqba_nb.cvq import CVQQuantizer, last_argmax

    class ReferenceCVQ(Quantizer):
        def __init__(self, K:int=512, dim:int=64, commitment:float=0.25, vq_scale:float=1., decay:float=0.99, anchor_scale:float=10.,
                     anchor_eps:float=1e-3, distance:str='cos', anchor:str='closest', init:str='uniform', seed:int=0):
            super().__init__(K, dim)
            if (decay, anchor_scale, anchor_eps, init) != (0.99, 10., 1e-3, 'uniform'): raise ValueError('the reference hard-codes decay, the anchor weight and the init')
            with torch.random.fork_rng():   # its constructor draws from the global generator: leave the model's initialisation alone
                self.ref = VectorQuantiser(K, dim, commitment, distance=distance, anchor=anchor)
            with torch.no_grad(): self.ref.embedding.weight.copy_(CVQQuantizer(K, dim, seed=seed).codebook)   # the codebook ours starts from
            self.vq_scale, self.distance = vq_scale, distance

        @property
        def codebook(self): return self.ref.embedding.weight

        def nearest(self, v):   # for the dead-code diagnostic: the reference's choice, the last of the most similar codes
            e = self.codebook.detach()
            s = F.normalize(v, dim=1) @ F.normalize(e, dim=1).t() if self.distance == 'cos' else -torch.cdist(v, e)
            return last_argmax(s, 1)

        def quantize(self, v):
            with stable_sort(): zq, loss, (_, _, idx) = self.ref(v[:, :, None, None])   # (N,D) as N one-pixel maps: the same rows in the same order
            zq = zq[:, :, 0, 0]
            with torch.no_grad(): gap = (zq - v).square().mean()
            return QuantOut(zq, self.vq_scale * loss, idx, {'commitment_loss': gap, 'codebook_loss': gap})
    return ReferenceCVQ


def train_variants(VectorQuantiser) -> dict:
    "`CVQQuantizer`, the reference's quantiser behind our interface, and `CVQQuantizer` breaking ties toward the first code (as valid: how far one tie moves a run)."
    import vqba_nb.cvq as cvq_module
    from vqba_nb.cvq import CVQQuantizer
    class FirstTies(CVQQuantizer):
        def quantize(self, v):
            last, cvq_module.last_argmax = cvq_module.last_argmax, lambda s, dim: s.argmax(dim)
            try: return super().quantize(v)
            finally: cvq_module.last_argmax = last
    return {'cvq': CVQQuantizer, 'cvq_reference': reference_quantizer(VectorQuantiser), 'cvq_first_ties': FirstTies}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--ref', required=True, help='folder holding the reference checkout (quantise.py)')
    p.add_argument('--steps', type=int, default=5)
    p.add_argument('--K', type=int, default=512)
    p.add_argument('--dim', type=int, default=64)
    p.add_argument('--batch', type=int, default=32, help='images per batch: batch x 8 x 8 encoder vectors')
    p.add_argument('--lr', type=float, default=3e-4, help="Adam's learning rate on the codebook (the reference's)")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--unstable', action='store_true', help="run the reference's sort as it is (ties broken arbitrarily)")
    add_train_args(p)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    try: import einops  # noqa: F401
    except ImportError: stub_einops()
    sys.path.insert(0, a.ref)
    from quantise import VectorQuantiser
    if a.train: return train_side_by_side('configs/cvq.yaml', train_variants(VectorQuantiser), a.train, a.images, a.epochs, a.test_images, a.seed)
    rows = [r for resync in (False, True) for d in ('cos', 'l2') for r in compare(VectorQuantiser, d, a.steps, a.K, a.dim, a.batch, a.lr, a.seed, resync, not a.unstable)]
    cols = list(rows[0])
    print('| ' + ' | '.join(cols) + ' |'); print('|' + '---|' * len(cols))
    for r in rows: print('| ' + ' | '.join(f'{r[c]:.2e}' if isinstance(r[c], float) else str(r[c]) for c in cols) + ' |')
    return rows


if __name__ == '__main__': main()
