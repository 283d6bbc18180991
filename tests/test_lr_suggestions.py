import numpy as np
import pytest

from keras_actkit import lr_suggestions as rules

LRS = np.logspace(-7, 1, 100)  # the range test's default ladder
X = np.log10(LRS)


def test_smooth_is_bias_corrected():
    np.testing.assert_allclose(rules.smooth(np.full(50, 3.0), beta=0.9), 3.0, rtol=1e-12)
    # By hand, beta = 0.5 and losses [1, 3]: s1 = 0.5 / 0.5, s2 = (0.25 + 1.5) / 0.75.
    np.testing.assert_allclose(rules.smooth([1.0, 3.0], beta=0.5), [1.0, (0.25 + 1.5) / 0.75])


def test_smooth_rejects_bad_beta():
    with pytest.raises(ValueError, match=r"beta.*\[0, 1\)"):
        rules.smooth([1.0], beta=1.0)


def test_running_median_is_centred_and_ignores_a_spike():
    losses = np.linspace(3.0, 1.0, 100)
    spiked = losses.copy()
    spiked[50] = 1e6
    median = rules.running_median(LRS, spiked, half_width=0.5)
    # +-0.5 decade at 12.4 points per decade: a centred window of 13 points,
    # so on a straight line the median is the point itself (no lag); the
    # spike of 1e6 at point 50 moves the medians around it by one rank at most.
    np.testing.assert_allclose(median[10:90], losses[10:90], rtol=0, atol=0.0203)


def range_test_curve(center=-3.0, width=0.3, start=2.3, floor=0.3, blowup=-1.0, noise=0.0, seed=0):
    """Flat, a logistic fall around 10**center, a floor, then divergence past 10**blowup."""
    fallen = 1.0 / (1.0 + np.exp(-(X - center) / width))
    loss = start - (start - floor) * fallen + np.where(X > blowup, 10.0 * (X - blowup) ** 2, 0.0)
    return loss + np.random.default_rng(seed).normal(0.0, noise, X.size)


def test_onset_closed_form():
    # The logistic has fallen by a fraction f at center + width * ln(f / (1 - f)).
    for fraction in (0.1, 0.2, 0.5):
        expected = -3.0 + 0.3 * np.log(fraction / (1 - fraction))
        got = np.log10(rules.onset(LRS, range_test_curve(), fraction=fraction))
        assert abs(got - expected) <= 0.081 + 1e-9  # one ladder step is 0.081 decades


def test_onset_is_robust_to_noise_and_spikes():
    expected = -3.0 + 0.3 * np.log(0.25)
    for seed in range(5):
        losses = range_test_curve(noise=0.05, seed=seed)
        losses[np.random.default_rng(seed).integers(0, 60, 3)] = 50.0  # three exploding batches
        assert abs(np.log10(rules.onset(LRS, losses)) - expected) < 0.25, seed


def test_onset_never_falls_gives_none_and_rejects_bad_fraction():
    assert rules.onset(LRS, np.ones(100)) is None
    assert rules.onset(LRS, np.linspace(1.0, 3.0, 100)) is None
    with pytest.raises(ValueError, match=r"fraction.*\(0, 1\)"):
        rules.onset(LRS, range_test_curve(), fraction=1.0)


def test_minimum_over_without_smoothing_is_the_trimmed_argmin():
    v_shape = np.abs(X + 2.0) + 1.0
    assert rules.minimum_over(LRS, v_shape, beta=0.0) == pytest.approx(LRS[np.argmin(v_shape)] / 10)
    # fastai drops the last 5 points: a minimum there is not taken.
    falling = np.linspace(2.0, 0.5, 100)
    assert rules.minimum_over(LRS, falling, beta=0.0) == pytest.approx(LRS[94] / 10)


def test_minimum_over_lags_with_fastai_smoothing():
    # The bias-corrected average with beta=0.98 trails the curve: on a range
    # test with a sharp fall and blow-up its minimum lies right of the true one.
    losses = range_test_curve()
    true_minimum = LRS[np.argmin(losses)]
    assert rules.minimum_over(LRS, losses, divisor=1.0) > true_minimum


def test_steepest_without_smoothing_is_the_logistic_centre():
    assert abs(np.log10(rules.steepest(LRS, range_test_curve(), beta=0.0)) + 3.0) <= 0.081 + 1e-9


def test_valley_on_a_falling_curve_is_two_thirds_along():
    falling = np.linspace(2.0, 0.5, 100)
    # Trimmed to points 10..94 (85 points): 2/3 of the way is point 10 + 56.
    assert rules.valley(LRS, falling, beta=0.0) == pytest.approx(LRS[10 + 56])


def test_nan_tail_ends_the_curve():
    losses = range_test_curve(noise=0.01)
    tailed = losses.copy()
    tailed[80:] = np.nan
    tailed[90] = 1.0  # a finite point after the first NaN is not used either
    for name, rule in rules.RULES.items():
        assert rule(LRS, tailed) == rule(LRS[:80], losses[:80]), name


