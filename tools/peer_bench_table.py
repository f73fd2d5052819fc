#!/usr/bin/env python3
"""Side-by-side table for tools/peer_bench.sh: `nnlab bench --cpu-only` output (markdown) and
tools/peer_bench.py --json output, matched row by row, with the nnlab/PyTorch ratio."""
import json
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


def parse_nnlab(text):
    """Values by key from the bench's markdown tables (CPU rows only)."""
    vals, section = {}, ""
    for line in text.splitlines():
        if not line.startswith("|"):
            if line.strip():
                section = line
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if not cells[0].startswith("CPU"):
            continue
        if section.startswith("DnCNN inference"):
            if cells[1] == "dncnn_blind_gray 512x512":
                vals["dncnn inference 512x512 gray"] = float(cells[2])
        elif section.startswith("DnCNN training"):
            vals["dncnn training 64x40x40"] = float(cells[1])
        elif section.startswith("GAN training"):
            vals[f"gan {cells[1]}"] = float(cells[2])
        elif len(cells) == 5:
            vals[cells[1]] = float(cells[3])
        if "peak resident memory" in line:
            pass
    return vals


def main():
    nn_text = open(sys.argv[1]).read()
    nn = parse_nnlab(nn_text)
    pt = json.load(open(sys.argv[2]))["rows"]
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
