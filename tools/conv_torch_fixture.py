#!/usr/bin/env python3
"""Write tests/data/conv_torch.txt: PyTorch's conv2d and conv_transpose2d (forward and every
gradient) on a few rectangular-kernel, per-axis-settings cases, for tests/ops/conv2d.rs
(`pytorch_fixture`). Run by hand with a Python that has torch (e.g. the venv of
tools/peer_bench.sh): target/peer-venv/bin/python tools/conv_torch_fixture.py

Format, one item per line: `case <op> <stride h w> <padding h w> <output_padding h w>
<dilation h w>`, then `<name> <rank> <dims...> <values...>` for x, w, b, gy (the inputs, f32
values printed exactly) and y, gx, gw, gb (computed in float64 from those f32 values)."""
import torch

# (op, (n, cin, cout), (h, w), (kh, kw), stride, padding, output_padding, dilation)
CASES = [
    ("conv2d", (2, 3, 4), (7, 9), (3, 2), (2, 1), (1, 0), (0, 0), (1, 2)),
    ("conv2d", (1, 2, 3), (8, 6), (1, 4), (1, 3), (0, 2), (0, 0), (2, 1)),
    ("conv2d", (2, 4, 2), (9, 10), (5, 3), (3, 2), (2, 1), (0, 0), (1, 1)),
    ("conv_transpose2d", (2, 3, 2), (4, 5), (3, 2), (2, 1), (1, 0), (1, 0), (1, 2)),
    ("conv_transpose2d", (1, 2, 3), (3, 4), (2, 4), (3, 2), (0, 1), (2, 1), (1, 1)),
    ("conv_transpose2d", (2, 2, 2), (5, 3), (4, 1), (1, 2), (2, 0), (1, 1), (2, 1)),
]


def values(t):
    return " ".join(f"{v:.9g}" for v in t.flatten().tolist())


def line(name, t):
    return f"{name} {t.dim()} {' '.join(map(str, t.shape))} {values(t)}"


def main():
    g = torch.Generator().manual_seed(17)
    out = [f"# written by tools/conv_torch_fixture.py with PyTorch {torch.__version__}; do not edit"]
    for op, (n, cin, cout), (h, w), k, s, p, a, d in CASES:
        rnd = lambda *shape: torch.rand(*shape, generator=g, dtype=torch.float32) * 2 - 1
        x = rnd(n, cin, h, w)
        wt = rnd(cout, cin, *k) if op == "conv2d" else rnd(cin, cout, *k)
        b = rnd(cout)
        xd, wd, bd = (t.double().requires_grad_() for t in (x, wt, b))
        if op == "conv2d":
            y = torch.nn.functional.conv2d(xd, wd, bd, stride=s, padding=p, dilation=d)
        else:
            y = torch.nn.functional.conv_transpose2d(
                xd, wd, bd, stride=s, padding=p, output_padding=a, dilation=d
            )
        gy = rnd(*y.shape)
        y.backward(gy.double())
        out.append(f"case {op} {s[0]} {s[1]} {p[0]} {p[1]} {a[0]} {a[1]} {d[0]} {d[1]}")
        for name, t in [("x", x), ("w", wt), ("b", b), ("gy", gy), ("y", y.detach()),
                        ("gx", xd.grad), ("gw", wd.grad), ("gb", bd.grad)]:
            out.append(line(name, t))
    with open("tests/data/conv_torch.txt", "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