def test_all_nan_gives_none():
    nan = np.full(100, np.nan)
    assert all(v is None for v in rules.all_suggestions(LRS, nan).values())


def test_mismatched_lengths():
    with pytest.raises(ValueError, match="one length"):
        rules.minimum_over(LRS, np.ones(3))


def test_default_rule_is_the_larger_of_onset_and_valley():
    for seed in range(3):
        losses = range_test_curve(noise=0.05, seed=seed)
        expected = max(rules.onset(LRS, losses), rules.valley(LRS, losses))
        assert rules.onset_or_valley(LRS, losses) == expected
    # A curve that never falls gives no suggestion rather than a made-up one.
    for never_falls in (np.ones(100), np.linspace(1.0, 3.0, 100)):
        assert rules.onset_or_valley(LRS, never_falls) is None


def noisy_parabola(center=-3.0, noise=0.005, seed=0):
    return (X - center) ** 2 / 10 + 1.0 + np.random.default_rng(seed).normal(0, noise, X.size)


def test_parabola_plus_noise():
    # Minimum at 1e-3: fastai's minimum/10 (unsmoothed) lands at 1e-4 within
    # the noise's reach (curvature 1/10 per decade^2, noise 0.005: ~0.25 decade).
    for seed in range(5):
        losses = noisy_parabola(seed=seed)
        assert abs(np.log10(rules.minimum_over(LRS, losses, beta=0.0)) + 4.0) < 0.35, seed
        # onset: 20% of the way from the start level (median of the first 10
        # points) down to the bottom; closed form on the noiseless parabola.
        start = np.median((X[:10] + 3.0) ** 2 / 10 + 1.0)
        expected = -3.0 - np.sqrt(10 * (0.8 * (start - 1.0)))
        assert abs(np.log10(rules.onset(LRS, losses)) - expected) < 0.2, seed
        assert rules.onset_or_valley(LRS, losses) >= rules.onset(LRS, losses)


def test_no_divergence_still_suggests():
    falling = range_test_curve(blowup=5.0, noise=0.01)  # the loss never comes back up
    for name, rule in rules.RULES.items():
        value = rule(LRS, falling)
        assert value is not None and LRS[0] <= value <= LRS[-1], name


# -- rose: when "the loss never diverged" must not be said -----------------------------------

def test_rose_on_a_curve_that_bottoms_out_and_climbs_back():
    # Parabola in log-LR with its minimum at 1e-3 (loss 1.0) and 2.0 at both ends when centred:
    # falls by ~1.6, rises by ~1.6 again: clearly past the best LR.
    losses = noisy_parabola(center=-3.0, noise=0.01)
    assert rules.rose(LRS, losses)
    # Stopped just after the minimum: the rise is noise only.
    bottom = int(np.argmin(losses)) + 3
    assert not rules.rose(LRS[:bottom], losses[:bottom])


def test_rose_is_false_on_flat_and_falling_curves():
    rng = np.random.default_rng(1)
    assert not rules.rose(LRS, 2.3 + rng.normal(0, 0.01, 100))  # flat: noise is no rise
    assert not rules.rose(LRS, np.linspace(2.3, 0.5, 100) + rng.normal(0, 0.01, 100))  # still falling


def test_rose_threshold_is_half_the_fall():
    # Falls from 2 to 1 over the first 80 points, then climbs to 1 + rise: rose when rise >= 0.5 * 1.
    head = np.linspace(2.0, 1.0, 80)
    for rise, expected in ((0.4, False), (0.6, True)):
        assert rules.rose(LRS, np.concatenate([head, np.linspace(1.0, 1.0 + rise, 20)])) is expected, rise


# -- bad input -------------------------------------------------------------------------------

def test_divisor_must_be_positive():
    losses = noisy_parabola()
    for divisor in (0, -10.0):
        with pytest.raises(ValueError, match=f"`divisor`.*divisor={divisor!r}"):
            rules.minimum_over(LRS, losses, divisor=divisor)
    with pytest.raises(TypeError, match="`divisor`"):
        rules.minimum_over(LRS, losses, divisor="10")


@pytest.mark.parametrize("name", sorted(rules.RULES))
def test_every_rule_refuses_lrs_that_do_not_increase(name):
    losses = noisy_parabola()
    with pytest.raises(ValueError, match="`lrs`.*strictly increasing"):
        rules.RULES[name](LRS[::-1], losses)


def test_numpy_scalars_are_accepted_and_strings_and_bools_are_not():
    losses = noisy_parabola()
    assert rules.minimum_over(LRS, losses, divisor=np.int64(10), beta=np.float32(0.0)) == \
        rules.minimum_over(LRS, losses, divisor=10.0, beta=0.0)
    assert rules.onset(LRS, losses, fraction=np.float32(0.25)) == rules.onset(LRS, losses, fraction=0.25)
    with pytest.raises(TypeError, match="`beta`"):
        rules.smooth(losses, beta="0.9")
    with pytest.raises(TypeError, match="`fraction`"):
        rules.onset(LRS, losses, fraction=True)
