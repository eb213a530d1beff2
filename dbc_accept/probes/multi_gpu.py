"""Probe: GPUs working together. P2P access matrix; NCCL all-reduce exactness and bus
bandwidth per message size (nccl-tests' busbw = algbw x 2(n-1)/n); DDP training over all GPUs
(one process per GPU) against the same training on one GPU.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dbcprobe

SIZES_MIB = (1, 16, 128, 1024)


def busbw(nbytes, seconds, ranks):
    """(algbw, busbw) in GB/s for an all-reduce of ``nbytes`` taking ``seconds``."""
    alg = nbytes / seconds / 1e9
    return alg, alg * 2.0 * (ranks - 1) / ranks


def sync(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def allreduce(torch, dist, rank, world, device, reps, sizes_mib=SIZES_MIB):
    out = []
    for mib in sizes_mib:
        n = (mib << 20) // 4
        x = torch.empty(n, dtype=torch.float32, device=device)
        exact = True
        for _ in range(3):  # warm-up, and exactness: integers sum exactly in fp32
            x.fill_(rank + 1)
            dist.all_reduce(x)
            exact = exact and bool((x == world * (world + 1) / 2).all())
        sync(torch, device)
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(reps):
            dist.all_reduce(x)
        sync(torch, device)
        seconds = (time.perf_counter() - t0) / reps
        alg, bus = busbw(mib << 20, seconds, world)
        out.append({"bytes": mib << 20, "exact": exact, "algbw_GBps": alg, "busbw_GBps": bus})
        del x
    return out


def train_steps(torch, model, steps, batch, seed, lr, device, rank=0, world=1):
    """Loss per step on the global batch; each rank trains on its slice of it."""
    images, labels = dbcprobe.make_task(torch, seed, steps * batch)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    per = batch // world
    losses = []
    for step in range(steps):
        lo = step * batch + rank * per
        x, y = images[lo:lo + per].to(device), labels[lo:lo + per].to(device)
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return losses


def params_vector(torch, model):
    return torch.cat([p.detach().double().cpu().flatten() for p in model.parameters()])


def worker(rank, world, port, outdir, cfg):
    import torch
    import torch.distributed as dist
    device = setup(torch, cfg["device"], rank)
    dist.init_process_group(cfg["backend"], init_method="tcp://127.0.0.1:%d" % port, rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=120))
    doc = {"rank": rank}
    try:
        doc["allreduce"] = allreduce(torch, dist, rank, world, device, cfg["reps"],
                                     cfg["sizes_mib"])
        model = dbcprobe.init_model(torch, cfg["seed"]).to(device)
        ids = [rank] if device.type == "cuda" else None
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        losses = train_steps(torch, ddp, cfg["steps"], cfg["batch"], cfg["seed"], cfg["lr"],
                             device, rank, world)
        mean = torch.stack(losses)
        dist.all_reduce(mean)  # slices are equal, so the mean of means is the batch mean
        doc["losses"] = (mean / world).cpu().tolist()
        if rank == 0:
            torch.save(params_vector(torch, model), os.path.join(outdir, "params.pt"))
    finally:
        dist.destroy_process_group()
    with open(os.path.join(outdir, "rank%d.json" % rank), "w") as fh:
        json.dump(doc, fh)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(torch, world, cfg, limit):
    """Run ``worker`` in one process per GPU; terminate them all past ``limit`` seconds."""
    import torch.multiprocessing as mp
    outdir = tempfile.mkdtemp(prefix="dbc-ddp-")
    ctx = mp.start_processes(worker, args=(world, free_port(), outdir, cfg), nprocs=world,
                             join=False, start_method="spawn")
    deadline = dbcprobe.deadline_after(limit)
    try:
        while not ctx.join(timeout=1):
            if dbcprobe.past(deadline):
                raise RuntimeError("DDP processes still running after %d s" % limit)
    finally:
        for proc in ctx.processes:
            if proc.is_alive():
                proc.terminate()
    ranks = []
    for rank in range(world):
        with open(os.path.join(outdir, "rank%d.json" % rank)) as fh:
            ranks.append(json.load(fh))
    return ranks, torch.load(os.path.join(outdir, "params.pt"))


def p2p_matrix(torch, count):
    return [[i == j or bool(torch.cuda.can_device_access_peer(i, j)) for j in range(count)]
            for i in range(count)]


def setup(torch, kind, rank):
    """The device of ``rank``, set up for reproducible fp32 work."""
    if kind == "cpu":  # the logic check: gloo over processes on the CPU
        torch.set_num_threads(1)
        return torch.device("cpu")
    dbcprobe.set_tf32(torch, False)
    torch.backends.cudnn.deterministic = True
    torch.cuda.set_device(rank)
    return torch.device("cuda", rank)


def collect(args):
    cuda = args.device == "cuda"
    torch = dbcprobe.import_torch(need_cuda=cuda)
    count = torch.cuda.device_count() if cuda else args.world
    doc = {"count": count, "p2p": p2p_matrix(torch, count) if cuda else None}
    if count < 2:
        return doc
    dist = getattr(torch, "distributed", None)
    if dist is None or not dist.is_available() or (cuda and not dist.is_nccl_available()):
        raise dbcprobe.Unavailable("torch %s has no NCCL support" % torch.__version__)
    cfg = {"steps": args.steps, "batch": args.batch * count, "seed": args.seed,
           "lr": args.lr, "reps": args.reps, "device": args.device,
           "backend": "nccl" if cuda else "gloo", "sizes_mib": SIZES_MIB if cuda else (1,)}
    ranks, ddp_params = spawn(torch, count, cfg, args.limit)
    device = setup(torch, args.device, 0)
    model = dbcprobe.init_model(torch, cfg["seed"]).to(device)
    single = train_steps(torch, model, cfg["steps"], cfg["batch"], cfg["seed"], cfg["lr"],
                         device)
    single_params = params_vector(torch, model)
    doc.update({
        "allreduce": [r["allreduce"] for r in ranks],
        "ddp_losses": ranks[0]["losses"],
        "single_losses": [float(x) for x in single],
        "params_max_abs_diff": float((ddp_params - single_params).abs().max()),
        "params_max_abs": float(single_params.abs().max()),
    })
    return doc


def parser():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=32, help="samples per GPU per step")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--limit", type=float, default=240.0, help="seconds for the DDP processes")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                   help="cpu: gloo over --world processes (checks the logic without GPUs)")
    p.add_argument("--world", type=int, default=2, help="processes with --device cpu")
    return p


if __name__ == "__main__":
    dbcprobe.main(collect, parser())
