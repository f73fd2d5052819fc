#!/usr/bin/env python3
"""PyTorch twin of `nnlab bench`: the same shapes, FLOP counts and models (DnCNN 10x48 with
BatchNorm, the GAN width 32), float32, NCHW. Run by tools/peer_bench.sh (CPU) and
tools/gpu_check.sh (CUDA), which put both side by side; alone:
`peer_bench.py --threads 1 --seconds 1 [--clock cpu] [--json]`.

--clock cpu times with the process's CPU time (time.process_time), as NNLAB_BENCH_CLOCK=cpu does
for nnlab: at one thread this is the work's own time even when other processes share the core.
--device cuda runs on the GPU with cuDNN in float32 (TF32 off, cuDNN's benchmark mode picks the
fastest algorithm per shape), each call synchronised as nnlab's bench waits for its GPU.
--sections picks what runs (ops, dncnn, gan, photo); photo is DnCNN 17x64 on one gray --photo
WxH image (the whole image at once), like `nnlab bench --photo`.
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--seconds", type=float, default=1.0)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
ap.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu",
                help="auto: cuda where PyTorch sees a GPU, else cpu")
ap.add_argument("--sections", default="ops,dncnn,gan", help="comma-separated: ops,dncnn,gan,photo")
ap.add_argument("--photo", default="4000x3000", help="WxH of the photo section's gray image")
a = ap.parse_args()
sections = set(a.sections.split(","))
dev = "cuda" if a.device == "cuda" or (a.device == "auto" and torch.cuda.is_available()) else "cpu"
if dev == "cuda":
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
torch.set_num_threads(a.threads)
torch.set_default_device(dev)
torch.manual_seed(0)
clock = time.process_time if a.clock == "cpu" and dev == "cpu" else time.perf_counter
sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)


def timeit(fn):
    """Seconds per call: two warm-up calls, then calls until --seconds have passed (>= 3)."""
    fn()
    fn()
    sync()
    n, t0 = 0, clock()
    while True:
        fn()
        sync()
        n += 1
        dt = clock() - t0
        if (dt >= a.seconds and n >= 3) or n >= 200:
            return dt / n


rows = {}  # key -> (value, unit)


def gflops(key, fn, flop):
    rows[key] = (flop / timeit(fn) / 1e9, "GFLOP/s")


@torch.no_grad()
def bench_ops():
    x = torch.randn(16, 64, 64, 64)
    w = torch.randn(64, 64, 3, 3)
    gy = torch.randn(16, 64, 64, 64)
    fl = 2 * 16 * 64 * 64 * 64 * 64 * 9
    gflops("conv2d forward", lambda: F.conv2d(x, w, padding=1), fl)
    gflops("conv2d backward-input", lambda: torch.nn.grad.conv2d_input(x.shape, w, gy, padding=1), fl)
    gflops("conv2d backward-weight", lambda: torch.nn.grad.conv2d_weight(x, w.shape, gy, padding=1), fl)
    A = torch.randn(65536, 576)
    B = torch.randn(576, 64)
    gflops("matmul", lambda: A @ B, 2 * 65536 * 576 * 64)
    xt = torch.randn(64, 128, 7, 7)
    wt = torch.randn(128, 64, 4, 4)
    gflops("conv_transpose2d forward",
           lambda: F.conv_transpose2d(xt, wt, stride=2, padding=1), 2 * 64 * 49 * 128 * 64 * 16)
    X = torch.randn(64, 100)
    W = torch.randn(6272, 100)
    gflops("matmul (x W^T)", lambda: X @ W.t(), 2 * 64 * 100 * 6272)


def dncnn(c, depth=10, width=48):
    layers = [nn.Conv2d(c, width, 3, padding=1), nn.ReLU()]
    for _ in range(depth - 2):
        layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    layers += [nn.Conv2d(width, c, 3, padding=1, bias=False)]
    return nn.Sequential(*layers)


def bench_dncnn():
    # DnCNN inference on a 512x512 gray image (the whole image at once; eval mode)
    m = dncnn(1).eval()
    img = torch.rand(1, 1, 512, 512)
    with torch.inference_mode():
        t = timeit(lambda: img - m(img))
    rows["dncnn inference 512x512 gray"] = (512 * 512 / t / 1e6, "MP/s")

    # DnCNN training: batch 64 of 40x40 gray patches, MSE on the residual, Adam
    m = dncnn(1).train()
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    noisy = torch.rand(64, 1, 40, 40)
    clean = torch.rand(64, 1, 40, 40)

    def dncnn_step():
        loss = F.mse_loss(m(noisy), noisy - clean)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    rows["dncnn training 64x40x40"] = (64 / timeit(dncnn_step), "patches/s")


def bench_photo():
    """DnCNN 17x64 on one gray photo, the whole image at once: GFLOP/s of the best of two runs
    after a first (which includes cuDNN's algorithm search), and the seconds of each."""
    wd, ht = (int(v) for v in a.photo.lower().split("x"))
    m = dncnn(1, depth=17, width=64).eval()
    img = torch.rand(1, 1, ht, wd)
    flop = 2 * 9 * (64 + 15 * 64 * 64 + 64) * wd * ht

    def run():
        t = time.perf_counter()
        with torch.inference_mode():
            y = img - m(img)
        sync()
        del y
        return time.perf_counter() - t

    first = run()
    best = min(run(), run())
    rows["dncnn17 photo"] = (flop / best / 1e9, "GFLOP/s")
    rows["dncnn17 photo s/image"] = (best, "s")
    rows["dncnn17 photo first run s"] = (first, "s")


def gan(arch, w=32, d=100, bs=64):
    if arch == "Dense":
        G = nn.Sequential(nn.Linear(d, 256), nn.LeakyReLU(0.2), nn.Linear(256, 512), nn.LeakyReLU(0.2),
                          nn.Linear(512, 784), nn.Tanh())
        D = nn.Sequential(nn.Linear(784, 512), nn.LeakyReLU(0.2), nn.Linear(512, 256), nn.LeakyReLU(0.2),
                          nn.Linear(256, 1))
        shape = (bs, 784)
    else:
        G = nn.Sequential(nn.Linear(d, 2 * w * 49), nn.Unflatten(1, (2 * w, 7, 7)), nn.BatchNorm2d(2 * w), nn.ReLU(),
                          nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.BatchNorm2d(w), nn.ReLU(),
                          nn.ConvTranspose2d(w, 1, 4, 2, 1), nn.Tanh())
        D = nn.Sequential(nn.Conv2d(1, w, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(w, 2 * w, 4, 2, 1),
                          nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(2 * w * 49, 1))
        shape = (bs, 1, 28, 28)
    og = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    od = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    real = torch.rand(*shape) * 2 - 1
    ones, zeros = torch.ones(bs, 1), torch.zeros(bs, 1)

    def step():
        z = torch.randn(bs, d)
        fake = G(z)
        ld = (F.binary_cross_entropy_with_logits(D(real), ones)
              + F.binary_cross_entropy_with_logits(D(fake.detach()), zeros))
        od.zero_grad()
        ld.backward()
        od.step()
        lg = F.binary_cross_entropy_with_logits(D(fake), ones)
        og.zero_grad()
        lg.backward()
        og.step()
        return ld.item(), lg.item()

    return 1 / timeit(step)


if dev == "cuda":
    device_name = (f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}, cuDNN "
                   f"{torch.backends.cudnn.version()}, float32, TF32 off)")
else:
    device_name = f"CPU ({torch.get_num_threads()} threads)"

if "ops" in sections:
    bench_ops()
if "dncnn" in sections:
    bench_dncnn()
if "gan" in sections:
    for arch in ("Dense", "Dcgan"):
        rows[f"gan {arch}"] = (gan(arch), "steps/s")
if "photo" in sections:
    bench_photo()

if a.json:
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "clock": a.clock,
                      "device": device_name, "rows": {k: v for k, (v, _) in rows.items()}}))
else:
    print(f"torch {torch.__version__} on {device_name}, {torch.get_num_threads()} threads, clock {a.clock}")
    print("| row | value | unit |\n|---|---:|---|")
    for k, (v, u) in rows.items():
        print(f"| {k} | {v:.3f} | {u} |")
