#!/usr/bin/env python3
"""Side-by-side table for tools/peer_bench.sh: `nnlab bench --cpu-only` output (markdown) and
tools/peer_bench.py --json output, matched row by row, with the nnlab/PyTorch ratio.
With --gpu (tools/gpu_check.sh): nnlab's GPU rows (`nnlab bench --gpu-only [--photo WxH]`) beside
PyTorch on CUDA, plus the fraction of the GPU's FP32 peak that nnlab reached where the bench knew
the peak from the adapter's name (or --peak TFLOPS gives it).
  peer_bench_table.py NNLAB.txt TORCH.json [--gpu] [--peak TFLOPS]"""
import json
import re
import sys

# the rows that have a twin on both sides: key -> (unit, nnlab section, nnlab row label)
ROWS = [
    ("conv2d forward", "GFLOP/s"),
    ("conv2d backward-input", "GFLOP/s"),
    ("conv2d backward-weight", "GFLOP/s"),
    ("matmul", "GFLOP/s"),
    ("conv_transpose2d forward", "GFLOP/s"),
    ("matmul (x W^T)", "GFLOP/s"),
    ("dncnn inference 512x512 gray", "MP/s"),
    ("dncnn training 64x40x40", "patches/s"),
    ("gan Dense", "steps/s"),
    ("gan Dcgan", "steps/s"),
]


# what `BackendInfo::describe` adds when DnCNN's fused inference runs in f16
F16_TAG = ", DnCNN inference in f16 (shader-f16)"


def parse_nnlab(text, gpu=False):
    """Values by key from the bench's markdown tables (the CPU's rows, or with `gpu` the other
    backend's), and the other backend's name."""
    vals, section, adapter = {}, "", None
    for line in text.splitlines():
        if not line.startswith("|"):
            if line.strip():
                section = line
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] in ("backend", "---") or cells[0].startswith("CPU") == gpu:
            continue
        # DnCNN rows run in f16 too where the adapter has shader-f16 (the backend's name says so)
        f16 = F16_TAG in cells[0]
        if gpu:
            # the kernel rows run per variant ([blocked], [tiled]) and tuned ([auto], last):
            # the last row of an op wins, the tuner's
            adapter = cells[0].split(" [")[0].replace(F16_TAG, "")
        if section.startswith("DnCNN 17x64"):
            photo = "dncnn17 photo f16" if f16 else "dncnn17 photo"
            vals[f"{photo} first run s"] = float(cells[1])
            vals[f"{photo} s/image"] = float(cells[2])
            vals[photo] = float(cells[3])
        elif section.startswith("DnCNN inference"):
            # the sigma-10 gray model is 10x48, PyTorch's `dncnn(1)`; the blind gray one has
            # been 17x64 since 2026-12-07
            if cells[1] == "dncnn_s10_gray 512x512" and not f16:
                vals["dncnn inference 512x512 gray"] = float(cells[2])
        elif section.startswith("DnCNN training"):
            vals["dncnn training 64x40x40"] = float(cells[1])
        elif section.startswith("GAN training"):
            vals[f"gan {cells[1]}"] = float(cells[2])
        elif len(cells) == 5:
            vals[cells[1]] = float(cells[3])
    return vals, adapter


# the GPU table's rows: the kernels, the 12-megapixel DnCNN, then the training rows
# (the photo in f32; where the adapter has shader-f16 also in f16, nnlab's default there: the
# PyTorch column is fp32 in both)
GPU_ROWS = ROWS[:6] + [("dncnn17 photo", "GFLOP/s"), ("dncnn17 photo s/image", "s"),
                       ("dncnn17 photo first run s", "s"), ("dncnn17 photo f16", "GFLOP/s"),
                       ("dncnn17 photo f16 s/image", "s")] + ROWS[7:]


def num(v):
    """A value for the GPU table: whole numbers from 1000 on, 3 significant digits below."""
    return "-" if v is None else f"{v:.0f}" if v >= 1000 else f"{v:.3g}"


def gpu_table(nn_text, torch_json, peak):
    nn, adapter = parse_nnlab(nn_text, gpu=True)
    if peak is None:
        m = re.search(r"GPU FP32 peak: ([\d.]+) TFLOP/s", nn_text)
        peak = float(m.group(1)) if m else None
    pt = torch_json["rows"]
    print(f"nnlab: {adapter or 'no GPU adapter (see nnlab_bench.txt)'}")
    if adapter and "software" in adapter:
        print("NOTE: nnlab ran on a software adapter (the CPU emulating a GPU): not a GPU figure")
    print(f"PyTorch {torch_json.get('torch', '?')}: {torch_json.get('device', '?')}")
    print(f"FP32 peak: {f'{peak} TFLOP/s' if peak else 'unknown (not a known GPU; --peak TFLOPS gives it)'}")
    print("| row | unit | nnlab | PyTorch | nnlab / PyTorch | nnlab % of FP32 peak |\n"
          "|---|---|---:|---:|---:|---:|")
    for key, unit in GPU_ROWS:
        a, b = nn.get(key), pt.get(key)
        if a is None and b is None:
            continue
        # for seconds, less is better: the ratio stays "how many times PyTorch's speed"
        ratio = "-" if not (a and b) else f"{(b / a if unit == 's' else a / b):.2f}x"
        frac = f"{100 * a / (peak * 1e3):.1f}%" if unit == "GFLOP/s" and a and peak else "-"
        print(f"| {key} | {unit} | {num(a)} | {num(b)} | {ratio} | {frac} |")
    a, b = nn.get("dncnn17 photo s/image"), nn.get("dncnn17 photo f16 s/image")
    if a and b:
        print(f"nnlab DnCNN 17x64 photo, f16 vs f32 storage: {b:.3g} s vs {a:.3g} s ({a / b:.2f}x)")
    for line in nn_text.splitlines():
        if line.startswith("GPU dispatch:"):
            print(f"nnlab {line}")


def main():
    args = sys.argv[1:]
    gpu = "--gpu" in args
    peak = float(args[args.index("--peak") + 1]) if "--peak" in args else None
    nn_text = open(args[0]).read()
    if gpu:
        gpu_table(nn_text, json.load(open(args[1])), peak)
        return
    nn, _ = parse_nnlab(nn_text)
    pt = json.load(open(args[1]))["rows"]
    print("| row | unit | nnlab | PyTorch | nnlab / PyTorch |\n|---|---|---:|---:|---:|")
    for key, unit in ROWS:
        a, b = nn.get(key), pt.get(key)
        ratio = f"{a / b:.2f}x" if a and b else "-"
        fa = "-" if a is None else f"{a:.3g}"
        fb = "-" if b is None else f"{b:.3g}"
        print(f"| {key} | {unit} | {fa} | {fb} | {ratio} |")
    for line in nn_text.splitlines():
        if line.startswith("CPU threads:"):
            print(f"nnlab: {line}")


if __name__ == "__main__":
    main()
