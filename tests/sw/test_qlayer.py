"""QuantTTLayer: the integer layer format validates shapes, values and schedules."""

from __future__ import annotations

import numpy as np
import pytest

from ttsnn.gen.config import load_config
from ttsnn.sw.qlayer import QuantTTLayer


def make(r: int = 3, cin: int = 5, cout: int = 4, **kw) -> QuantTTLayer:
    rng = np.random.default_rng(0)
    args = dict(mode="ptt", w1=rng.integers(-8, 8, (r, cin)), w2=rng.integers(-8, 8, (r, r, 3)),
                w3=rng.integers(-8, 8, (r, r, 3)), w4=rng.integers(-8, 8, (cout, r)),
                shift1=1, shift2=2, shift3=3, scale=np.ones((2, cout), int), affine_shift=0,
                bias=np.zeros(cout, int), threshold=128)
    args.update(kw)
    return QuantTTLayer(**args)


def test_shapes_and_round_trip() -> None:
    q = make()
    assert (q.rank, q.in_channels, q.out_channels) == (3, 5, 4)
    again = QuantTTLayer.from_npz_dict(q.to_npz_dict())
    for name in ("w1", "w2", "w3", "w4", "scale", "bias"):
        np.testing.assert_array_equal(getattr(again, name), getattr(q, name))
    assert again.threshold == q.threshold and again.mode == q.mode


def test_arrays_are_read_only() -> None:
    q = make()
    with pytest.raises(ValueError):
        q.w1[0, 0] = 1


@pytest.mark.parametrize("kw, match", [
    (dict(mode="tucker"), "mode"),
    (dict(w2=np.zeros((3, 3, 2))), "w2"),
    (dict(w4=np.zeros((4, 2))), "w4"),
    (dict(shift1=-1), "shift1"),
    (dict(round=2), "round"),
    (dict(w1=np.full((3, 5), 0.5)), "integers"),
    (dict(schedule=(True, False)), "only HTT"),
])
def test_invalid_layers_are_rejected(kw, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make(**kw)


def test_htt_schedule_defaults_to_first_half_and_checks_length() -> None:
    q = make(mode="htt")
    assert q.full_timesteps(4) == (True, True, False, False)
    assert q.full_timesteps(5) == (True, True, True, False, False)
    q = make(mode="htt", schedule=(True, False, True))
    assert q.full_timesteps(3) == (True, False, True)
    with pytest.raises(ValueError, match="T=4"):
        q.full_timesteps(4)


def test_values_outside_the_formats_are_named() -> None:
    widths = load_config("small").widths
    make().check_fits(widths)
    with pytest.raises(ValueError, match="w3.*signed 8 bits"):
        make(w3=np.full((3, 3, 3), 200)).check_fits(widths)
    with pytest.raises(ValueError, match="leak_mul"):
        make(leak_mul=1000).check_fits(widths)
