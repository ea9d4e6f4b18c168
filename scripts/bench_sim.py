"""Speed of the simulator and of the on-the-fly training data.

Usage (one core for the simulator numbers, as the targets assume)::

    OMP_NUM_THREADS=1 python scripts/bench_sim.py
    python scripts/bench_sim.py --skip-sim --loader-workers 0 1 2 --train-steps 30

Targets: <= 2 ms per clean 64 x 64 tile, <= 0.5 s per clean+acquired 512 x 512 frame,
augmentation well under 1 ms per sample. Single-process timings are CPU time of this process
(``time.process_time``), so other jobs on a shared machine distort them less; DataLoader and
training numbers are wall-clock samples per second. ``--train-steps`` also times a CamNet
forward+backward loop fed by the DataLoader, to choose ``num_workers`` on a small CPU.
"""

from __future__ import annotations

import argparse
import gc
import logging
import time

import torch

from stem2d.classes import ClassSet
from stem2d.data.simulated import SimulatedDataModule
from stem2d.materials import get_material
from stem2d.models.nets import CamNet
from stem2d.sim.imaging import Acquisition, Probe, acquire, render_haadf
from stem2d.sim.lattice import mx2_columns
from stem2d.sim.tiles import simulate_tile

log = logging.getLogger("bench_sim")
WS2 = get_material("WS2")


def bench_tiles(n: int) -> float:
    """Milliseconds per clean 64 x 64 tile (random kinds of the default classes)."""
    kinds = [k for _, ks in ClassSet.from_mapping(None).kinds for k in ks] + [None]
    start = time.process_time()
    for i in range(n):
        simulate_tile(kinds[i % len(kinds)], material=WS2, rng=i)
    return (time.process_time() - start) / n * 1e3


def bench_frames(n: int, size_px: int = 512, pixel_size_A: float = 0.3) -> float:
    """Seconds per clean + acquired frame (mx2_columns + render_haadf + acquire)."""
    extent = (size_px * pixel_size_A,) * 2
    start = time.process_time()
    for i in range(n):
        cols = mx2_columns(WS2, extent_A=extent, rotation_deg=7.0 * i)
        clean = render_haadf(cols, shape=(size_px, size_px), pixel_size_A=pixel_size_A, probe=Probe())
        acquire(clean, pixel_size_A=pixel_size_A, acq=Acquisition(dose_e_per_A2=3e4), rng=i)
    return (time.process_time() - start) / n


def _datamodule(num_workers: int) -> SimulatedDataModule:
    dm = SimulatedDataModule(num_workers=num_workers, persistent_workers=num_workers > 0)
    dm.setup("fit")
    return dm


def bench_samples(n: int) -> float:
    """Milliseconds per training item (augment + standardise + tensors), single process."""
    data = _datamodule(0).datasets["train"]
    data[0]
    start = time.process_time()
    for i in range(n):
        data[i]
    return (time.process_time() - start) / n * 1e3


def bench_loader(num_workers: int, n_batches: int) -> float:
    """Samples per second of the train DataLoader alone (after the first batch)."""
    loader = _datamodule(num_workers).train_dataloader()
    it = iter(loader)
    next(it)
    start = time.perf_counter()
    n = sum(len(next(it)["label"]) for _ in range(n_batches))
    rate = n / (time.perf_counter() - start)
    del it, loader
    gc.collect()  # shut persistent workers down before the next benchmark forks new ones
    return rate


def bench_training(num_workers: int, n_steps: int) -> float:
    """Samples per second of CamNet forward+backward fed by the train DataLoader."""
    dm = _datamodule(num_workers)
    net = CamNet(len(dm.class_names))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    it = iter(dm.train_dataloader())
    n, start = 0, None
    for step in range(n_steps + 1):
        batch = next(it)
        loss = torch.nn.functional.cross_entropy(net(batch["image"]), batch["label"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == 0:
            start = time.perf_counter()
        else:
            n += len(batch["label"])
    rate = n / (time.perf_counter() - start)
    del it
    gc.collect()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-tiles", type=int, default=200)
    parser.add_argument("--n-frames", type=int, default=5)
    parser.add_argument("--n-samples", type=int, default=2000)
    parser.add_argument("--skip-sim", action="store_true", help="skip tile/frame/sample timings")
    parser.add_argument("--loader-workers", type=int, nargs="*", default=[])
    parser.add_argument("--loader-batches", type=int, default=20)
    parser.add_argument("--train-steps", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.info("torch threads: %d", torch.get_num_threads())
    if not args.skip_sim:
        log.info("clean 64x64 tile:          %.2f ms (target <= 2)", bench_tiles(args.n_tiles))
        log.info("512x512 clean+acquired:    %.3f s (target <= 0.5)", bench_frames(args.n_frames))
        ms = bench_samples(args.n_samples)
        log.info("augmented training item:   %.3f ms = %.0f samples/s single process", ms, 1e3 / ms)
    for w in args.loader_workers:
        log.info("DataLoader, %d workers:     %.0f samples/s", w, bench_loader(w, args.loader_batches))
        if args.train_steps:
            log.info("train step, %d workers:     %.0f samples/s (CamNet fwd+bwd, batch 128)",
                     w, bench_training(w, args.train_steps))


if __name__ == "__main__":
    main()
