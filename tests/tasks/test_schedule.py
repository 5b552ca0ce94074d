import math

import pytest

from selip.tasks.schedule import resolve_warmup, warmup_then_decay


def test_warmup_then_cosine():
    factor = warmup_then_decay(total_steps=110, warmup_steps=10, schedule="cosine")
    assert factor(0) == pytest.approx(1 / 11)
    assert factor(9) == pytest.approx(10 / 11)
    assert factor(10) == pytest.approx(1.0)
    assert factor(60) == pytest.approx(0.5)  # half way through the decay: (1 + cos(pi/2)) / 2
    assert factor(110) == pytest.approx(0.0, abs=1e-12)


def test_poly_constant_and_floor():
    poly = warmup_then_decay(100, 0, "poly", min_ratio=0.1, power=1.0)
    assert poly(50) == pytest.approx(0.1 + 0.9 * 0.5)
    assert warmup_then_decay(100, 5, "constant")(80) == 1.0
    cosine = warmup_then_decay(100, 0, "cosine", min_ratio=0.2)
    assert cosine(100) == pytest.approx(0.2)
    assert cosine(25) == pytest.approx(0.2 + 0.8 * (1 + math.cos(math.pi / 4)) / 2)


def test_warmup_fraction_or_steps_and_errors():
    assert resolve_warmup(0.1, 200) == 20
    assert resolve_warmup(30, 200) == 30
    with pytest.raises(ValueError, match="warmup"):
        resolve_warmup(-1, 10)
    with pytest.raises(ValueError, match="schedule"):
        warmup_then_decay(10, 0, "linear")


def test_downstream_warmup_is_a_whole_number_of_steps():
    from selip.tasks.schedule import check_warmup_steps

    assert check_warmup_steps(20) == 20 and check_warmup_steps(0) == 0
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match=f"warmup_steps must be .* got {bad!r}"):
            check_warmup_steps(bad)  # type: ignore[arg-type]
