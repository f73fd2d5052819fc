#!/usr/bin/env bash
# Peer benchmark, run by hand (not in CI): nnlab's CPU bench rows beside PyTorch's on the same
# shapes and models, as nnlab/PyTorch ratios from one run, at 1 thread (both pinned to CPU 0)
# and at 2 threads (CPUs 0-1). PyTorch comes from PyPI into target/peer-venv (ignored, made
# once). Usage (or `./build.sh bench --peer ...`):
#   tools/peer_bench.sh [--seconds S] [--cpu-clock]
# --cpu-clock times the 1-thread runs by the process's CPU time (NNLAB_BENCH_CLOCK=cpu and
# Python's process_time) instead of the wall clock: on a machine other processes keep busy,
# that is the fair 1-thread figure. The 2-thread runs always use the wall clock.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=1
clock=wall
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --cpu-clock) clock=cpu; shift ;;
        *) echo "usage: tools/peer_bench.sh [--seconds S] [--cpu-clock]" >&2; exit 2 ;;
    esac
done

venv=target/peer-venv
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    echo "== creating $venv with PyTorch (CPU) from PyPI" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet torch numpy
fi
cargo build --release --quiet

out=target/peer-bench
mkdir -p "$out"
ncpu=$(nproc)
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p') ($ncpu CPUs); $(date -u +%Y-%m-%d)"
echo "PyTorch: $("$venv/bin/python" -c 'import torch; print(torch.__version__)'); nnlab: $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for threads in 1 2; do
    if [ "$threads" -gt "$ncpu" ]; then continue; fi
    cpus=$(seq -s, 0 $((threads - 1)))
    c=$clock
    [ "$threads" -gt 1 ] && c=wall
    NNLAB_BENCH_CLOCK=$c RAYON_NUM_THREADS=$threads taskset -c "$cpus" \
        target/release/nnlab bench --cpu-only --seconds "$seconds" >"$out/nnlab-$threads.txt"
    OMP_NUM_THREADS=$threads taskset -c "$cpus" "$venv/bin/python" tools/peer_bench.py \
        --threads "$threads" --seconds "$seconds" --clock "$c" --json >"$out/torch-$threads.json"
    echo
    echo "## $threads thread(s), pinned to CPU $cpus, clock: $c"
    python3 tools/peer_bench_table.py "$out/nnlab-$threads.txt" "$out/torch-$threads.json"
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "(raw outputs in $out/)"
