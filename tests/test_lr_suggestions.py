import numpy as np
import pytest

from keras_actkit import lr_suggestions as rules

LRS = np.logspace(-6, 1, 100)


def test_smooth_is_bias_corrected():
    np.testing.assert_allclose(rules.smooth(np.full(50, 3.0), beta=0.9), 3.0, rtol=1e-12)
    # By hand: s1 = 0.5, s2 = 0.25 + 0.5*3 ... with beta = 0.5 and losses [1, 3]
    np.testing.assert_allclose(rules.smooth([1.0, 3.0], beta=0.5), [1.0, (0.25 + 1.5) / 0.75])


def test_smooth_rejects_bad_beta():
    with pytest.raises(ValueError, match=r"beta.*\[0, 1\)"):
        rules.smooth([1.0], beta=1.0)


def noisy_parabola(center=1e-3, seed=0, noise=0.005):
    x = np.log10(LRS)
    return (x - np.log10(center)) ** 2 / 10 + 1.0 + np.random.default_rng(seed).normal(0, noise, LRS.size)


def test_parabola_minimum_over_ten():
    # Noise of 0.005 on a curvature of 1/10 per decade^2 moves the minimum by
    # about sqrt(0.05) ~ 0.22 decades: within a factor 2 of the true 1e-3.
    for seed in range(5):
        assert 0.5 < rules.minimum_over(LRS, noisy_parabola(seed=seed)) / 1e-4 < 2.0


def test_parabola_steepest_is_the_left_edge():
    assert rules.steepest(LRS, noisy_parabola(seed=1, noise=0.0)) < 1e-5


def test_parabola_valley_and_flat_edge_sit_below_the_minimum():
    losses = noisy_parabola()
    for value in (rules.valley(LRS, losses), rules.flat_edge(LRS, losses)):
        assert 1e-6 <= value < 1e-3


def test_flat_curve():
    flat = np.ones(100)
    assert rules.minimum_over(LRS, flat) == pytest.approx(LRS[0] / 10)
    assert rules.flat_edge(LRS, flat) == pytest.approx(LRS[0] / 4)


def test_no_divergence_monotone_decrease():
    falling = np.linspace(2.0, 0.5, 100)
    assert rules.minimum_over(LRS, falling) == pytest.approx(LRS[-1] / 10)
    assert rules.valley(LRS, falling) == pytest.approx(LRS[int(round(99 * 2 / 3))])


def test_nan_tail_is_ignored():
    losses = noisy_parabola()
    tailed = losses.copy()
    tailed[80:] = np.nan
    for name, rule in rules.RULES.items():
        assert rule(LRS, tailed) == rule(LRS[:80], losses[:80]), name


def test_all_nan_gives_none():
    nan = np.full(100, np.nan)
    assert all(v is None for v in rules.all_suggestions(LRS, nan).values())


def test_mismatched_lengths():
    with pytest.raises(ValueError, match="one length"):
        rules.minimum_over(LRS, np.ones(3))
