"""Amaranth expression builders for the helper operations of docs/numerics.md.

The only place in gen/ that spells out ``rshift``, ``sat_b`` and ``wrap_b`` in hardware;
every unit builds its arithmetic from these.
"""

from __future__ import annotations

from amaranth.hdl import Const, Mux, Value, signed

__all__ = ["rshift", "rshift_partial", "rshift_round", "grad_round", "saturate", "wrap", "lane",
           "signed_max", "signed_min", "lowbias32", "GRAD_ROUNDING_MODES"]

#: The backward pass's rounding modes (docs/numerics.md, "Helper operations of the backward
#: pass"); the same tuple as ``gen.config.GRADIENT_ROUNDINGS``.
GRAD_ROUNDING_MODES = ("nearest", "floor", "stochastic")


def signed_max(bits: int) -> int:
    return (1 << (bits - 1)) - 1


def signed_min(bits: int) -> int:
    return -(1 << (bits - 1))


def rshift(value: Value, shift: Value, rnd: Value) -> Value:
    """``rshift(v, s, rnd)``: ``v`` if ``s == 0``, else ``floor((v + rnd*2^(s-1)) / 2^s)``.

    Computed as ``((v >> (s-1)) + rnd) >> 1``, which equals the definition for ``s >= 1``
    (the low bits dropped by the first shift cannot carry into the rounding bit) and keeps
    the adder one bit wider than ``v`` (it never wraps). Result is signed, ``len(v)`` bits.
    """
    return rshift_round(rshift_partial(value, shift), shift, rnd)


def rshift_partial(value: Value, shift: Value) -> Value:
    """The first half of :func:`rshift`, the barrel shift: ``v >> (s - 1)`` (``v`` if
    ``s == 0``), signed, ``len(v)`` bits. A pipeline may register it before
    :func:`rshift_round`."""
    v = value.as_signed()
    return (v >> Mux(shift == 0, 0, (shift - 1)[:len(shift)])).as_signed()


def rshift_round(partial: Value, shift: Value, rnd: Value) -> Value:
    """The second half of :func:`rshift`, the rounding: ``(partial + rnd) >> 1`` (``partial``
    itself if ``s == 0``), signed, ``len(partial)`` bits."""
    v = partial.as_signed()
    rounded = (v + rnd) >> 1
    return Mux(shift == 0, v, rounded[:len(v)].as_signed()).as_signed()


def grad_round(value: Value, shift: Value, mode: str, dither: Value | None = None) -> Value:
    """``round_s(v)`` of the backward pass for a shift ``s >= 0`` (docs/numerics.md):
    ``nearest`` is :func:`rshift` with ``rnd = 1``, ``floor`` with ``rnd = 0``, ``stochastic``
    ``floor((v + (dither mod 2^s)) / 2^s)`` with ``dither`` the element's 32 hashed bits
    (``s <= 32``, checked by the driver). The rounding mode is a build-time choice (the
    configuration's ``gradients.rounding``), not a descriptor field. Result: signed,
    ``len(v) + 1`` bits for ``stochastic`` (the dither's add), else ``len(v)`` bits."""
    if mode == "nearest":
        return rshift(value, shift, Const(1, 1))
    if mode == "floor":
        return rshift(value, shift, Const(0, 1))
    if mode != "stochastic" or dither is None:
        raise ValueError(f"grad_round: mode must be one of {GRAD_ROUNDING_MODES} (stochastic needs "
                         f"the dither bits), got {mode!r}")
    v = value.as_signed()
    mask = (Const(1, 33) << shift)[:33] - 1                      # 2^s - 1, s <= 32
    total = (v + (dither[:32] & mask[:32]).as_unsigned()).as_signed()  # len(v) + 1 bits at most
    return (total >> shift)[:len(v) + 1].as_signed()


def lowbias32(value: Value) -> Value:
    """``lowbias32(x)`` of docs/numerics.md on 32 bits (the stochastic rounding's hash):
    ``x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b; x ^= x >> 16``, every
    product taken modulo 2^32. Unsigned, 32 bits."""
    x = value.as_unsigned()[:32]
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D)[:32]
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B)[:32]
    return (x ^ (x >> 16))[:32]


def saturate(value: Value, bits: int) -> Value:
    """``sat_b(v)``: clamp a signed value into ``bits`` bits (result is ``signed(bits)``)."""
    v = value.as_signed()
    if len(v) <= bits:
        return v.as_signed()
    hi, lo = signed_max(bits), signed_min(bits)
    return Mux(v > hi, Const(hi, signed(bits)),
               Mux(v < lo, Const(lo, signed(bits)), v[:bits].as_signed()))


def wrap(value: Value, bits: int) -> Value:
    """``wrap_b(v)``: keep the low ``bits`` bits, signed."""
    return value[:bits].as_signed()


def lane(flat: Value, index: int, bits: int) -> Value:
    """Lane ``index`` (``bits`` wide, signed) of a flat vector, lane 0 in the low bits."""
    return flat[index * bits:(index + 1) * bits].as_signed()
