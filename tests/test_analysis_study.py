"""The study's analysis, end to end: `scripts/analyze.py --results` on synthetic run records of several arms (tables,
figures, clean errors), and the pieces that can be checked by hand (Holm's adjustment, epochs to X% of K used, the
arm of each of the study's configs)."""
from __future__ import annotations
import dataclasses, json, math, re, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats
from conftest import REPO, _env, assert_user_error
from vqba_nb.analysis import arm_of, epochs_to, find_runs, holm
from vqba_nb.data import CIFAR_VAR

ANALYZE = REPO / 'scripts' / 'analyze.py'
FIGURES = ['curves.png', 'rate_distortion.png', 'frontier.png', 'code_usage.png', 'ba_schedule.png', 'reconstructions.png']


def analyze(args, cwd, timeout=120):
    return subprocess.run([sys.executable, str(ANALYZE), *map(str, args)], cwd=cwd, env=_env({'MPLBACKEND': 'Agg'}),
                          capture_output=True, text=True, timeout=timeout)


def record(root: Path, name: str, q: dict, seed: int, psnr: float, ppl: float, dead: list[int], secs: float = 100., epochs: int = 10):
    "A synthetic record like the study's: PSNR and perplexity rise linearly to `psnr` and `ppl` at the last epoch."
    d = root / name
    d.mkdir(parents=True)
    K = q['K']
    cfg = {'name': f'study/{name}', 'data': {'batch_size': 128}, 'quantizer': q, 'train': {'epochs': epochs, 'seed': seed}}
    (d / 'config.yaml').write_text(yaml.safe_dump(cfg))
    lines = []
    for e in range(epochs):
        p = psnr - (epochs - 1 - e) * 0.3
        m = {'epoch': e + 1, 'step': 390 * (e + 1), 'train_loss': 0.1 / (e + 1), 'test_recon_loss': 10 ** (-p / 10) / (2 * CIFAR_VAR),
             'test_psnr': p, 'test_perplexity': ppl * (e + 1) / epochs, 'test_usage_rate': (K - dead[e]) / K, 'test_dead_codes': dead[e],
             'skipped_batches': 0, 'epoch_time_s': secs}
        if q['type'] == 'ba': m.update(train_beta=10. + 100 * e, train_rate=0.5 * e)
        lines.append(json.dumps(m))
    (d / 'metrics.jsonl').write_text('\n'.join(lines) + '\n')
    (d / 'code_counts.json').write_text(json.dumps([max(0, 100 - k) for k in range(K)]))
    (d / 'record.json').write_text(json.dumps({'run': f'study/{name}', 'epochs': epochs, 'recorded': '2026-11-29 00:00:00',
                                               'provenance': [{'what': 'start', 'machine': 'test machine, 2 CPUs', 'code': 'abc1234'}]}))
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    plt.imsave(d / 'reconstructions.png', np.full((70, 546, 3), 0.5))
    return d


def fill(dead_end: int, epochs: int = 10) -> list[int]:
    "Dead codes falling linearly from 400 to `dead_end` over the epochs."
    return [round(400 + (dead_end - 400) * e / (epochs - 1)) for e in range(epochs)]


VQ_PSNR, BA_PSNR = [24.5, 24.6, 24.4], [23.7, 23.9, 23.5]


@pytest.fixture(scope='module')
def study(tmp_path_factory) -> Path:
    "3 seeds of VQ-EMA and BA-VQ, one of every other arm, 2 frontier runs, the continuous model: K=512."
    root = tmp_path_factory.mktemp('rec') / 'results' / 'study'
    ba = {'type': 'ba', 'K': 512, 'q_mode': 'batch', 'schedule': 'linear'}
    for s in range(3):
        record(root, f'vqema-K512-s{s}', {'type': 'vqema', 'K': 512}, s, VQ_PSNR[s], 400. + 10 * s, fill(0))
        record(root, f'ba-K512-s{s}', ba, s, BA_PSNR[s], 130. + 5 * s, fill(360), secs=130.)
    record(root, 'identity-K512-s0', {'type': 'identity', 'K': 512}, 0, 26.0, 1., fill(500))
    record(root, 'vqema_restart-K512-s0', {'type': 'vqema', 'K': 512, 'restart_threshold': 1.0}, 0, 24.8, 450., fill(0))
    record(root, 'kmeans-K512-s0', {'type': 'kmeans', 'K': 512}, 0, 24.0, 200., fill(200))
    record(root, 'gumbel-K512-s0', {'type': 'gumbel', 'K': 512}, 0, 22.0, 50., fill(450))
    record(root, 'ba_uniform-K512-s0', {**ba, 'q_mode': 'uniform'}, 0, 23.0, 90., fill(380))
    record(root, 'ba_balanced-K512-s0', {**ba, 'q_mode': 'balanced'}, 0, 23.2, 480., fill(10))
    for b, p in [(0.3, 300.), (1000.0, 100.)]:
        record(root, f'frontier-ba-K512-s0-beta_end{b}', {**ba, 'schedule': 'constant', 'beta_end': b}, 0, 21., p, fill(300, 3), epochs=3)
    return root


