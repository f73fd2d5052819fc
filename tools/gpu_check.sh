#!/usr/bin/env bash
# The one-call GPU check (issue 18 item 6), in two steps:
#
#   tools/gpu_check.sh prepare   HERE (a machine with Rust and apt): builds nnlab natively, downloads
#                                the Vulkan loader packages, gathers both in .gpucheck/ (ignored by
#                                git, checked < 64 MiB with the working tree) and prints the device
#                                tool's `run` call to make.
#   tools/gpu_check.sh run       THERE (the lent GPU machine: no Rust, no network; python3 with
#                                PyTorch), from the repository root: unpacks the loaders, checks that
#                                nnlab's own wgpu sees a hardware adapter, runs `nnlab bench` on it,
#                                PyTorch (cuDNN, float32, TF32 off; tools/peer_bench.py) on the same
#                                shapes, DnCNN 17x64 on a 12-megapixel gray image in both, and prints
#                                one table, also written with the raw outputs to $OUT (else
#                                target/gpu-check/). Each part has its own time limit: under 8 min.
#
#   tools/gpu_check.sh train S   THERE, in a second call right after `run` (the machine stays warm
#                                only seconds) or alone: trains a DnCNN-B (depth 20, width 64,
#                                blind, half the patches with 8-bit clipped noise: issue 23) for
#                                S seconds (default 420) on the GPU when the adapter is hardware,
#                                else on that machine's CPU cores; resumes .gpucheck/dncnn_b.ckpt
#                                when prepare found one. The checkpoint (every 100 steps, written
#                                atomically) and the log come back in $OUT: copy the checkpoint
#                                to /work/ckpt/dncnn_b.ckpt and resume it here or on the next GPU.
#
# `run --short` uses small budgets and a small image: it tests the script on any Vulkan adapter
# (lavapipe) with CPU PyTorch (PYTHON=/path/to/python with torch, else python3 or
# target/peer-venv); the table says what each side ran on. `train 30 --short` trains a tiny
# DnCNN the same way (tested here on lavapipe).
set -uo pipefail
cd "$(dirname "$0")/.."

DIR=.gpucheck
# the packages the device tool's README names for Vulkan/EGL/GL on its machines
DEBS="libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2"
NVIDIA_ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
# a DnCNN checkpoint to go on from (issue 23), brought to the GPU by prepare when it exists here
CKPT_HOME=${NNLAB_GPU_CKPT:-/work/ckpt/dncnn_b.ckpt}

