"""The plateau criterion of the deep methods' early stopping (the estimators' use of it is
in test_contract.py)."""

import numpy as np
import pytest

from hyperunmix.deep.estimator import plateau_reached


def test_no_plateau_before_two_windows_of_patience_epochs():
    flat = [1.0] * 9
    assert not plateau_reached(flat, patience=5, min_delta=0.01)
    assert plateau_reached([*flat, 1.0], patience=5, min_delta=0.01)


@pytest.mark.parametrize("offset", [0.0, 100.0, -100.0])
def test_the_tolerance_is_relative_to_the_loss_and_a_rise_is_a_plateau(offset):
    # windows of means 10 and 9.95 (+ offset): a fall of 0.05, 0.5 % of 10
    losses = [10.0 + offset] * 3 + [9.95 + offset] * 3
    scale = abs(10.0 + offset)
    assert plateau_reached(losses, 3, min_delta=0.06 / scale)
    assert not plateau_reached(losses, 3, min_delta=0.04 / scale)
    assert plateau_reached(losses[::-1], 3, min_delta=0.0)  # rising


def test_the_window_means_see_through_noise():
    rng = np.random.default_rng(0)
    epochs = np.arange(200)
    noise = 0.05 * rng.standard_normal(200)  # 5 % per epoch, far above the 1 % tolerance
    falling = list(np.exp(-epochs / 50) + 1 + noise)  # the mean falls ~ 10 % per 10 epochs
    flat = list(1 + noise)
    stop_falling = [plateau_reached(falling[: n + 1], 10, 0.01) for n in range(60)]
    stop_flat = [plateau_reached(flat[: n + 1], 10, 0.01) for n in range(60)]
    assert not any(stop_falling)
    # 10-epoch means of 5 % noise differ by ~2.2 % (std): a flat loss is caught within a
    # few windows, not at the first epoch that happens to be higher
    assert any(stop_flat[19:40])