def test_analyze_results_end_to_end(study, tmp_path):
    import time
    t0 = time.time()
    r = analyze(['--results', study], tmp_path)
    assert r.returncode == 0, r.stderr
    assert time.time() - t0 < 60
    out = study / 'analysis'
    assert set(FIGURES) | {'report.md'} <= {p.name for p in out.iterdir()}
    rep = (out / 'report.md').read_text()
    assert r.stdout.startswith(rep.rstrip('\n')[:200])
    assert not re.search(r'\bnan\b|\binf\b', rep)   # numbers print n/a, never nan
    # per-K statistics: seeds, epochs and intervals over the 3 seeds; the ceiling has no codebook cells
    assert '| VQ-EMA K=512 | 3 | 10 | 410 [' in rep and '| BA-VQ K=512 | 3 | 10 | 135 [' in rep
    assert '| continuous K=512 | 1 | 10 | — | — | — | 26 |' in rep and '| k-means VQ-VAE K=512 | 1 | 10 | 200 | 312 | 200 | 24 |' in rep
    # against VQ-EMA: Welch p and Holm p (a family of one: BA-VQ is the only arm with 3 seeds), the 1-seed arms not evidence
    p = stats.ttest_ind(BA_PSNR, VQ_PSNR, equal_var=False).pvalue
    row = next(l for l in rep.splitlines() if l.startswith('| BA-VQ minus VQ-EMA | PSNR (dB) |'))
    assert row.split(' | ')[3:5] == [f'{p:.3g}', f'{p:.3g}'], row
    assert '| Holm p |' in rep and 'Holm family: for each K and metric' in rep
    row = next(l for l in rep.splitlines() if l.startswith('| VQ-EMA + restart minus VQ-EMA | perplexity |'))
    assert '| n/a | n/a |' in row and 'fewer than 3 seeds a side: not evidence' in row
    # utilization over training: dead codes fall 400 -> 0 over 10 epochs (used 112, 156, ..., 512), 50% (256) at epoch 5, 90% at 9
    assert '| VQ-EMA K=512 | 3 | 5 (5, 5, 5) | 9 (9, 9, 9) |' in rep and '| BA-VQ K=512 | 3 | not reached (not reached, ' in rep
    # cost: no benchmark in this folder, so no cost column; the runs' own times, 128 x 390 images per epoch in 100 s and 130 s
    assert '| VQ-EMA K=512 | 3 | n/a | 100 | 499.2 |' in rep and '| BA-VQ K=512 | 3 | n/a | 130 | 384 |' in rep and 'No benchmark given' in rep
    assert '`test machine, 2 CPUs`' in rep
    # the seed's bars
    bars = rep.split("## The seed's bars")[1].split('##')[0]
    assert '| VQ-EMA K=512, 10 epochs: perplexity 250-350 | 410 [' in bars and bars.count('**not met**') == 3 and bars.count('**met**') == 1
    assert "the continuous model (no quantizer) reaches 26.00 dB at 10 epochs (n=1): the architecture's ceiling on this budget is below the bar" in bars
    assert 'BA-VQ leaves 360 of 512 codes dead at epoch 10 (VQ-EMA: 0)' in bars
    # the frontier
    assert '| 0.3 | 1 | 3 | 300 | 8.23 | 212 of 512 | 21.00 |' in rep and '| 1000 | 1 | 3 | 100 |' in rep
    # the verdict: significant where 3 seeds a side allow it, hedged elsewhere, and what is pending
    v = rep.split('## Verdict')[1]
    assert '- K=512, perplexity: VQ-EMA ahead (BA-VQ minus VQ-EMA = -275, 95% CI [' in v and 'significant (Holm-adjusted Welch p' in v
    assert "BA-VQ takes 1.30x VQ-EMA's wall time per epoch" in v
    assert 'VQ-EMA + restart minus BA-VQ = +315' in v and 'a first look, not evidence' in v
    assert '- pending: VQ-EMA + restart K=512 seed(s) 1, 2; k-means VQ-VAE K=512 seed(s) 1, 2; FSQ K=512 (none yet); VQ-EMA + rotation trick K=512 (none yet);' in v
    assert 'Perplexity goes from 300 at beta=0.3 to 100 at beta=1000' in v


