#!/usr/bin/env python3
"""PyTorch reference for nnlab's DCGAN (issue 20): the same architecture as
src/models/gan.rs, the same data (MNIST training digits 10000..60000 from $NNLAB_DATA, in
[-1, 1]), loss (BCE with logits, non-saturating G), Adam and batch, so that a G trained here
can be scored by `nnlab eval gan` beside nnlab's own. Writes G (and D beside it as
<stem>_d.safetensors) in the safetensors layout nnlab loads (g.0 dense, g.1 BN, g.2 convT,
g.3 BN, g.4 convT; d.0 conv, d.1 conv, d.2 dense).

  NNLAB_DATA=/work/shared/data target/peer-venv/bin/python tools/gan_torch_reference.py \
      --steps 1000 --out /tmp/g_torch.safetensors [--init nnlab|dcgan|torch]

--init nnlab: Kaiming normal (ReLU gain) weights, zero biases, BN gamma 1 (nnlab's default);
--init dcgan: N(0, 0.02) weights, zero biases, BN gamma N(1, 0.02) (Radford et al.);
--init torch: PyTorch's layer defaults.
CPU only, one thread (torch.set_num_threads(1)) unless --threads.
"""
import argparse
import gzip
import json
import os
import struct
import time
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load_mnist_train(data_dir):
    path = os.path.join(data_dir, "mnist", "train-images-idx3-ubyte.gz")
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, n, h, w = struct.unpack(">IIII", raw[:16])
    assert magic == 2051, "not an idx3 image file"
    x = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, h * w)
    # the page's 10,000 digits are left out, as `nnlab train gan` does
    return torch.from_numpy(x[10000:].astype(np.float32) / 255.0 * 2.0 - 1.0)


class G(nn.Module):
    def __init__(self, latent, w, extra=False):
        super().__init__()
        self.w = w
        self.l1 = nn.Linear(latent, 2 * w * 49)
        self.bn1 = nn.BatchNorm2d(2 * w)
        self.t1 = nn.ConvTranspose2d(2 * w, w, 4, 2, 1)
        self.bn2 = nn.BatchNorm2d(w)
        self.out = nn.ConvTranspose2d(w, 1, 4, 2, 1)

    def forward(self, z):
        h = self.l1(z).view(-1, 2 * self.w, 7, 7)
        h = F.relu(self.bn1(h))
        h = F.relu(self.bn2(self.t1(h)))
        return torch.tanh(self.out(h)).view(-1, 784)


