"""Training and inference throughput of the calibration ResNet-18 (patches per second).

2-D 32x32 and 3-D 16^3 patches, strided (7x7/2 + max-pool) and small (3x3/1) stems, on the CPU
and on CUDA when available. Each case runs AdamW + MSE steps on random patches for about
``--seconds`` seconds after one warm-up step, then forward passes in evaluation mode.

Usage::

    .venv/bin/python bench/bench_resnet.py [--seconds 3] [--batch 32] [--width 64] [--threads N]

Peak memory: resident set size of the process (``resource.getrusage``, CPU, monotone over the
run) or ``torch.cuda.max_memory_allocated`` per case (CUDA).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from qt1lib.calibrate import ResNet18

CASES = [
    (2, "strided", (32, 32)),
    (2, "small", (32, 32)),
    (3, "strided", (16, 16, 16)),
    (3, "small", (16, 16, 16)),
]


def run_case(dims: int, stem: str, patch: tuple[int, ...], device: torch.device, batch: int, width: int,
             seconds: float) -> dict[str, float]:
    torch.manual_seed(0)
    model = ResNet18(dims, in_channels=1, n_outputs=1, width=width, stem=stem).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn((batch, 1) + patch, device=device)
    y = torch.randn(batch, 1, device=device)
    loss_fn = torch.nn.MSELoss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    model.train()
    step()  # warm-up
    sync()
    n, tic = 0, time.perf_counter()
    while time.perf_counter() - tic < seconds:
        step()
        n += 1
    sync()
    train_s = time.perf_counter() - tic
    model.eval()
    with torch.no_grad():
        model(x)
        sync()
        m, tic = 0, time.perf_counter()
        while time.perf_counter() - tic < seconds / 2:
            model(x)
            m += 1
        sync()
        infer_s = time.perf_counter() - tic
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"train_per_s": n * batch / train_s, "infer_per_s": m * batch / infer_s, "seconds": train_s + infer_s,
            "peak_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="training time per case (s)")
    parser.add_argument("--batch", type=int, default=32, help="patches per step")
    parser.add_argument("--width", type=int, default=64, help="channels of the first stage")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, batch {args.batch}, width {args.width}")
    header = (f"{'device':>6} {'dims':>4} {'stem':>8} {'patch':>9} {'train/s':>9} {'infer/s':>9} "
              f"{'seconds':>8} {'peak MB':>8}")
    print(header)
    print("-" * len(header))
    for device in devices:
        for dims, stem, patch in CASES:
            r = run_case(dims, stem, patch, device, args.batch, args.width, args.seconds)
            print(f"{device.type:>6} {dims:>4} {stem:>8} {'x'.join(map(str, patch)):>9} {r['train_per_s']:9.0f} "
                  f"{r['infer_per_s']:9.0f} {r['seconds']:8.1f} {r['peak_mb']:8.0f}")


if __name__ == "__main__":
    main()
