#!/usr/bin/env python
"""Side by side: vqba_nb's SimVQQuantizer against the authors' SimVQ, on the same C, W, b and random inputs.

    git -C /work/.mirror/youngsheen+SimVQ/repo archive d8bd94d taming/modules/vqvae/quantize.py | tar -x -C /tmp/simvq_ref
    python -m pip install --target /tmp/refdeps_simvq einops          # the reference's one import this venv lacks
    python scripts/refcheck_simvq.py --ref /tmp/simvq_ref --deps /tmp/refdeps_simvq
    python scripts/refcheck_simvq.py --ref /tmp/simvq_ref --deps /tmp/refdeps_simvq --train ../shared/data   # the study model trained with each

The reference's module (github.com/youngsheen/SimVQ, taming/modules/vqvae/quantize.py) is loaded from its file alone:
it imports only torch, numpy and einops, so nothing is stubbed. Each case builds both quantizers, copies ours' C, W and
b into the reference's `embedding` and `embedding_proj`, runs both on the same z (B,D,H,W) and backpropagates the same
total, sum(z_q * g) for a random upstream gradient g plus the quantizer's loss. It prints a markdown table of the
largest absolute differences: indices, decoder input z_q, loss, and the gradients to z, W and b; then the largest
difference between the two codebooks C W^T + b after a few Adam steps on fresh batches. `legacy` is the reference's
flag: False (its ImageNet config) puts beta on the encoder's term, as our commitment=0.25, codebook_weight=1;
True (its class default) puts it on the codebook term, as our commitment=1, codebook_weight=0.25.
"""
import argparse, importlib.util, sys
from pathlib import Path
import torch
from refcheck_train import add_train_args

p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
p.add_argument('--ref', required=True, help='folder holding taming/modules/vqvae/quantize.py of the reference')
p.add_argument('--deps', help='folder of the reference\'s extra pure-Python packages (einops), put first on sys.path')
p.add_argument('--steps', type=int, default=20, help='Adam steps of the training comparison')
add_train_args(p)
a = p.parse_args()
torch.set_num_threads(1)
if a.deps: sys.path.insert(0, a.deps)
path = Path(a.ref) / 'taming' / 'modules' / 'vqvae' / 'quantize.py'
if not path.is_file(): sys.exit(f'error: {path} not found: extract the reference there first (see --help)')
spec = importlib.util.spec_from_file_location('simvq_reference', path)
ref_mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(ref_mod)
from vqba_nb.simvq import SimVQQuantizer


def reference_quantizer():
    "The authors' `SimVQ` behind this project's quantizer interface (its ImageNet config: legacy false, beta 0.25), holding our C, W and b."
    from vqba_nb.quantizers import Quantizer, QuantOut
    class ReferenceSimVQ(Quantizer):
        def __init__(self, K:int=512, dim:int=64, commitment:float=0.25, codebook_weight:float=1., bias:bool=True, seed:int=0):
            super().__init__(K, dim)
            if (commitment, codebook_weight, bias) != (0.25, 1., True): raise ValueError("the reference's config is commitment 0.25, codebook_weight 1, a bias")
            ours = SimVQQuantizer(K, dim, seed=seed)
            with torch.random.fork_rng(devices=[]): self.ref = ref_mod.SimVQ(K, dim, beta=0.25, legacy=False)   # its draws stay off the global generator
            with torch.no_grad():
                self.ref.embedding.weight.copy_(ours.frozen_codebook)
                self.ref.embedding_proj.weight.copy_(ours.proj.weight); self.ref.embedding_proj.bias.copy_(ours.proj.bias)
        @property
        def codebook(self): return self.ref.embedding_proj(self.ref.embedding.weight)
        def quantize(self, v):
            (z_q, _, idx), parts = self.ref(v[:, :, None, None])   # (N,D) as N one-pixel maps
            z_q = z_q[:, :, 0, 0]
            with torch.no_grad(): gap = (z_q - v).square().mean()
            return QuantOut(z_q, parts.commitment, idx.flatten(), {'commitment_loss': gap})
    return ReferenceSimVQ


if a.train:
    from refcheck_train import train_side_by_side
    train_side_by_side('configs/simvq.yaml', {'simvq': SimVQQuantizer, 'simvq_reference': reference_quantizer()}, a.train, a.images, a.epochs, a.test_images, seed=0)   # the study's seed 0
    sys.exit(0)


