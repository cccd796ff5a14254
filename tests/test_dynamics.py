"""Compressor, gain smoothing and true-peak limiter against closed forms and references.

References: the piecewise soft-knee curve of Giannoulis, Massberg & Reiss (2012) written
out branch by branch in numpy, a plain sequential python loop of the branching one-pole,
the exponential step response (63.2 % at tau), and scipy.signal.resample_poly (4x) as the
true-peak meter.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch

from neuromix.core.dsp import dynamics as D
from neuromix.core.errors import ConfigError

SR = 44100


@pytest.fixture
def single_thread():
    """Tiny-tensor tests (gradcheck) run on one thread: on a busy shared machine the
    per-op threading overhead dominates them. The previous setting is restored."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# --------------------------------------------------------------------------- references


def _gain_computer_ref(level: np.ndarray, threshold: float, ratio: float, knee: float) -> np.ndarray:
    """Giannoulis et al. (2012) soft-knee curve, branch by branch, as a reduction level - y_G >= 0."""
    out = np.empty_like(level, dtype=np.float64)
    for i, x in enumerate(level):
        if 2 * (x - threshold) < -knee or (knee == 0 and x == threshold):
            y = x
        elif 2 * abs(x - threshold) <= knee:
            y = x + (1 / ratio - 1) * (x - threshold + knee / 2) ** 2 / (2 * knee)
        else:
            y = threshold + (x - threshold) / ratio
        out[i] = x - y
    return out


def _smooth_ref(x: np.ndarray, frame_rate: float, attack_ms: float, release_ms: float) -> np.ndarray:
    """Plain sequential branching one-pole (state 0 before the first frame)."""
    a_att = math.exp(-1.0 / (attack_ms * 1e-3 * frame_rate))
    a_rel = math.exp(-1.0 / (release_ms * 1e-3 * frame_rate))
    y, out = 0.0, np.empty(len(x))
    for n, target in enumerate(x):
        a = a_att if target > y else a_rel
        y = a * y + (1.0 - a) * target
        out[n] = y
    return out


def _true_peak_db(y: torch.Tensor) -> np.ndarray:
    """Per batch item: true peak (dBTP) by 4x resample_poly over all channels."""
    arr = y.detach().double().numpy()
    up = scipy.signal.resample_poly(arr, 4, 1, axis=-1)
    return 20 * np.log10(np.abs(up).max(axis=(1, 2)))


def _sine(seconds: float, freq_hz: float, amplitude: float = 1.0, phase: float = 0.0) -> torch.Tensor:
    n = torch.arange(round(seconds * SR), dtype=torch.float64)
    return (amplitude * torch.sin(2 * math.pi * freq_hz * n / SR + phase)).float()


def _stepped_sine(levels_db: list[float], step_s: float, freq_hz: float = 1000.0) -> tuple[torch.Tensor, int]:
    """Continuous-phase 1 kHz sine whose amplitude steps through ``levels_db``."""
    step = round(step_s * SR)
    amps = torch.tensor([10 ** (lv / 20) for lv in levels_db]).repeat_interleave(step)
    n = torch.arange(len(amps), dtype=torch.float64)
    return (amps * torch.sin(2 * math.pi * freq_hz * n / SR)).float(), step


# --------------------------------------------------------------------------- gain computer


@pytest.mark.parametrize(
    "threshold, ratio, knee",
    [(-20.0, 4.0, 0.0), (-30.0, 8.0, 12.0), (-10.0, 2.0, 6.0), (-40.0, math.inf, 3.0), (0.0, 1.0, 6.0)],
)
def test_gain_computer_matches_piecewise_closed_form(threshold, ratio, knee):
    levels = np.linspace(-80.0, 12.0, 461)
    got = D.gain_computer(torch.tensor(levels), threshold, ratio, knee).numpy()
    np.testing.assert_allclose(got, _gain_computer_ref(levels, threshold, ratio, knee), atol=1e-9)
    assert (got >= 0).all()