def test_analyze_results_out_and_one_seed(tmp_path):
    "One seed per arm: everything still builds, nothing is called significant, --out puts the files elsewhere."
    root = tmp_path / 'rec'
    record(root, 'vqema-K512-s0', {'type': 'vqema', 'K': 512}, 0, 24.5, 417., fill(0))
    record(root, 'ba-K512-s0', {'type': 'ba', 'K': 512}, 0, 23.7, 132., fill(363), secs=130.)
    (tmp_path / 'benchmarks').mkdir()   # the newest benchmark in ./benchmarks is the cost: BA-VQ 1.25x VQ-EMA's time per image
    (tmp_path / 'benchmarks' / '2026-12-02-x.json').write_text(json.dumps({'machine': 'bench box', 'data': 'CIFAR-10',
        'quantizer_configs': {'vqema': {'K': 512}, 'ba': {'K': 512}}, 'runs': {'project vqema': {'images_per_s': 500.}, 'project ba': {'images_per_s': 400.}}}))
    r = analyze(['--results', root, '--out', tmp_path / 'out'], tmp_path)
    assert r.returncode == 0, r.stderr
    assert '| BA-VQ K=512 | 1 | 1.25 | 130 | 384 |' in r.stdout and '`bench box`, CIFAR-10 images' in r.stdout
    assert "VQ-EMA trains 500 images/s, BA-VQ 400 with its closed-form step, so 1.25x VQ-EMA's time per image" in r.stdout
    assert not (root / 'analysis').exists() and r.stdout.rstrip().endswith(f"written to {tmp_path / 'out'}")
    rep = (tmp_path / 'out' / 'report.md').read_text()
    assert 'significant' not in rep.replace('not significant', '') and 'not evidence' in rep and not re.search(r'\bnan\b', rep)
    assert '- pending: VQ-EMA K=512 seed(s) 1, 2; BA-VQ K=512 seed(s) 1, 2.' in rep
    assert 'the continuous (identity) run at 10 epochs, the ceiling of the architecture, is pending' in rep
    assert 'pending: the frontier needs at least two constant-beta BA-VQ records' in rep
    assert {'curves.png', 'rate_distortion.png', 'reconstructions.png'} <= {p.name for p in (tmp_path / 'out').iterdir()}


def test_analyze_results_bad_input(tmp_path):
    r = analyze(['--results', tmp_path / 'nope'], tmp_path)
    assert_user_error(r.returncode, r.stderr, 'not found')
    (tmp_path / 'empty').mkdir()
    r = analyze(['--results', tmp_path / 'empty'], tmp_path)
    assert_user_error(r.returncode, r.stderr, 'no runs or records')
    d = record(tmp_path / 'rec', 'vqema-K512-s0', {'type': 'vqema', 'K': 512}, 0, 24.5, 417., fill(0))
    (d / 'config.yaml').write_text('quantizer: {type: vqema, K: [\n')
    r = analyze(['--results', tmp_path / 'rec'], tmp_path)
    assert_user_error(r.returncode, r.stderr, 'config.yaml is not valid YAML')
    (d / 'config.yaml').write_text('- a list\n')
    assert_user_error(*(lambda r: (r.returncode, r.stderr))(analyze(['--results', tmp_path / 'rec'], tmp_path)), 'not a run config')
    r = analyze(['--results', tmp_path / 'rec', '--experiment', 'x'], tmp_path)
    assert_user_error(r.returncode, r.stderr, 'not allowed with')


