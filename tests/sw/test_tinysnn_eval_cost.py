"""Labelling and voting, memory accounting, energy pricing and reward-based selection."""

import pytest
import torch

from ttsnn.model.energy_table import load_energy_table
from ttsnn.sw.tinysnn import cost, labels
from ttsnn.sw.tinysnn.config import SNNConfig
from ttsnn.sw.tinysnn.fixedpoint import FixedPoint, QuantSpec
from ttsnn.sw.tinysnn.network import OpCounts
from ttsnn.sw.tinysnn.select import pareto_front, reward, select


def test_labelling_by_highest_mean_class_response_and_voting():
    # 4 neurons, 3 classes; neuron 3 never fires
    counts = torch.tensor([[5.0, 0, 1, 0],    # class 0
                           [3.0, 0, 0, 0],    # class 0
                           [0.0, 4, 2, 0],    # class 1
                           [1.0, 0, 3, 0]])   # class 2
    y = torch.tensor([0, 0, 1, 2])
    a = labels.assign_labels(counts, y, 3)
    # neuron 2: class means 0.5 (0), 2 (1), 3 (2) -> class 2
    assert a.tolist() == [0, 1, 2, -1]
    test = torch.tensor([[1.0, 0, 0, 9], [0.0, 1, 0, 0], [0.0, 0, 0, 0], [2.0, 0, 3, 0]])
    pred = labels.predict(test, a, 3)
    # the never-firing neuron does not vote; an image with no spikes goes to class 0 (tie)
    assert pred.tolist() == [0, 1, 0, 2]
    assert labels.accuracy(pred, torch.tensor([0, 1, 2, 2])) == 0.75
    cm = labels.confusion_matrix(pred, torch.tensor([0, 1, 2, 2]), 3)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]


def test_voting_averages_over_a_class_s_neurons():
    a = torch.tensor([0, 0, 0, 1])
    # class 0 fires 6 spikes over 3 neurons (mean 2), class 1 fires 3 with one neuron (mean 3)
    assert labels.predict(torch.tensor([[2.0, 2, 2, 3]]), a, 2).tolist() == [1]


def test_label_shapes_are_checked():
    with pytest.raises(ValueError, match="labels must be"):
        labels.assign_labels(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="0..1"):
        labels.assign_labels(torch.zeros(2, 2), torch.tensor([0, 5]), 2)


def test_memory_accounting_by_hand():
    tiny = SNNConfig(variant="tinysnn", n_inputs=784, n_neurons=400).validate()
    base = tiny.with_(variant="baseline")
    fp32 = QuantSpec()
    assert cost.memory_bits(tiny, fp32) == 784 * 400 * 32 + 400 * 32 * 2 + 32
    assert cost.memory_bits(base, fp32) == 784 * 400 * 32 + 400 * 32 * 3 + 2 * 32
    w8 = QuantSpec(weight=FixedPoint(8))
    assert cost.memory_bits(tiny, w8) == 784 * 400 * 8 + 400 * 32 * 2 + 32
    all8 = QuantSpec(weight=FixedPoint(8), membrane=FixedPoint(8, 4, True), threshold=FixedPoint(8, 4))
    assert cost.memory_bits(tiny, all8) == 784 * 400 * 8 + 400 * 8 * 2 + 32
    # the ratios the paper quotes follow: just under 4x for 8-bit weights with FP32 neurons
    assert cost.memory_bits(tiny, fp32) / cost.memory_bits(tiny, w8) == pytest.approx(
        (313600 * 32 + 25632) / (313600 * 8 + 25632))


def test_primitive_energies_come_from_the_table_and_scale_with_width():
    t = load_energy_table()
    assert cost.op_energy_pj(t, "add", 16) == 0.092
    assert cost.op_energy_pj(t, "add", 32) == pytest.approx(0.184)        # linear in bits
    assert cost.op_energy_pj(t, "mul", 32) == pytest.approx(1.28 * 4)     # quadratic for multipliers
    assert cost.op_energy_pj(t, "add", 4) == pytest.approx(0.042 / 2)     # below the smallest: scaled from 8
    with pytest.raises(KeyError):
        cost.op_energy_pj(t, "divide", 8)


def test_energy_is_counts_times_costs_per_image():
    cfg = SNNConfig(n_inputs=64, n_neurons=100).validate()
    spec = QuantSpec(weight=FixedPoint(8), membrane=FixedPoint(16, 6, True))
    t = load_energy_table()
    costs = cost.operation_costs_pj(cfg, spec, t)
    # a synaptic event reads one 8-bit weight from a 6,400-byte SRAM and adds at 16 bits
    assert costs["syn_events"] == pytest.approx(t.sram_access(6400, 8, "read") + 0.092)
    assert costs["exc_updates"] == pytest.approx(t.energy("lif", "update", 16))
    ops = OpCounts(syn_events=1000, exc_updates=200, images=2)
    e = cost.energy_pj(ops, costs)
    assert e["total"] == pytest.approx((1000 * costs["syn_events"] + 200 * costs["exc_updates"]) / 2)


def _cands():
    return [{"name": "fp32", "accuracy": 0.90, "memory_bits": 100, "fp32_memory_bits": 100},
            {"name": "w8", "accuracy": 0.89, "memory_bits": 30, "fp32_memory_bits": 100},
            {"name": "w4", "accuracy": 0.60, "memory_bits": 15, "fp32_memory_bits": 100},
            {"name": "bad", "accuracy": 0.50, "memory_bits": 40, "fp32_memory_bits": 100}]


def test_reward_and_selection_per_mu_by_hand():
    assert reward(0.9, 30, 100, 0.5) == pytest.approx(0.75)
    sel = {s["mu"]: s["name"] for s in select(_cands(), [0.0, 0.1, 3.0])}
    # mu 0: best accuracy; mu 0.1: 0.89 - 0.03 = 0.86 beats 0.80; mu 3: 0.60 - 0.45 = 0.15 beats 0.89 - 0.9
    assert sel == {0.0: "fp32", 0.1: "w8", 3.0: "w4"}
    with pytest.raises(ValueError, match="mu must be"):
        select(_cands(), [-1.0])
    with pytest.raises(ValueError, match="lacks"):
        select([{"name": "x"}], [0.0])


def test_pareto_front_by_hand():
    c = _cands()
    assert [c[i]["name"] for i in pareto_front(c)] == ["w4", "w8", "fp32"]