def test_gain_computer_hand_values_and_batched_params():
    level = torch.tensor([[-10.0, -20.0, -30.0], [-10.0, -20.0, -30.0]], dtype=torch.float64)
    gr = D.gain_computer(level, torch.tensor([-20.0, -20.0]), torch.tensor([4.0, 2.0]), torch.tensor([0.0, 10.0]))
    # hard knee 4:1, 10 dB over -> 7.5 dB; soft knee 2:1 at threshold -> (1/2) (5^2)/(20) = 0.625 dB
    expected = torch.tensor([[7.5, 0.0, 0.0], [5.0, 0.625, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(gr, expected, atol=1e-12, rtol=0)


def test_gain_computer_hard_knee_has_finite_gradients():
    level = torch.tensor([-30.0, -20.0, -20.0 + 1e-7, -10.0], dtype=torch.float64, requires_grad=True)
    thr = torch.tensor(-20.0, dtype=torch.float64, requires_grad=True)
    ratio = torch.tensor(4.0, dtype=torch.float64, requires_grad=True)
    knee = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    D.gain_computer(level, thr, ratio, knee).sum().backward()
    for t in (level, thr, ratio, knee):
        assert torch.isfinite(t.grad).all()
    # above threshold d(gr)/d(level) = 1 - 1/ratio
    assert level.grad[3].item() == pytest.approx(0.75)


# --------------------------------------------------------------------------- smoothing


def _random_targets(seed: int, batch: int, frames: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    walk = (torch.randn(batch, frames, generator=g, dtype=torch.float64).cumsum(-1) * 0.5).abs()
    jitter = 3.0 * torch.randn(batch, frames, generator=g, dtype=torch.float64)
    spikes = (torch.rand(batch, frames, generator=g, dtype=torch.float64) < 0.03) * 25.0
    return (walk + jitter).clamp_min(0.0) + spikes


@pytest.mark.parametrize("seed", [0, 1])
def test_smooth_gain_matches_sequential_reference(seed):
    frame_rate = SR / 32
    attack = [0.02, 1.0, 10.0, 30.0]  # 0.02 ms: coefficient ~1e-16, i.e. instantaneous
    release = [20.0, 100.0, 1000.0, 300.0]
    x = _random_targets(seed, 4, 1500)
    got = D.smooth_gain(x, frame_rate, torch.tensor(attack), torch.tensor(release))
    for b in range(4):
        ref = _smooth_ref(x[b].numpy(), frame_rate, attack[b], release[b])
        np.testing.assert_allclose(got[b].numpy(), ref, atol=1e-3, rtol=0)


def test_smooth_gain_step_is_exponential_with_float32_input():
    frame_rate = 1000.0
    x = torch.zeros(1, 400)
    x[0, 100:300] = 12.0
    y = D.smooth_gain(x, frame_rate, 10.0, 50.0).double()[0]
    k = torch.arange(200, dtype=torch.float64)
    a_att, a_rel = math.exp(-1 / 10.0), math.exp(-1 / 50.0)
    rise = 12.0 * (1 - a_att ** (k + 1))
    torch.testing.assert_close(y[100:300], rise, atol=1e-4, rtol=0)
    fall = rise[-1] * a_rel ** (k[:100] + 1)
    torch.testing.assert_close(y[300:], fall, atol=1e-4, rtol=0)
    assert y.dtype == torch.float64 and D.smooth_gain(x, frame_rate, 10.0, 50.0).dtype == torch.float32


# --------------------------------------------------------------------------- compressor


def test_static_curve_from_stepped_sine():
    """Settled output level per step == input level - gain_computer (+ makeup), within 0.5 dB."""
    levels = [float(v) for v in np.arange(-60.0, 0.1, 3.0)]
    sig, step = _stepped_sine(levels, 0.3)
    params = {  # one parameter set per batch item
        "threshold_db": [-20.0, -30.0, -10.0, -40.0],
        "ratio": [4.0, 8.0, 2.0, 20.0],
        "knee_db": [0.0, 12.0, 6.0, 12.0],
        "makeup_db": [0.0, 0.0, 3.0, 0.0],
    }
    x = sig.expand(4, 1, -1)
    y = D.compressor(x, SR, attack_ms=10.0, release_ms=100.0, **{k: torch.tensor(v) for k, v in params.items()})
    y = y.double().numpy()[:, 0]
    for b in range(4):
        reduction = _gain_computer_ref(
            np.array(levels), params["threshold_db"][b], params["ratio"][b], params["knee_db"][b]
        )
        assert reduction.max() > 4.0  # the curve really compresses at the top steps
        expected = np.array(levels) - reduction + params["makeup_db"][b]
        measured = []
        for i in range(len(levels)):
            seg = y[b, i * step + int(0.6 * step) : (i + 1) * step]
            measured.append(20 * np.log10(np.sqrt(2 * np.mean(seg**2))))
        np.testing.assert_allclose(measured, expected, atol=0.1, err_msg=f"item {b}")  # brief: 0.5 dB


def _burst_signal(lead: int, on: int, off: int) -> tuple[torch.Tensor, int, int]:
    """1 kHz sine at -50 dBFS with a 30 dB louder burst on samples [lead, lead + on)."""
    n = lead + on + off
    amp = torch.full((n,), 10 ** (-50 / 20))
    amp[lead : lead + on] = 10 ** (-20 / 20)
    t = torch.arange(n, dtype=torch.float64)
    return (amp * torch.sin(2 * math.pi * 1000.0 * t / SR)).float(), lead, lead + on


def _time_to_632(gain_db: np.ndarray, start: int, stop: int) -> float:
    """ms from ``start`` until the gain has made 63.2 % of its change over [start, stop)."""
    g0, g1 = gain_db[start - 1], gain_db[stop - 1]
    target = g0 + 0.632 * (g1 - g0)
    seg = gain_db[start:stop]
    idx = np.argmax(seg <= target) if g1 < g0 else np.argmax(seg >= target)
    return 1000.0 * idx / SR


@pytest.mark.parametrize("lead", [8192, 8200])  # onset on a detector block boundary, and 8 samples later
def test_attack_and_release_time_constants(lead):
    sig, on_at, off_at = _burst_signal(lead, round(0.4 * SR), round(1.6 * SR))
    attack = [10.0, 5.0]
    release = [100.0, 250.0]
    x = sig.expand(2, 1, -1)
    # threshold -40, ratio 10, hard knee: reduction 0 dB at -50 dBFS, 18 dB at -20 dBFS
    g = D.compressor_gain(x, SR, -40.0, 10.0, torch.tensor(attack), torch.tensor(release), knee_db=0.0)
    g = g.double().numpy()[:, 0]
    # the detector sees a change up to hop-1 samples early: allow that on the unaligned onset
    slack = (on_at % D.DETECTOR_HOP) / SR * 1000.0
    for b in range(2):
        assert g[b, off_at - 1] == pytest.approx(-18.0, abs=0.1)
        t_att = _time_to_632(g[b], on_at, off_at)
        t_rel = _time_to_632(g[b], off_at, len(sig))
        assert abs(t_att - attack[b]) <= 0.1 * attack[b] + slack, (b, t_att)
        assert abs(t_rel - release[b]) <= 0.1 * release[b], (b, t_rel)


def test_compressor_applies_its_gain_curve_to_all_channels():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 2, 6000, generator=g) * torch.linspace(0.01, 1.0, 6000)
    args = (SR, torch.tensor([-24.0, -12.0]), torch.tensor([3.0, 6.0]), 5.0, 80.0)
    y = D.compressor(x, *args, knee_db=4.0, makeup_db=2.0)
    gain_db = D.compressor_gain(x, *args, knee_db=4.0, makeup_db=2.0)
    assert gain_db.shape == (2, 1, 6000)
    assert (gain_db <= 2.0 + 1e-5).all() and gain_db.min() < -3.0
    torch.testing.assert_close(y, x * 10 ** (gain_db / 20), rtol=1e-5, atol=1e-7)


def test_compressor_leaves_quiet_signal_untouched_and_short_signals_work():
    x = 0.01 * torch.randn(1, 2, 3000)  # peaks about -28 dBFS, threshold -10 with a 6 dB knee
    torch.testing.assert_close(D.compressor(x, SR, -10.0, 4.0, 5.0, 50.0), x)
    short = torch.ones(1, 1, 5)  # shorter than one detector block
    y = D.compressor(short, SR, -20.0, 2.0, 5.0, 50.0, knee_db=0.0)
    # the gain ramps from the initial state (0 dB at sample 0) towards the first frame's value
    assert y.shape == short.shape and y[0, 0, 0] == 1.0 and (y[0, 0, 1:].diff() < 0).all()


def test_compressor_batched_equals_item_by_item():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 2, 8000, generator=g) * torch.linspace(0.05, 1.0, 8000) ** 2
    params = {
        "threshold_db": torch.tensor([-30.0, -20.0, -12.0]),
        "ratio": torch.tensor([2.0, 6.0, 20.0]),
        "attack_ms": torch.tensor([1.0, 10.0, 0.3]),
        "release_ms": torch.tensor([40.0, 200.0, 15.0]),
        "knee_db": torch.tensor([0.0, 6.0, 12.0]),
        "makeup_db": torch.tensor([0.0, 3.0, -1.0]),
    }
    batched = D.compressor(x, SR, **params)
    for b in range(3):
        single = D.compressor(x[b : b + 1], SR, **{k: float(v[b]) for k, v in params.items()})
        torch.testing.assert_close(batched[b : b + 1], single, atol=1e-5, rtol=0)


def test_compressor_gradcheck_parameters(single_thread):
    torch.manual_seed(5)
    sr, n = 8000, 256
    t = torch.arange(n, dtype=torch.float64)
    env = 0.05 + 0.9 * torch.exp(-(((t - 90) / 40) ** 2))
    x = (env * torch.sin(2 * math.pi * 450 * t / sr))[None, None]
    params = [
        torch.tensor([-20.0], dtype=torch.float64, requires_grad=True),  # threshold
        torch.tensor([4.0], dtype=torch.float64, requires_grad=True),  # ratio
        torch.tensor([2.0], dtype=torch.float64, requires_grad=True),  # attack
        torch.tensor([12.0], dtype=torch.float64, requires_grad=True),  # release
        torch.tensor([8.0], dtype=torch.float64, requires_grad=True),  # knee
        torch.tensor([1.5], dtype=torch.float64, requires_grad=True),  # makeup
    ]

    def fn(thr, ratio, att, rel, knee, makeup):
        return D.compressor(x, sr, thr, ratio, att, rel, knee, makeup, hop=4)

    assert torch.autograd.gradcheck(fn, params, eps=1e-6, atol=1e-6, rtol=1e-4)
    xs = (0.6 * torch.randn(1, 2, 48, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: D.compressor(v, sr, -12.0, 3.0, 1.0, 5.0, 6.0, hop=4), (xs,))


def test_parameter_validation():
    x = torch.zeros(1, 1, 64)
    with pytest.raises(ConfigError, match="ratio"):
        D.compressor(x, SR, -20.0, 0.5, 5.0, 50.0)
    with pytest.raises(ValueError, match="attack_ms"):
        D.compressor(x, SR, -20.0, 2.0, 0.0, 50.0)
    with pytest.raises(ValueError, match="release_ms"):
        D.smooth_gain(torch.zeros(1, 4), 100.0, 5.0, -1.0)
    with pytest.raises(ValueError, match="knee_db"):
        D.gain_computer(torch.zeros(3), -20.0, 2.0, -3.0)
    with pytest.raises(ConfigError, match="hop"):
        D.compressor(x, SR, -20.0, 2.0, 5.0, 50.0, hop=0)
    with pytest.raises(ValueError, match="lookahead_ms"):
        D.limiter(x, SR, lookahead_ms=0.0)
    with pytest.raises(ValueError, match="release_ms"):
        D.limiter(x, SR, release_ms=0.0)
    with pytest.raises(ValueError, match="batch, channels, samples"):
        D.limiter(torch.zeros(64), SR)


# --------------------------------------------------------------------------- limiter


def _limiter_inputs() -> tuple[torch.Tensor, list[str]]:
    n = SR // 2
    g = torch.Generator().manual_seed(6)
    noise = 0.5 * torch.randn(2, n, generator=g)  # peaks about +8 dBFS
    square = torch.sign(_sine(0.5, 997.0, phase=0.1)).expand(2, -1)  # naive full-scale square
    nyq45 = _sine(0.5, 0.45 * SR, phase=0.3).expand(2, -1)
    nyq49 = torch.stack([_sine(0.5, 0.49 * SR, phase=0.3), _sine(0.5, 0.485 * SR, phase=1.0)])
    quarter = _sine(0.5, SR / 4, amplitude=1.5, phase=math.pi / 4).expand(2, -1)  # samples 3 dB below peak
    return torch.stack([noise, square, nyq45, nyq49, quarter]), ["noise", "square", "0.45fs", "0.49fs", "fs/4"]


def test_limiter_true_peak_below_ceiling():
    x, names = _limiter_inputs()
    ceilings = [-1.0, -0.1, -3.0, -3.0, -6.0]
    y = D.limiter(x, SR, torch.tensor(ceilings), 50.0)
    assert y.shape == x.shape
    tp = _true_peak_db(y)
    for name, c, p, p_in in zip(names, ceilings, tp, _true_peak_db(x)):
        assert p_in > c + 0.5, name  # the input really is over the ceiling
        assert p <= c + 0.05, (name, p)
        assert p >= c - 0.5, (name, p)  # limited to the ceiling, not far below it


def test_limiter_safety_stage_rarely_needed():
    """Without the final safety stage the true peak is already within 0.3 dB of the ceiling."""
    x, names = _limiter_inputs()
    raw = D.limiter(x, SR, -1.0, 50.0, safety=False)
    safe = D.limiter(x, SR, -1.0, 50.0)
    for name, p in zip(names, _true_peak_db(raw)):
        assert p <= -1.0 + 0.3, (name, p)
    ratio_db = 20 * torch.log10(safe.abs().clamp_min(1e-4) / raw.abs().clamp_min(1e-4))
    assert ratio_db.abs().max() < 0.3


def test_limiter_passes_quiet_signals_and_compensates_lookahead():
    quiet = _sine(0.5, 440.0, amplitude=10 ** (-6 / 20))[None, None].expand(1, 2, -1)
    torch.testing.assert_close(D.limiter(quiet, SR, -1.0), quiet)
    # one loud click in a quiet sine: the gain drops only within the look-ahead before it
    x = quiet.clone()
    click = SR // 4
    x[:, :, click] = 1.0
    lookahead_ms = 1.5
    y = D.limiter(x, SR, -1.0, 20.0, lookahead_ms)
    gain = (y[0, 0] / x[0, 0]).double()
    mask = x[0, 0].abs() > 1e-3
    ahead = round(lookahead_ms * 1e-3 * SR) + 2 * D.LIMITER_BLOCK
    before = torch.arange(x.shape[-1]) < click - ahead
    after = torch.arange(x.shape[-1]) > click + round(0.3 * SR)  # 15 release time constants
    assert (gain[mask & before] > 0.99).all() and (gain[mask & after] > 0.99).all()
    assert abs(y[0, 0, click].item()) <= 10 ** (-1 / 20) + 1e-6  # no latency: the click itself is limited
    assert gain[click - ahead // 2].item() < 0.99  # the reduction ramps in ahead of the click


def test_limiter_release_time_constant():
    """After an isolated peak the reduction (dB) decays to 36.8 % in release_ms, plus half the
    look-ahead that the moving average adds (so 20 ms + 0.75 ms here), within 10 %."""
    n = SR // 2
    x = torch.full((1, 1, n), 0.1)  # -20 dBFS: gain == y / x on every sample
    click = n // 4
    x[0, 0, click] = 4.0  # +12 dBFS, 13 dB over the ceiling
    y = D.limiter(x, SR, -1.0, 20.0, 1.5)
    reduction = -20 * np.log10((y / x)[0, 0].double().numpy())
    peak = reduction[click]
    # at the ceiling (the 4x meter reads a lone sample 0.006 dB above its value)
    assert y[0, 0, click].item() == pytest.approx(10 ** (-1 / 20), rel=2e-3)
    after = np.argmax(reduction[click:] <= 0.368 * peak)
    assert abs(1000 * after / SR - 20.75) <= 0.1 * 20.75, 1000 * after / SR
    assert reduction[: click - round(0.0015 * SR) - 2 * D.LIMITER_BLOCK].max() < 1e-6  # untouched before


def test_limiter_batched_equals_item_by_item():
    x, _ = _limiter_inputs()
    x = x[:, :, :6000]
    ceilings = torch.tensor([-1.0, -2.0, -0.5, -6.0, -3.0])
    releases = torch.tensor([20.0, 50.0, 100.0, 10.0, 300.0])
    batched = D.limiter(x, SR, ceilings, releases)
    for b in range(x.shape[0]):
        single = D.limiter(x[b : b + 1], SR, float(ceilings[b]), float(releases[b]))
        torch.testing.assert_close(batched[b : b + 1], single, atol=1e-5, rtol=0)


def test_limiter_gradcheck(single_thread):
    """Input, ceiling and release; this input also goes through the safety correction."""
    torch.manual_seed(7)
    x = (0.8 * torch.randn(1, 1, 256, dtype=torch.float64)).requires_grad_(True)
    ceiling = torch.tensor([-6.0], dtype=torch.float64, requires_grad=True)
    release = torch.tensor([5.0], dtype=torch.float64, requires_grad=True)

    def fn(v, c, r):
        return D.limiter(v, 8000, c, r, 2.0)

    assert torch.autograd.gradcheck(fn, (x, ceiling, release), eps=1e-6, atol=1e-6, rtol=1e-4)
