"""Fixed-point formats and rounding of tinySNN (the project's one rounding implementation)."""

import math

import pytest
import torch

import ttsnn.sw.quantize
from ttsnn import sw
from ttsnn.sw.tinysnn import fixedpoint
from ttsnn.sw.tinysnn.fixedpoint import FP32, FixedPoint, QuantSpec, integer_bits_for


@pytest.mark.parametrize("x,bits", [(0.0, 0), (0.99, 0), (1.0, 1), (1.99, 1), (2.0, 2), (13.9, 4), (16.0, 5),
                                    (65.0, 7)])
def test_integer_bits_for(x, bits):
    assert integer_bits_for(x) == bits


def test_format_from_range():
    w = FixedPoint.for_range(8, 0.0, 0.97)       # weights below 1: all 8 bits are fraction
    assert (w.signed, w.int_bits, w.frac_bits, w.step, w.hi) == (False, 0, 8, 1 / 256, 255 / 256)
    w1 = FixedPoint.for_range(8, 0.0, 1.0)
    assert (w1.int_bits, w1.frac_bits) == (1, 7)
    v = FixedPoint.for_range(8, -40.0, 14.0)     # membrane: sign + 6 integer bits + 1 fraction bit
    assert (v.signed, v.int_bits, v.frac_bits, v.lo, v.hi) == (True, 6, 1, -64.0, 63.5)
    assert FixedPoint.for_range(4, -300.0, 1.0).frac_bits == 0  # saturating, never negative
    assert v.describe() == "sQ6.1" and FP32.describe() == "fp32"


def test_quantize_nearest_truncate_and_saturation_by_hand():
    f = FixedPoint(8, 1, False)  # uQ1.7, step 1/128
    x = torch.tensor([0.3, 0.5 + 0.6 / 128, 3.0, -0.2])
    # 0.3 * 128 = 38.4; 64.6 -> 65 (nearest) / 64 (truncate); 3.0 saturates at 255/128; -0.2 at 0
    assert f.quantize(x, "nearest").tolist() == [38 / 128, 65 / 128, 255 / 128, 0.0]
    assert f.quantize(x, "truncate").tolist() == [38 / 128, 64 / 128, 255 / 128, 0.0]
    s = FixedPoint(6, 3, True)   # sQ3.2, step 0.25, range [-8, 7.75]
    y = torch.tensor([-1.3, -1.125, 1.125, -20.0])
    assert s.quantize(y, "truncate").tolist() == [-1.25, -1.0, 1.0, -8.0]   # towards zero
    assert s.quantize(y, "nearest").tolist() == [-1.25, -1.25, 1.25, -8.0]  # half away from zero
    assert torch.equal(FP32.quantize(y), y)


def test_stochastic_rounding_is_unbiased_with_the_right_probabilities():
    f = FixedPoint(8, 1, False)  # step 1/128
    x = torch.full((200_000,), 10.3 / 128)
    q = f.quantize(x, "stochastic", torch.Generator().manual_seed(0)) * 128
    assert set(q.unique().tolist()) == {10.0, 11.0}          # only the two neighbours occur
    p_up = float((q == 11.0).float().mean())
    sigma = math.sqrt(0.3 * 0.7 / x.numel())
    assert abs(p_up - 0.3) < 5 * sigma                       # P(up) = fractional part
    assert abs(float(q.mean()) - 10.3) < 5 * sigma            # E[q] = x
    # deterministic modes are biased on the same data: truncation loses the 0.3 every time
    assert float((f.quantize(x, "truncate") * 128).mean()) == 10.0


def test_stochastic_rounding_is_seeded():
    f = FixedPoint(6, 0, False)
    x = torch.rand(1000, generator=torch.Generator().manual_seed(1))
    a = f.quantize(x, "stochastic", torch.Generator().manual_seed(7))
    b = f.quantize(x, "stochastic", torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_one_rounding_implementation_for_the_project():
    assert fixedpoint.round_values is sw.quantize.round_values
    assert fixedpoint.ROUNDING_MODES == sw.quantize.ROUNDING_MODES


def test_invalid_formats_and_specs_are_refused():
    with pytest.raises(ValueError, match="2..32"):
        FixedPoint(1)
    with pytest.raises(ValueError, match="cannot hold"):
        FixedPoint(4, 4, True)
    with pytest.raises(ValueError, match="unknown rounding"):
        QuantSpec(rounding="up")
    assert QuantSpec().is_fp32 and not QuantSpec(weight=FixedPoint(8)).is_fp32