def test_analyze_help_shows_defaults(tmp_path):
    r = analyze(['--help'], tmp_path)
    text = ' '.join(r.stdout.split())
    assert r.returncode == 0 and '--results DIR [DIR ...] folder(s) of committed run records' in text and 'the first makes the tables and verdict' in text and '(default: experiments)' in text, r.stdout
    assert '--out DIR folder for report.md, rd.json and the PNGs (default: <experiment or results folder>/analysis;' in text, r.stdout


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; running max 0.02, 0.03, 0.06, 0.06
    assert np.allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    h = holm([math.nan, 0.02, 0.04, 0.9])              # m = 3: 0.06, 0.08, 0.9
    assert math.isnan(h[0]) and np.allclose(h[1:], [0.06, 0.08, 0.9])
    assert np.allclose(holm([0.6, 0.7]), [1.0, 1.0])   # capped at 1
    assert (holm([0.001, 0.2, 0.02]) >= [0.001, 0.2, 0.02]).all()


def test_epochs_to_by_hand(tmp_path):
    # K = 8: dead 6, 4, 3, 0 -> used 2, 4, 5, 8: 50% (4 codes) at epoch 2, 90% (7.2) at epoch 4; dead 6, 4, 3, 2: 90% never
    record(tmp_path, 'a', {'type': 'vqema', 'K': 8}, 0, 20., 4., [6, 4, 3, 0], epochs=4)
    record(tmp_path, 'b', {'type': 'vqema', 'K': 8}, 1, 20., 4., [6, 4, 3, 2], epochs=4)
    a, b = find_runs(tmp_path)
    assert [epochs_to(a, 0.5), epochs_to(a, 0.9), epochs_to(b, 0.5), epochs_to(b, 0.9)] == [2, 4, 2, None]
    assert epochs_to(a, 0.25) == 1 and epochs_to(a, 1.0) == 4


def test_arms_of_the_study_configs():
    "Each of the study's 53 runs is classified from its resolved config, and the arm matches the run's name."
    from vqba_nb.sweep import expand_sweep
    runs = expand_sweep(REPO / 'sweeps' / 'study.yaml')
    for name, cfg in runs:
        short = name.split('/')[-1]
        want = 'frontier' if short.startswith('frontier-') else short.split('-K')[0]
        assert arm_of(dataclasses.asdict(cfg)) == want, name
    assert {arm_of(dataclasses.asdict(c)) for _, c in runs} == {'vqema', 'ba', 'identity', 'vqema_restart', 'kmeans', 'gumbel', 'ba_balanced',
                                                                 'ba_uniform', 'ba_restart', 'fsq', 'frontier', 'vqema_rotation', 'cvq', 'simvq'}
    assert len(runs) == 53
    assert arm_of({'quantizer': {'type': 'ba', 'q_mode': 'ema'}}) == 'ba'
    assert arm_of({'quantizer': {'type': 'vqema', 'restart_threshold': 0.0}}) == 'vqema'


def test_analyze_two_record_folders_rate_distortion(study, tmp_path):
    "`--results results/study results/rd`: the curves join the K=512 seeds with the other K's; rd.json, its figure and question 9."
    rd = tmp_path / 'results' / 'rd'
    for K, ppl_v, ppl_b, pv, pb in [(128, 110., 90., 23.6, 23.4), (1024, 800., 170., 25.0, 23.9)]:
        record(rd, f'vqema-K{K}-s0', {'type': 'vqema', 'K': K}, 0, pv, ppl_v, fill(0))
        record(rd, f'ba-K{K}-s0', {'type': 'ba', 'K': K, 'q_mode': 'batch', 'schedule': 'linear'}, 0, pb, ppl_b, fill(0))
    r = analyze(['--results', study, rd, '--out', tmp_path / 'both'], tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads((tmp_path / 'both' / 'rd.json').read_text())
    vq = out['methods']['vqema']['points']
    assert [p['K'] for p in vq] == [128, 512, 1024] and vq[1]['seeds'] == [0, 1, 2] and abs(vq[1]['psnr'] - np.mean(VQ_PSNR)) < 1e-9
    bd = out['methods']['ba']['bd_psnr']
    assert bd['value'] is not None and bd['lo'] == pytest.approx(math.log2(110.)) and 'seed_range' in out['methods']['ba']
    rep = (tmp_path / 'both' / 'report.md').read_text()
    assert rep.index('## Rate-distortion') < rep.index('## Final metrics') and (tmp_path / 'both' / 'rate_distortion.png').is_file()
    assert '**9. At equal rate, does BA-VQ reconstruct better than VQ-EMA' in rep and f"BD-PSNR {bd['value']:+.2f} dB" in rep
    assert 'K=128' not in rep.split('## Final metrics')[1].split('## Verdict')[0]   # the second folder adds curve points, not table rows