def pair(K, D, legacy, seed, dtype):
    "Ours and the reference's quantizer with the same C, W and b (ours' seeded draw), in `dtype`."
    ours = SimVQQuantizer(K, D, commitment=1. if legacy else 0.25, codebook_weight=0.25 if legacy else 1., seed=seed).to(dtype)
    ref = ref_mod.SimVQ(K, D, beta=0.25, legacy=legacy).to(dtype)
    with torch.no_grad():
        ref.embedding.weight.copy_(ours.frozen_codebook)
        ref.embedding_proj.weight.copy_(ours.proj.weight); ref.embedding_proj.bias.copy_(ours.proj.bias)
    return ours, ref


def run_ours(q, z, g):
    z = z.clone().requires_grad_(True)
    out = q(z)
    ((out.z_q * g).sum() + out.loss).backward()
    return out.z_q.detach(), out.indices.flatten(), out.loss.detach(), z.grad, q.proj.weight.grad, q.proj.bias.grad


def run_ref(q, z, g):
    z = z.clone().requires_grad_(True)
    (z_q, _, idx), parts = q(z)
    ((z_q * g).sum() + parts.commitment).backward()
    return z_q.detach(), idx.flatten(), parts.commitment.detach(), z.grad, q.embedding_proj.weight.grad, q.embedding_proj.bias.grad


def maxdiff(x, y): return (x.double() - y.double()).abs().max().item()


print(f'reference: {path}; torch {torch.__version__}\n')
print('| legacy | dtype | K | D | z (B,D,H,W) x scale | codes used | indices differing | max abs diff z_q | abs diff loss | max abs diff dL/dz | max abs diff dL/dW | max abs diff dL/db |')
print('|---|---|---|---|---|---|---|---|---|---|---|---|')
for legacy in (False, True):
    for dtype in (torch.float32, torch.float64):
        for K, D, shape, scale in [(512, 64, (16, 64, 8, 8), 1.), (512, 64, (16, 64, 8, 8), 0.1), (64, 8, (4, 8, 5, 5), 1.)]:
            ours, ref = pair(K, D, legacy, 0, dtype)
            gen = torch.Generator().manual_seed(K + D)
            z = scale * torch.randn(shape, generator=gen).to(dtype); g = torch.randn(shape, generator=gen).to(dtype)
            o, r = run_ours(ours, z, g), run_ref(ref, z, g)
            nidx = int((o[1] != r[1]).sum())
            d = [maxdiff(x, y) for x, y in zip(o, r) if x.is_floating_point()]
            print(f'| {legacy} | {str(dtype)[6:]} | {K} | {D} | {shape} x {scale:g} | {o[1].unique().numel()} | {nidx} of {o[1].numel()} | '
                  + ' | '.join(f'{x:.1e}' for x in d) + ' |')

print(f'\nTraining: {a.steps} Adam steps (lr 1e-3) of each quantizer alone on fresh batches z (16,64,8,8), loss sum(z_q * g) + its loss.\n')
print('| legacy | dtype | indices differing, all steps | max abs diff C W^T + b after | max abs code change (ours) |')
print('|---|---|---|---|---|')
for legacy in (False, True):
    for dtype in (torch.float32, torch.float64):
        ours, ref = pair(512, 64, legacy, 1, dtype)
        e0 = ours.codebook.detach().clone()
        opts = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in (ours, ref)]   # ref's C has requires_grad False: Adam skips it
        gen, nidx = torch.Generator().manual_seed(7), 0
        for _ in range(a.steps):
            z = torch.randn(16, 64, 8, 8, generator=gen).to(dtype); g = torch.randn(16, 64, 8, 8, generator=gen).to(dtype)
            for opt in opts: opt.zero_grad()
            o, r = run_ours(ours, z, g), run_ref(ref, z, g)
            nidx += int((o[1] != r[1]).sum())
            for opt in opts: opt.step()
        e_ref = ref.embedding_proj(ref.embedding.weight).detach()
        print(f'| {legacy} | {str(dtype)[6:]} | {nidx} | {maxdiff(ours.codebook.detach(), e_ref):.1e} | {maxdiff(ours.codebook.detach(), e0):.1e} |')