prepare() {
    export PATH="$HOME/.cargo/bin:$PATH"
    cargo build --release --quiet || { echo "gpu_check: cargo build failed" >&2; exit 1; }
    mkdir -p "$DIR/debs"
    cp target/release/nnlab "$DIR/nnlab"
    strip "$DIR/nnlab" 2>/dev/null || true
    git describe --always --dirty >"$DIR/commit.txt" 2>/dev/null || echo unknown >"$DIR/commit.txt"
    if ! ls "$DIR"/debs/libvulkan1_*.deb >/dev/null 2>&1; then
        lists=$(mktemp -d)
        mkdir -p "$lists/partial"
        o="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=$lists"
        # shellcheck disable=SC2086
        if ! { apt-get $o update -qq && (cd "$DIR/debs" && apt-get $o download $DEBS); }; then
            echo "gpu_check: downloading the Vulkan loader packages failed" >&2
            exit 1
        fi
        rm -rf "$lists"
    fi
    # the training images for `train` (../shared does not travel), and the checkpoint to resume
    local data=${NNLAB_DATA:-../shared/data}
    if [ -d "$data/denoise/Train400" ]; then
        mkdir -p "$DIR/data/denoise"
        rm -rf "$DIR/data/denoise/Train400"
        cp -r "$data/denoise/Train400" "$DIR/data/denoise/"
    else
        echo "gpu_check: no $data/denoise/Train400: \`train\` will have no data" >&2
    fi
    rm -f "$DIR/dncnn_b.ckpt"
    [ -f "$CKPT_HOME" ] && cp "$CKPT_HOME" "$DIR/dncnn_b.ckpt"
    # what travels: tracked and untracked-not-ignored files, plus the carried folder
    tree=$( (git ls-files -z; git ls-files -z -o --exclude-standard) | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
    carried=$(du -sb "$DIR" | cut -f1)
    total=$(( (tree + carried) / 1048576 ))
    echo "working tree $((tree / 1048576)) MiB + $DIR $((carried / 1048576)) MiB = $total MiB (limit 64)"
    if [ "$total" -ge 64 ]; then
        echo "gpu_check: too large to travel" >&2
        exit 1
    fi
    cat <<EOF

Ready ($DIR: nnlab $(cat "$DIR/commit.txt"), $(ls "$DIR"/debs | wc -l) packages). On a session lent a GPU, make this ONE device call
(the device tool's \`run\`; about 2-5 minutes of GPU time after the machine's start):

  command:   bash tools/gpu_check.sh run
  carry:     [".gpucheck"]
  timeout_s: 540

The table is printed last and comes back as gpu_check.md (with env.txt, nnlab_bench.txt,
torch.json, log.txt) in the call's files. Then, AT ONCE (the machine stays warm ~30 s), with
the device time left (each minute of it trains; leave 1 min spare):

  command:   bash tools/gpu_check.sh train 420     (seconds of training)
  carry:     [".gpucheck"]
  timeout_s: 480

and copy the dncnn_b.ckpt that comes back to $CKPT_HOME ($( [ -f "$DIR/dncnn_b.ckpt" ] && echo "resumed from the one there now" || echo "a fresh run: none there now")).
EOF
}

# the Vulkan loader: unpack the carried packages where the system has none
vulkan_loader() {
    if ! ldconfig -p | grep -q 'libvulkan\.so\.1'; then
        if ls "$DIR"/debs/*.deb >/dev/null 2>&1; then
            for f in "$DIR"/debs/*.deb; do dpkg -x "$f" /; done
            ldconfig
        else
            echo "gpu_check: no Vulkan loader here and none carried (run prepare first)"
        fi
    fi
    if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$NVIDIA_ICD" ]; then
        export VK_DRIVER_FILES=$NVIDIA_ICD
    fi
}

# the machine, the GPU and nnlab's adapter into $2/env.txt; ADAPTER: hardware|software|none
describe() {
    local nnlab=$1 out=$2
    {
        echo "nnlab: $nnlab ($(cat "$DIR/commit.txt" 2>/dev/null || git rev-parse --short HEAD)); $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "CPU: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) CPUs)"
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null ||
            echo "nvidia-smi: not available"
        "$nnlab" info
    } | tee "$out/env.txt"
    if grep -q "^WebGPU/wgpu on" "$out/env.txt"; then
        if grep -q "software fallback" "$out/env.txt"; then
            echo "ADAPTER: software (the CPU emulating a GPU): the nnlab figures below are NOT GPU figures"
        else
            echo "ADAPTER: hardware: $(grep '^WebGPU/wgpu on' "$out/env.txt")"
        fi
    else
        echo "ADAPTER: none: nnlab's wgpu found no Vulkan adapter (ICDs: $(ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>/dev/null | tr '\n' ' '))"
    fi
}

# DnCNN-B (issue 23) for $1 seconds on the GPU (hardware adapter) or the CPU cores; the
# checkpoint and log back in $OUT. --short: a tiny model (tests the path on lavapipe).
train() {
    local secs=${1:-420} short=$2
    local out=${OUT:-target/gpu-check}
    mkdir -p "$out"
    exec > >(tee "$out/train_log.txt") 2>&1
    local nnlab=$DIR/nnlab
    [ -x "$nnlab" ] || nnlab=target/release/nnlab
    vulkan_loader
    local adapter backend=cpu
    adapter=$(describe "$nnlab" "$out" | grep '^ADAPTER:')
    echo "$adapter"
    case "$adapter" in "ADAPTER: hardware"*) backend=gpu ;; esac
    [ "$short" = 1 ] && grep -q '^ADAPTER: software' <<<"$adapter" && backend=gpu
    local data=$DIR/data
    [ -d "$data/denoise/Train400" ] || data=${NNLAB_DATA:-../shared/data}
    local ck=$out/dncnn_b.ckpt
    local shape="--depth 20 --width 64 --batch 128" steps=60000 every=25
    [ "$short" = 1 ] && shape="--depth 3 --width 8 --batch 4" steps=1000 every=5
    local how="from scratch"
    if [ -f "$DIR/dncnn_b.ckpt" ] && [ "$short" != 1 ]; then
        cp "$DIR/dncnn_b.ckpt" "$ck"
        how="resumed from .gpucheck/dncnn_b.ckpt"
    fi
    echo "== nnlab train dncnn ($how) on $backend for $secs s, $(nproc) CPUs"
    local args=(train dncnn --mode blind --channels 1 --patch 40 --clip-mix 0.5 --lr 1e-3
        --steps "$steps" --seed 23 --backend "$backend" --data "$data" --checkpoint "$ck"
        --checkpoint-every "$every" --val-every 0 --print-every 15 --out "$out/dncnn_b.safetensors")
    # shellcheck disable=SC2206
    [ "$how" = "from scratch" ] && args+=($shape)
    [ "$how" != "from scratch" ] && args+=(--resume)
    RAYON_NUM_THREADS=$(nproc) timeout -s INT "$secs" "$nnlab" "${args[@]}"
    local rc=$?
    [ $rc = 124 ] && rc="stopped at the time limit (as planned)"
    echo "gpu_check train: exit $rc; the checkpoint: $(ls -l "$ck" 2>/dev/null || echo none)"
    echo "copy $ck to $CKPT_HOME here, then resume: nnlab train dncnn --resume --checkpoint $CKPT_HOME --steps $steps"
}

run() {
    local short=$1
    local out=${OUT:-target/gpu-check}
    mkdir -p "$out"
    exec > >(tee "$out/log.txt") 2>&1
    local nnlab=$DIR/nnlab
    [ -x "$nnlab" ] || nnlab=target/release/nnlab
    local seconds=0.5 photo=4000x3000 only="" torch_sections=ops,dncnn,gan,photo
    if [ "$short" = 1 ]; then
        seconds=0.2 photo=128x96 only=ops torch_sections=ops,photo
    fi
    local py=${PYTHON:-python3}
    if ! "$py" -c "import torch" 2>/dev/null && [ -x target/peer-venv/bin/python ]; then
        py=target/peer-venv/bin/python
    fi

    vulkan_loader
    describe "$nnlab" "$out"

    echo "== nnlab bench --gpu-only --seconds $seconds ${only:+(NNLAB_BENCH_ONLY=$only)}"
    env ${only:+NNLAB_BENCH_ONLY=$only} timeout 200 "$nnlab" bench --gpu-only --seconds "$seconds" \
        >"$out/nnlab_bench.txt" || echo "gpu_check: nnlab bench failed or ran out of time (exit $?)"
    echo "== nnlab bench --gpu-only --photo $photo"
    NNLAB_BENCH_ONLY=photo timeout 100 "$nnlab" bench --gpu-only --photo "$photo" \
        >>"$out/nnlab_bench.txt" || echo "gpu_check: the DnCNN photo failed or ran out of time (exit $?)"
    echo "== PyTorch ($py): $torch_sections"
    timeout 120 "$py" tools/peer_bench.py --device auto --threads "$(nproc)" --seconds "$seconds" \
        --sections "$torch_sections" --photo "$photo" --json >"$out/torch.json" ||
        { echo "gpu_check: PyTorch failed or ran out of time (exit $?)"; echo '{"rows": {}}' >"$out/torch.json"; }
    echo
    python3 tools/peer_bench_table.py "$out/nnlab_bench.txt" "$out/torch.json" --gpu ${GPU_PEAK_TFLOPS:+--peak "$GPU_PEAK_TFLOPS"} |
        tee "$out/gpu_check.md"
    echo "(DnCNN 17x64 photo: $photo gray; raw outputs in $out/)"
}

case "${1:-}" in
    prepare) prepare ;;
    run) run "$([ "${2:-}" = --short ] && echo 1 || echo 0)" ;;
    train) train "${2:-420}" "$([ "${3:-}" = --short ] && echo 1 || echo 0)" ;;
    *) echo "usage: tools/gpu_check.sh prepare | run [--short] | train [SECONDS] [--short]" >&2; exit 2 ;;
esac
