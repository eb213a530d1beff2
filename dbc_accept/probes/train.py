"""Probe: train a small CNN on a synthetic task on each GPU; compare inference with the CPU.

Every device starts from the same weights (built on the CPU from one seed) and sees the same
batches, so the loss curves of healthy GPUs agree; TF32 is off and cuDNN deterministic so
that they agree closely.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dbcprobe


def train(torch, device, steps, batch, seed, lr, width):
    """Loss per step and final accuracy on held-out data, with backward and optimizer step."""
    model = dbcprobe.init_model(torch, seed, width).to(device)
    images, labels = dbcprobe.make_task(torch, seed, steps * batch)
    test_x, test_y = dbcprobe.make_task(torch, seed, 1024)  # same templates, fresh noise
    test_x, test_y = test_x[-512:], test_y[-512:]
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    losses = []
    t0 = time.time()
    for step in range(steps):
        x = images[step * batch:(step + 1) * batch].to(device)
        y = labels[step * batch:(step + 1) * batch].to(device)
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        pred = model(test_x.to(device)).argmax(1).cpu()
    accuracy = float((pred == test_y).float().mean())
    return {"losses": losses, "accuracy": accuracy, "seconds": time.time() - t0}


def infer(torch, device, seed, width):
    """Outputs of the seeded model on a fixed batch (fp32, eval mode)."""
    model = dbcprobe.init_model(torch, seed + 1, width).to(device).eval()
    x, _ = dbcprobe.make_task(torch, seed + 1, 256)
    with torch.no_grad():
        return model(x.to(device)).double().cpu()


def deterministic(torch):
    dbcprobe.set_tf32(torch, False)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def collect(args):
    torch = dbcprobe.import_torch(need_cuda=args.device != "cpu")
    deterministic(torch)
    torch.set_num_threads(1)  # the CPU work is tiny: threads only contend
    cfg = (args.steps, args.batch, args.seed, args.lr, args.width)
    cpu_out = infer(torch, torch.device("cpu"), args.seed, args.width)
    doc = {"steps": args.steps, "batch": args.batch, "gpus": []}
    if args.device == "cpu" or args.cpu_train:
        doc["cpu"] = train(torch, torch.device("cpu"), *cfg)
    if args.device == "cpu":
        return doc
    for i in range(torch.cuda.device_count()):
        device = torch.device("cuda", i)
        entry = {"index": i, "name": torch.cuda.get_device_name(i)}
        try:
            entry.update(train(torch, device, *cfg))
            out = infer(torch, device, args.seed, args.width)
            entry["infer_max_abs_diff"] = float((out - cpu_out).abs().max())
            entry["infer_finite"] = bool(torch.isfinite(out).all())
        except Exception as exc:  # one broken GPU must not hide the others' results
            entry["error"] = "%s: %s" % (type(exc).__name__, exc)
        doc["gpus"].append(entry)
    return doc


def parser():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--cpu-train", action="store_true", help="also train on the CPU")
    return p


if __name__ == "__main__":
    dbcprobe.main(collect, parser())
