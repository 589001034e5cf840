"""The quantizers as a library, as a researcher uses them in their own model: the top-level imports, every layout,
clear errors for wrong input."""
import subprocess, sys
import pytest, torch
import vqba_nb
from vqba_nb import (QUANTIZERS, build_quantizer, quantizer_keys, QuantOut, BAQuantizer, VQEMAQuantizer, FSQQuantizer,
                     GumbelQuantizer, SimVQQuantizer)

LAYOUTS = {'maps': (2, 8, 3, 5), 'tokens': (2, 15, 8), 'vectors': (30, 8)}
KINDS = [k for k in QUANTIZERS if k != 'gumbel']   # Gumbel reads the encoder's feature maps: 4-d only (tested below)


def make(kind, **kw):
    cfg = {'type': kind, 'K': 64, 'dim': 8, **kw}
    if kind == 'fsq': cfg['levels'] = [4, 4, 4]
    return build_quantizer(cfg)


def test_top_level_names():
    for name in ['VQEMAQuantizer', 'BAQuantizer', 'BASoftQuantizer', 'BalancedQuantizer', 'KMeansQuantizer', 'GumbelQuantizer',
                 'FSQQuantizer', 'RotationQuantizer', 'SimVQQuantizer', 'CVQQuantizer', 'IdentityQuantizer', 'QuantOut',
                 'build_quantizer', 'quantizer_keys', 'QUANTIZERS']:
        assert hasattr(vqba_nb, name), name
    assert set(type(build_quantizer({'type': k})).__name__ for k in QUANTIZERS) <= set(dir(vqba_nb))   # every registered class is exported


def test_importing_the_quantizers_loads_no_study_code():
    code = ('import sys, vqba_nb; from vqba_nb import VQEMAQuantizer; '
            "bad = [m for m in sys.modules if m.split('.')[0] == 'matplotlib' or m in "
            "('vqba_nb.analysis', 'vqba_nb.report', 'vqba_nb.verdict', 'vqba_nb.rd_study', 'vqba_nb.sweep', 'vqba_nb.bench', 'vqba_nb.train')]; "
            'print(bad); sys.exit(bool(bad))')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('layout', LAYOUTS)
def test_every_layout(kind, layout):
    shape = LAYOUTS[layout]
    q = make(kind)
    q.set_progress(0.5)                                   # as a training loop does before each step
    for mode in ('train', 'eval'):
        getattr(q, mode)()
        z = torch.randn(shape, generator=torch.Generator().manual_seed(0), requires_grad=True)
        out = q(z)
        assert isinstance(out, QuantOut)
        assert out.z_q.shape == z.shape, (mode, out.z_q.shape)
        want = shape[:1] + shape[2:] if layout == 'maps' else shape[:-1]
        assert out.indices.shape == want and out.indices.dtype == torch.long, (mode, out.indices.shape)
        assert 0 <= int(out.indices.min()) and int(out.indices.max()) < q.K
        (out.z_q.square().sum() + out.loss).backward()
        assert z.grad is not None and torch.isfinite(z.grad).all()


@pytest.mark.parametrize('kind', [k for k in KINDS if k not in ('identity', 'fsq', 'simvq')])
def test_layouts_quantize_alike(kind):
    "The same vectors give the same codes whether they come as maps, tokens or vectors (eval mode: no state changes)."
    q = make(kind, init='normal') if 'init' in quantizer_keys(kind) and kind != 'cvq' else make(kind)
    q.eval()
    maps = torch.randn(2, 8, 3, 5, generator=torch.Generator().manual_seed(1))
    v = maps.permute(0, 2, 3, 1).reshape(-1, 8)
    a, b, c = q(maps), q(v.reshape(2, 15, 8)), q(v)
    assert torch.equal(a.indices.flatten(), c.indices) and torch.equal(b.indices.flatten(), c.indices)
    assert torch.allclose(a.z_q.permute(0, 2, 3, 1).reshape(-1, 8), c.z_q)


