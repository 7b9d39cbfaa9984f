"""gcj's jitted training step against the same model written as the reference code does, in PyTorch.

    .venv/bin/pip install torch==2.13.0   # optional bench dependency, not a requirement of gcj
    .venv/bin/python bench/train_step_vs_torch.py --out bench/results/train_step_vs_torch.json

For SDIM and Disc with the paper configs' ResNet10 (Fashion-MNIST: width 16, 32x32x1) and ResNet26
(CIFAR-10: width 32, 32x32x3, random crop and flip), batch 128, Adam: images per second of gcj's
training step (``gcj.train.create_state``'s jitted, sharded step, metrics left on the device as
``train_epoch`` leaves them) and of an eager PyTorch step of the same network, loss and optimizer
(NCHW, ``torch.nn`` modules, as the SDIM reference code), timed back to back in one process,
alternating, median of ``--steps`` after warm-up. Both use every core of the machine.
"""
import argparse
import json
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gcj import data  # noqa: E402
from gcj import train as train_lib  # noqa: E402
from gcj.recipes import paper_config  # noqa: E402
from machine import cpu_model, write_report  # noqa: E402

CASES = [("sdim", "fashion_mnist"), ("disc", "fashion_mnist"), ("sdim", "cifar10"), ("disc", "cifar10")]


def synthetic(c, batch, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batch, 32, 32, c.data.channels)).astype(np.uint8)
    labels = rng.integers(0, c.data.num_classes, batch).astype(np.int32)
    return images, labels


def gcj_stepper(c, images, labels):
    """A closure running one gcj training step (and waiting for it)."""
    trainer, state = train_lib.create_state(c, data.Split(images, labels), jax.random.key(0))
    box = dict(state=jax.device_put(state, trainer.replicated))
    x, y = trainer.to_global(images), trainer.to_global(labels)
    key = jax.random.key(1)

    def step():
        box["state"], m = trainer.step_fn(box["state"], x, y, key)
        jax.block_until_ready(box["state"]["params"])
        return m
    return step


# ------------------------------------------------------------------------------------ PyTorch

