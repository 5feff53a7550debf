"""Data-parallel training (sw.ddp): 2 CPU processes with global batch B train what one process
with batch B trains, resumed or not, through torch.multiprocessing and through torchrun."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from ttsnn.sw.ddp import part_bounds, shard_batches
from ttsnn.sw.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]
# global batch 12 over 40 samples: batches of 12, 12, 12, 4 (the last split 2 + 2); augmentation
# on, so the ranks' parts of one batch must get the draws of the whole batch
BASE = dict(arch="tiny", mode="ptt", ranks="uniform:4", timesteps=2, dataset="digits", size=8,
            batch_size=12, seed=5, threads=1, max_train_samples=40, max_test_samples=30, augment=True,
            lr=0.05, scheduler="constant")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _weights(path):
    return torch.load(path, weights_only=True)["model"]["state_dict"]


def _assert_same_model(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if a[k].is_floating_point():
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
        else:
            assert torch.equal(a[k], b[k]), k


def test_shard_batches_splits_every_global_batch_into_contiguous_parts():
    order = list(range(100, 111))                  # 11 samples, global batch 4: 4, 4, 3
    parts = [shard_batches(order, 4, r, 2) for r in range(2)]
    assert parts[0] == [[100, 101], [104, 105], [108, 109]]
    assert parts[1] == [[102, 103], [106, 107], [110]]
    assert [part_bounds(7, r, 3) for r in range(3)] == [(0, 3), (3, 5), (5, 7)]
    # a last batch smaller than the number of ranks would leave a rank empty: dropped by all
    assert shard_batches(list(range(9)), 4, 2, 3) == [[3], [7]]


def _rank(rank, world, port, out, log_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    logs = []
    train(TrainConfig(**BASE, epochs=1, out=out).validate(), progress=False, log=logs.append)
    os.environ["MASTER_PORT"] = str(port + 1)      # a fresh process group for the resumed run
    train(TrainConfig(**BASE, epochs=2, out=out).validate(), resume=True, progress=False, log=logs.append)
    Path(log_dir, f"log{rank}").write_text("\n".join(logs))


def test_two_processes_with_global_batch_b_train_what_one_process_does(tmp_path):
    ref = tmp_path / "single"
    train(TrainConfig(**BASE, epochs=2, out=str(ref)).validate(), progress=False, log=lambda s: None)
    ddp = tmp_path / "ddp"
    port = _free_port()
    # fork: the children reuse this process's imports (spawn pays ~10 s of torch imports on a
    # loaded 2-core machine); safe here, the parent holds no process group and runs 1 thread
    mp.start_processes(_rank, args=(2, port, str(ddp), str(tmp_path)), nprocs=2, join=True,
                       start_method="fork")
    # stopped after epoch 1 and resumed under DDP, against an uninterrupted single process
    _assert_same_model(_weights(ddp / "last.pt"), _weights(ref / "last.pt"))
    rows = [json.loads(l) for l in (ddp / "metrics.jsonl").read_text().splitlines()]
    want = [json.loads(l) for l in (ref / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == len(want) == 2
    for r, w in zip(rows, want):
        for k in ("train_loss", "train_acc", "test_loss", "test_acc"):
            assert r[k] == pytest.approx(w[k], rel=1e-4, abs=1e-6), k
    # rank 0 alone logs (and writes); the other rank is silent
    assert "data parallel over 2 processes" in (tmp_path / "log0").read_text()
    assert (tmp_path / "log1").read_text() == ""
    assert sorted(p.name for p in ddp.iterdir()) == ["config.json", "last.pt", "metrics.jsonl", "summary.json"]


def _rank_per_rank_bn(rank, world, port, out):
    import ttsnn.sw.ddp
    from ttsnn import sw
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    sw.ddp.convert_sync_batchnorm = lambda model: 0     # each rank normalises with its own part
    train(TrainConfig(**BASE, epochs=1, out=out).validate(), progress=False, log=lambda s: None)


def test_without_global_batch_statistics_the_runs_differ(tmp_path):
    """Why sw.ddp synchronises BatchNorm: with per-rank statistics (torch's default under DDP)
    two processes train another model than one process, far beyond float rounding."""
    train(TrainConfig(**BASE, epochs=1, out=str(tmp_path / "one")).validate(), progress=False, log=lambda s: None)
    mp.start_processes(_rank_per_rank_bn, args=(2, _free_port(), str(tmp_path / "two")), nprocs=2, join=True,
                       start_method="fork")
    a, b = _weights(tmp_path / "one" / "last.pt"), _weights(tmp_path / "two" / "last.pt")
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) > 1e-3


def test_torchrun_runs_the_command_line(tmp_path):
    args = ["--arch", "tiny", "--mode", "ptt", "--ranks", "uniform:4", "-T", "2", "--dataset", "digits",
            "--size", "8", "--batch-size", "12", "--seed", "5", "--threads", "1", "--max-train-samples", "40",
            "--max-test-samples", "30", "--lr", "0.05", "--scheduler", "constant", "--epochs", "1", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(_free_port()), "-m", "ttsnn.sw", "train", *args,
                           "--out", str(tmp_path / "ddp")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])       # one summary: rank 0's
    assert summary["processes"] == 2 and summary["epochs"] == 1
    train(TrainConfig(**{**BASE, "augment": None}, epochs=1, out=str(tmp_path / "one")).validate(),
          progress=False, log=lambda s: None)
    _assert_same_model(_weights(tmp_path / "ddp" / "last.pt"), _weights(tmp_path / "one" / "last.pt"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_is_one_clear_line(tmp_path, capsys):
    from ttsnn.sw.__main__ import main
    from ttsnn.sw.cli_util import run_cli
    assert run_cli(main, ["train", "--device", "cuda", "--out", str(tmp_path / "r")], prog="sw") == 2
    err = capsys.readouterr().err.strip()
    assert "--device cuda: no CUDA device is available" in err and "--device cpu" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "r").exists()