def test_wrong_input_says_what_is_wrong():
    q = VQEMAQuantizer(K=16, dim=8)
    with pytest.raises(ValueError, match=r'dim=8, but the input of shape \(2, 16, 4, 4\) has 16 channels'): q(torch.randn(2, 16, 4, 4))
    with pytest.raises(ValueError, match='has 7 channels'): q(torch.randn(3, 5, 7))
    with pytest.raises(ValueError, match='got a 5-d tensor'): q(torch.randn(1, 8, 2, 2, 2))
    with pytest.raises(TypeError, match='floating-point'): q(torch.ones(4, 8, dtype=torch.long))
    with pytest.raises(TypeError, match="BAQuantizer argument 'K' must be int, got str '512'"): BAQuantizer(K='512')
    with pytest.raises(TypeError, match="VQEMAQuantizer argument 'decay' must be float"): VQEMAQuantizer(decay='fast')
    with pytest.raises(ValueError, match=r'GumbelQuantizer reads \(B,128,H,W\) feature maps'): GumbelQuantizer(K=16, dim=8)(torch.randn(10, 8))
    with pytest.raises(ValueError, match="quantizer.type' must be one of"): build_quantizer({'type': 'vq'})


def test_fsq_levels_define_K():
    assert FSQQuantizer(levels=[8, 5, 5, 5], dim=8).K == 1000
    with pytest.raises(ValueError, match='make 512 codes, not K=256'): FSQQuantizer(K=256, levels=[8, 8, 8])


def test_annealed_quantizers_follow_set_progress():
    "BA-VQ's beta moves only when the training loop calls set_progress: the library's contract, stated in the quantizers notebook."
    q = BAQuantizer(K=16, dim=8, beta_start=10., beta_end=1000.)
    assert float(q.beta) == 10.
    q.set_progress(0.5); assert float(q.beta) == pytest.approx(505.)
    q.set_progress(1.0); assert float(q.beta) == pytest.approx(1000.)


def test_simvq_codes_move_together():
    q = SimVQQuantizer(K=16, dim=8).train()
    out = q(torch.randn(40, 8))
    out.loss.backward()
    assert q.proj.weight.grad is not None and q.proj.weight.grad.abs().sum() > 0   # one linear map trains every code


def test_the_readme_example_runs():
    "The README's library example, as a reader copies it."
    import re
    from pathlib import Path
    text = (Path(__file__).resolve().parent.parent / 'README.md').read_text()
    blocks = [b for b in re.findall(r'``` ?python\n(.*?)```', text, re.S) if 'from vqba_nb import' in b]
    assert blocks, 'the README shows no library example'
    ns = {}
    exec(blocks[0], ns)
    assert ns['out'].z_q.shape == (16, 10, 64) and ns['out'].indices.shape == (16, 10)
    assert type(ns['q']).__name__ == 'BAQuantizer' and ns['q'].K == 256 and float(ns['q'].beta) > ns['q'].beta_start   # annealed


def test_an_annealed_quantizer_says_once_when_set_progress_is_missing():
    q = BAQuantizer(K=16, dim=8).train()
    with pytest.warns(UserWarning, match=r'BAQuantizer anneals with set_progress\(frac\), which has not been called'):
        q(torch.randn(20, 8))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        q(torch.randn(20, 8))                                        # once only
        BAQuantizer(K=16, dim=8, schedule='constant').train()(torch.randn(20, 8))   # nothing to anneal: no warning
        p = BAQuantizer(K=16, dim=8).train(); p.set_progress(0.); p(torch.randn(20, 8))   # called: no warning
        VQEMAQuantizer(K=16, dim=8).train()(torch.randn(20, 8))


def test_non_finite_input_is_named():
    z = torch.randn(10, 8); z[3, 2] = float('inf')
    with pytest.raises(ValueError, match='1 NaN or infinite values'): VQEMAQuantizer(K=16, dim=8)(z)


def test_inside_the_vqvae_non_finite_steps_are_the_training_loops():
    "train.on_nonfinite (stop or skip) decides about a NaN step, so a quantizer inside VQVAE passes it on instead of raising."
    from vqba_nb.model import VQVAE
    q = VQEMAQuantizer(K=16, dim=8)
    VQVAE(q, n_hid=16, n_res=1)
    z = torch.randn(2, 8, 2, 2); z[0, 0, 0, 0] = float('nan')
    assert not torch.isfinite(q.train()(z).z_q).all()