def torch_stepper(c, images, labels):
    import torch
    from torch import nn
    import torch.nn.functional as F

    def bn(n, d=2):
        return (nn.BatchNorm2d if d == 2 else nn.BatchNorm1d)(n, eps=1e-5, momentum=0.1)

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = bn(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = bn(cout)
            self.stride, self.extra = stride, cout - cin

        def forward(self, x):
            y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
            s = x
            if self.stride != 1 or self.extra:
                s = x[:, :, ::self.stride, ::self.stride]
                s = F.pad(s, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
            return F.relu(y + s)

    class ResNet(nn.Module):
        def __init__(self, cin, width, blocks, out_dim, head=256):
            super().__init__()
            self.stem, self.bn = nn.Conv2d(cin, width, 3, 1, 1, bias=False), bn(width)
            layers, w = [], width
            for stage in range(4):
                for b in range(blocks):
                    layers.append(Block(w, width * 2 ** stage, 2 if stage > 0 and b == 0 else 1))
                    w = width * 2 ** stage
            self.layers, self.blocks = nn.ModuleList(layers), blocks
            self.fc1, self.bn1, self.fc2 = nn.Linear(w, head), bn(head, 1), nn.Linear(head, out_dim)

        def forward(self, x):
            h, local = F.relu(self.bn(self.stem(x))), None
            for i, layer in enumerate(self.layers):
                h = layer(h)
                if i == 2 * self.blocks - 1:
                    local = h
            h = F.relu(self.bn1(self.fc1(h.mean((2, 3)))))
            return self.fc2(h), local.flatten(2).transpose(1, 2)  # [B, M, C]

    class Projection(nn.Module):
        def __init__(self, din, units):
            super().__init__()
            self.l1, self.b, self.l2 = nn.Linear(din, units, bias=False), bn(units, 1), nn.Linear(units, units)
            self.short = nn.Linear(din, units, bias=False)
            with torch.no_grad():
                self.short.weight.copy_(torch.eye(units, din))
            self.ln = nn.LayerNorm(units)

        def forward(self, h):
            shape = h.shape
            y = self.l1(h).reshape(-1, self.l2.in_features)
            y = F.relu(self.b(y)).reshape(*shape[:-1], -1)
            return self.ln(self.l2(y) + self.short(h))

    class SDIM(nn.Module):
        def __init__(self, cin, cfg, classes):
            super().__init__()
            self.enc = ResNet(cin, cfg.width, cfg.blocks, cfg.rep_dim)
            self.gp = Projection(cfg.rep_dim, cfg.mi_units)
            self.lp = Projection(cfg.width * 2, cfg.mi_units)
            self.mean = nn.Parameter(torch.randn(classes, cfg.rep_dim))
            self.log_std = nn.Parameter(torch.zeros(classes, cfg.rep_dim))
            self.cfg = cfg

        def loss(self, x, y):
            z, local = self.enc(x)
            scores = torch.einsum("id,jmd->ijm", self.gp(z), self.lp(local))
            b = scores.shape[0]
            pos = torch.diagonal(scores).transpose(0, 1)  # [B, M]
            eye = torch.eye(b, dtype=torch.bool)[:, :, None]
            log2 = float(np.log(2.0))
            e_pos = (log2 - F.softplus(-pos)).mean(0)
            e_neg = torch.where(eye, 0.0, F.softplus(scores) - log2).sum((0, 1)) / (b * (b - 1))
            mi = (e_pos - e_neg).mean()
            u = (z[:, None] - self.mean[None]) * torch.exp(-self.log_std)[None]
            ll = (-0.5 * (u ** 2 + float(np.log(2 * np.pi))) - self.log_std[None]).sum(-1) / self.cfg.rep_dim
            true = ll.gather(1, y[:, None])
            nll = -true.mean()
            gaps = torch.clamp(ll + self.cfg.margin - true, min=0.0) ** 2
            other = 1.0 - F.one_hot(y, ll.shape[1]).float()
            lm = ((gaps * other).sum(1) / (ll.shape[1] - 1)).mean()
            return -self.cfg.alpha * mi + self.cfg.beta * nll + self.cfg.gamma * lm

    class Disc(nn.Module):
        def __init__(self, cin, cfg, classes):
            super().__init__()
            self.net = ResNet(cin, cfg.width, cfg.blocks, classes)

        def loss(self, x, y):
            return F.cross_entropy(self.net(x)[0], y)

    torch.manual_seed(0)
    family = c.model.family
    model = (SDIM if family == "sdim" else Disc)(c.data.channels, c.model[family], c.data.num_classes)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=c.optim.lr)
    xs = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # uint8 NCHW
    ys = torch.from_numpy(labels).long()
    p, flip = c.data.crop_padding, c.data.flip
    gen = torch.Generator().manual_seed(0)

    def step():
        x = xs.float() / 255.0
        if p:  # random crop with zero padding, per image (as gcj.data.augment)
            padded = F.pad(x, (p, p, p, p))
            off = torch.randint(0, 2 * p + 1, (len(x), 2), generator=gen)
            x = torch.stack([im[:, i:i + 32, j:j + 32] for im, (i, j) in zip(padded, off.tolist())])
        if flip:
            do = torch.rand(len(x), 1, 1, 1, generator=gen) < 0.5
            x = torch.where(do, x.flip(3), x)
        loss = model.loss(x, ys)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()  # the reference code logs the loss every step
    return step


def time_alternating(steppers, steps, warmup=3):
    for s in steppers.values():
        for _ in range(warmup):
            s()
    times = {k: [] for k in steppers}
    for _ in range(steps):
        for k, s in steppers.items():
            t0 = time.perf_counter()
            s()
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--cases", default=",".join(f"{f}/{d}" for f, d in CASES))
    p.add_argument("--cpu_devices", type=int, default=0,
                   help="CPU devices gcj's step shards the batch over (0: as train.py chooses)")
    a = p.parse_args()
    import torch
    from gcj import cli

    cli.use_cpu_devices(a.cpu_devices, [a.batch])

    rows = []
    for case in a.cases.split(","):
        family, dataset = case.split("/")
        c = paper_config(family, dataset)
        with c.unlocked():
            c.batch_size = a.batch
        images, labels = synthetic(c, a.batch)
        t = time_alternating(dict(gcj=gcj_stepper(c, images, labels),
                                  torch=torch_stepper(c, images, labels)), a.steps)
        m = c.model[family]
        rows.append(dict(family=family, dataset=dataset, model=f"ResNet{8 * m.blocks + 2} width {m.width}",
                         batch=a.batch, gcj_images_per_s=a.batch / t["gcj"],
                         torch_images_per_s=a.batch / t["torch"], gcj_over_torch=t["torch"] / t["gcj"]))
        print(json.dumps(rows[-1]), flush=True)
    out = dict(command="python bench/train_step_vs_torch.py " + " ".join(sys.argv[1:]),
               cpu=cpu_model(), cpu_count=os.cpu_count(), jax=jax.__version__, torch=torch.__version__,
               torch_threads=torch.get_num_threads(), gcj_devices=jax.device_count(), xla_flags=os.environ.get("XLA_FLAGS", ""),
               steps=a.steps, rows=rows)
    write_report(out, a.out)


if __name__ == "__main__":
    main()
