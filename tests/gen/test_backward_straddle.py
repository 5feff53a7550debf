"""The straddled lane mapping of docs/architecture.md ("Straddling pixels"; built for the mat-vec
and outer-product stages of P/3 <= O < P, the rest a projection) at the lane level (gen/backward/straddle.py): the
driver's weight layout with the engine's rotation, the per-slot output writes and the outer product's
per-slot adds give the plain products; and what the engine does not build is refused."""

import numpy as np
import pytest

from ttsnn.gen.backward.straddle import (rotated_weights, straddled_matvec, straddled_outer,
                                         weight_word_lanes)


@pytest.mark.parametrize("channels", [17, 19, 24, 31, 12, 5])
def test_rotated_weights_give_each_lane_its_channel(channels):
    lanes = 32
    word = weight_word_lanes(list(range(100, 100 + channels)), lanes)
    for s in range(channels):
        assert rotated_weights(word, s, channels) == [100 + (s + l) % channels for l in range(lanes)]


@pytest.mark.parametrize("channels,pixels,inputs", [(17, 7, 5), (24, 5, 3), (31, 9, 4), (12, 11, 6), (40, 5, 3)])
def test_straddled_stages_equal_the_plain_products(channels, pixels, inputs):
    rng = np.random.default_rng(channels * 100 + pixels)
    x = rng.integers(-128, 128, (pixels, inputs))
    w = rng.integers(-128, 128, (inputs, channels))
    g = rng.integers(-2**15, 2**15, (pixels, channels))
    assert straddled_matvec(x.tolist(), w.tolist(), 32) == (x @ w).tolist()
    assert straddled_outer(g.tolist(), x.tolist(), 32) == (x.T @ g).tolist()


@pytest.mark.parametrize("fields,why", [
    (dict(kind=2), "only a mat-vec or outer-product stage"), (dict(out_channels=1), "P/3 <= out_channels < P"),
    (dict(out_channels=4), "P/3 <= out_channels < P"), (dict(pack=1), "pack and straddle"),
    (dict(rounding="stochastic"), "stochastic")])
def test_what_the_engine_does_not_build_is_refused(fields, why):
    """The built straddle (the stage field ``straddle``): mat-vec and outer-product stages of
    ``P/3 <= O < P`` lane channels, without ``pack`` or stochastic rounding (HTT's reduced
    timesteps copy or are skipped); not the LIF gradient."""
    from ttsnn.gen.backward.cyclemodel import check_straddle
    f = dict(kind=0, out_channels=3, pack=0, use_schedule=1, straddle=1)
    rounding = fields.pop("rounding", "nearest")
    check_straddle(f, 4)                       # the allowed ones
    check_straddle({**f, "kind": 1}, 4)
    with pytest.raises(ValueError, match=why):
        check_straddle({**f, **fields}, 4, rounding)


def test_a_pass_touches_at_most_four_pixels():
    """``P/3 <= O``: on 32 lanes 11 lane channels straddle (a pass of 32 pairs touches up to
    ceil(31 / 11) + 1 = 4 pixels, an accumulator lane up to ceil(32 / 11) = 3 pixels' products),
    10 do not (the pass from channel 8 ends on pixel 3's channel 9: the next starts four pixels
    on); both kinds alike."""
    from ttsnn.gen.backward.cyclemodel import check_straddle, straddle_passes
    for kind in (0, 1):
        f = dict(kind=kind, out_channels=11, pack=0, use_schedule=0, straddle=1)
        check_straddle(f, 32)
        with pytest.raises(ValueError, match="P/3"):
            check_straddle({**f, "out_channels": 10}, 32)
    assert max(px for _, px in straddle_passes(32, 11, 32)) == 4
