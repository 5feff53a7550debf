"""The demo's energy step: training energy of the demo network on the paper accelerator.

Listed in ``python -m sw demo``'s steps (imported only when the step runs). The spike and gradient sparsity are
measured on the demo's trained PTT model (real runs preferred to defaults), then one BPTT
training step of the same network in every mode is costed on the proposed accelerator.
"""

from __future__ import annotations

__all__ = ["step_energy"]

DEMO_ACCEL = "proposed"
DEMO_CONFIG = "paper"


def step_energy(ctx) -> None:
    import torch

    from ttsnn.gen.config import load_config
    from ttsnn.sw.checkpoint import load_model
    from ttsnn.sw.data import load_dataset

    from .counts import Sparsity
    from .energy_table import load_energy_table
    from .evaluate import Workload, evaluate_modes
    from .sparsity import measure_sparsity

    ckpt = ctx.path("ptt.pt")
    if not ckpt.is_file():
        ctx.failed.append(f"energy: {ckpt} missing (the train_ptt step did not run)")
        return
    model, meta = load_model(str(ckpt))
    hp = meta["model"]["hparams"]
    dataset = meta.get("config", {}).get("dataset", "digits")
    _, test, info = load_dataset(dataset, None, timesteps=hp["timesteps"])
    loader = torch.utils.data.DataLoader(test, batch_size=32, shuffle=False)

    def batches(n: int = 4):
        for i, (x, y) in enumerate(loader):
            if i >= n:
                break
            yield (x.transpose(0, 1).contiguous() if info.events else x), y

    measured = measure_sparsity(model, batches(), source=f"measured: {ckpt} on {dataset}")
    sparsity = Sparsity(spike=measured["spike"], grad=measured["grad"],
                        per_layer=measured.get("per_layer", {}), source=measured["source"])
    size = hp["input_size"]
    workload = Workload(hp["arch"], hp["in_channels"], (size, size) if isinstance(size, int) else tuple(size),
                        hp["num_classes"], hp["timesteps"], hp.get("ranks"), hp.get("schedule"))
    cfg = load_config(DEMO_CONFIG)
    results = evaluate_modes(workload, DEMO_ACCEL, cfg, load_energy_table(), sparsity)
    stt = results["stt"].total_pj
    summary = [f"training energy of one sample (forward + backward + weight update) on the "
               f"'{DEMO_ACCEL}' accelerator ({cfg.name} configuration), measured spike sparsity "
               f"{sparsity.spike:.2f}, gradient sparsity {sparsity.grad:.2f}:"]
    for mode, net in results.items():
        summary.append(f"  {mode:5s} {net.total_pj / 1e6:8.3f} uJ ({(net.total_pj / stt - 1) * 100:+.1f}% vs STT)")
    ctx.log("\n".join(summary))
    ctx.results["energy"] = {"summary": summary, "accel": DEMO_ACCEL, "config": cfg.name,
                             "total_pj": {m: n.total_pj for m, n in results.items()},
                             "sparsity": {"spike": sparsity.spike, "grad": sparsity.grad}}