class D(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.c1 = nn.Conv2d(1, w, 4, 2, 1)
        self.c2 = nn.Conv2d(w, 2 * w, 4, 2, 1)
        self.out = nn.Linear(2 * w * 49, 1)

    def forward(self, x):
        h = F.leaky_relu(self.c1(x.view(-1, 1, 28, 28)), 0.2)
        h = F.leaky_relu(self.c2(h), 0.2)
        return self.out(h.flatten(1))


def init_(model, how):
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            if how == "nnlab":
                # nnlab's fans: PyTorch's _calculate_fan_in_and_fan_out (dim 1 * receptive)
                fan_in = m.weight.shape[1] * (m.weight[0][0].numel() if m.weight.dim() > 2 else 1)
                nn.init.normal_(m.weight, 0.0, (2.0 / fan_in) ** 0.5)
                nn.init.zeros_(m.bias)
            elif how == "dcgan":
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            if how == "dcgan":
                nn.init.normal_(m.weight, 1.0, 0.02)
            else:
                nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def save_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors:
        a = t.detach().cpu().contiguous().numpy().astype("<f4")
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt", "source": "tools/gan_torch_reference.py"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def save_grid_png(path, g, latent):
    """8x8 grid (2-pixel white gaps) of G's samples in inference mode, as a grayscale PNG."""
    g.eval()
    with torch.no_grad():
        x = ((g(torch.randn(64, latent, generator=torch.Generator().manual_seed(4242))) + 1) / 2)
    g.train()
    x = x.clamp(0, 1).view(8, 8, 28, 28).numpy()
    side = 8 * 28 + 7 * 2
    img = np.ones((side, side), dtype=np.float32)
    for r in range(8):
        for c in range(8):
            img[r * 30:r * 30 + 28, c * 30:c * 30 + 28] = x[r, c]
    raw = b"".join(b"\x00" + bytes(row) for row in (img * 255).round().astype(np.uint8))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def g_tensors(g):
    out = []
    for prefix, m in [("g.0", g.l1), ("g.1", g.bn1), ("g.2", g.t1), ("g.3", g.bn2), ("g.4", g.out)]:
        out += [(f"{prefix}.weight", m.weight), (f"{prefix}.bias", m.bias)]
        if isinstance(m, nn.BatchNorm2d):
            out += [(f"{prefix}.running_mean", m.running_mean), (f"{prefix}.running_var", m.running_var)]
    return out


def d_tensors(d):
    out = []
    for prefix, m in [("d.0", d.c1), ("d.1", d.c2), ("d.2", d.out)]:
        out += [(f"{prefix}.weight", m.weight), (f"{prefix}.bias", m.bias)]
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--latent", type=int, default=100)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--lr-d", type=float, default=None)
    p.add_argument("--beta1", type=float, default=0.5)
    p.add_argument("--real-label", type=float, default=1.0)
    p.add_argument("--init", choices=["nnlab", "dcgan", "torch"], default="nnlab")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    p.add_argument("--save-every", type=int, default=0,
                   help="also write G, D and a grid every N steps as <stem>_<step>.safetensors")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x_all = load_mnist_train(os.environ.get("NNLAB_DATA", "data"))
    g, d = G(a.latent, a.width), D(a.width)
    init_(g, a.init)
    init_(d, a.init)
    opt_g = torch.optim.Adam(g.parameters(), a.lr, betas=(a.beta1, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), a.lr_d or a.lr, betas=(a.beta1, 0.999))
    bce = nn.BCEWithLogitsLoss()
    ones = torch.full((a.batch, 1), 1.0)
    real_t = torch.full((a.batch, 1), a.real_label)
    zeros = torch.zeros(a.batch, 1)
    t0, last = time.time(), time.time()
    acc_d = acc_g = acc_a = 0.0
    cnt = 0
    for step in range(a.steps):
        x = x_all[torch.randint(0, x_all.shape[0], (a.batch,))]
        z = torch.randn(a.batch, a.latent)
        # D's half: real and G(z) (detached), one update
        fake = g(z)
        ro, fo = d(x), d(fake.detach())
        ld = bce(ro, real_t) + bce(fo, zeros)
        opt_d.zero_grad()
        ld.backward()
        opt_d.step()
        # G's half: the same G(z) through the updated D (as nnlab: G's forward again, on the
        # same z; BN's batch statistics are the same)
        lg = bce(d(g(z)), ones)
        opt_g.zero_grad()
        lg.backward()
        opt_g.step()
        acc_d += ld.item()
        acc_g += lg.item()
        acc_a += ((ro > 0).float().mean().item() + (fo <= 0).float().mean().item()) / 2
        cnt += 1
        if time.time() - last > 15 or step + 1 == a.steps:
            print(f"step {step + 1}/{a.steps} D loss {acc_d / cnt:.3f} G loss {acc_g / cnt:.3f} "
                  f"D acc {100 * acc_a / cnt:.1f}% {(step + 1) / (time.time() - t0):.2f} steps/s", flush=True)
            acc_d = acc_g = acc_a = 0.0
            cnt = 0
            last = time.time()
        if a.save_every and (step + 1) % a.save_every == 0:
            save(a, g, d, f"{os.path.splitext(a.out)[0]}_{step + 1}.safetensors")
    save(a, g, d, a.out)
    print(f"trained in {time.time() - t0:.0f} s -> {a.out}")


def save(a, g, d, out):
    stem = os.path.splitext(out)[0]
    save_safetensors(out, g_tensors(g))
    save_safetensors(stem + "_d.safetensors", d_tensors(d))
    save_grid_png(stem + ".png", g, a.latent)


if __name__ == "__main__":
    main()
