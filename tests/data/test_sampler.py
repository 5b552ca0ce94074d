"""ResumableSampler: seeded per epoch, split across ranks, resumable mid-epoch."""

import pytest

from selip.data.sampler import ResumableSampler


def test_each_epoch_has_its_own_seeded_order():
    sampler = ResumableSampler(10, batch_size=2, seed=3)
    assert sorted(sampler.epoch_order(0)) == list(range(10))
    assert sampler.epoch_order(0) == ResumableSampler(10, 2, seed=3).epoch_order(0)
    assert sampler.epoch_order(0) != sampler.epoch_order(1)
    assert sampler.epoch_order(0) != ResumableSampler(10, 2, seed=4).epoch_order(0)
    sampler.set_epoch(1)  # without a trainer, set_epoch picks the epoch
    assert list(sampler) == sampler.epoch_order(1)


def test_ranks_share_an_epoch_equally_and_without_overlap():
    orders = [ResumableSampler(12, 2, num_replicas=3, rank=r).epoch_order(5) for r in range(3)]
    assert [len(o) for o in orders] == [4, 4, 4]
    assert sorted(i for o in orders for i in o) == list(range(12))
    padded = [ResumableSampler(10, 2, num_replicas=4, rank=r).epoch_order(0) for r in range(4)]
    assert [len(o) for o in padded] == [3, 3, 3, 3]  # 10 -> 12, two repeated
    assert set(i for o in padded for i in o) == set(range(10))


def test_a_resumed_epoch_skips_exactly_the_trained_batches():
    progress = {"epoch": 2, "trained": 0}
    sampler = ResumableSampler(20, batch_size=3, num_replicas=2, rank=1,
                               progress=lambda: (progress["epoch"], progress["trained"]))
    full = sampler.epoch_order(2)
    assert list(sampler) == full and sampler.skipped == 0
    progress["trained"] = 2
    assert list(sampler) == full[6:] and sampler.skipped == 6
    progress["trained"] = 99  # past the end: nothing left in this epoch
    assert list(sampler) == []
    assert len(sampler) == 10  # Lightning sizes epochs from the full length


def test_weighted_draws_follow_the_weights():
    sampler = ResumableSampler(4, 2, weights=[1.0, 1.0, 0.0, 2.0], seed=1)
    drawn = [i for epoch in range(200) for i in sampler.epoch_order(epoch)]
    assert 2 not in drawn
    assert drawn.count(3) / len(drawn) == pytest.approx(0.5, abs=0.05)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="at least one sample"):
        ResumableSampler(0, 2)
    with pytest.raises(ValueError, match="3 weights for 4 samples"):
        ResumableSampler(4, 2, weights=[1.0, 1.0, 1.0])
