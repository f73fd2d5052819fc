// matmul_tiled.wgsl — C = op(A) op(B) (+ C when accumulating) as a workgroup-memory tiled GEMM,
// the "tiled" variant beside the register-blocked kernels of matmul.wgsl (the host picks one per
// shape class: src/gpu/tuner.rs).
//
// Design, and why:
// * A workgroup of 64 threads computes a 64 x 64 tile of C. The reduction runs in K-slices of 16:
//   the workgroup first copies the 64 x 16 slice of op(A) and the 16 x 64 slice of op(B) into
//   `var<workgroup>` arrays (each element fetched from global memory once per workgroup instead of
//   once per thread row/column, as the blocked kernel does), a barrier, then every thread runs 16
//   rank-1 updates of its 8 x 8 block out of workgroup memory. On real GPUs this is what turns a
//   bandwidth-bound kernel into a compute-bound one (the usual shared-memory SGEMM).
// * 8 x 8 outputs per thread (64 accumulators): per k, 4 vec4 reads of workgroup memory feed
//   64 FMAs. A thread's rows are 4ty..4ty+3 and 32+4ty..; its columns 4tx.. and 32+4tx..: the
//   8 threads of a row read 8 *consecutive* vec4s of a slice row (no bank conflict), and store
//   consecutive 16-byte pieces of C (coalesced).
// * Workgroup rows are 16 vec4s plus 1 of padding (ROW4 = 17): the copy that transposes a
//   k-contiguous operand into [k][m] order writes 4 k-rows at once, and the padding staggers those
//   rows across banks.
// * Copies use vec4 loads when every operand access is 16-byte aligned (`matmul_tiled_v4_*`, one
//   entry per operand layout so the loop holds no layout branch), scalar loads otherwise
//   (`matmul_tiled`, any shape and strides, the layout chosen with `select`, no branch).
// * Interior fast path: a tile wholly inside C with a whole K-slice left copies without the clamps
//   and zero masks the edge tiles need (a branch uniform over the workgroup).
// Workgroup memory: 2 x 16 x 17 x 16 B = 8.5 KiB (WebGPU guarantees 16 KiB).
//
// Operands are addressed through strides, exactly as in matmul.wgsl (same Params and bindings: matmul_params.wgsl):
//   op(A)[m, k] = a[a_off + m * a_sm + k * a_sk],  op(B)[k, n] = b[b_off + k * b_sk + n * b_sn],
//   C[m, n] = c[c_off + m * ldc + n].
// Bindings: 0 params, 1 c, 2 a, 3 b (f32, or vec4 in the _v4 entries).
// Dispatch: ceil(M / 64) * tiles_n workgroups, tiles_n = ceil(N / 64).


const TILE: u32 = 64u;
const TK: u32 = 16u;
const ROW4: u32 = 17u;

// sa[k * ROW4 + m / 4][m % 4] = op(A)[m0 + m, k0 + k];  sb[k * ROW4 + n / 4][n % 4] = op(B)[k0 + k, n0 + n]
var<workgroup> sa: array<vec4<f32>, 272>;
var<workgroup> sb: array<vec4<f32>, 272>;

struct Tile {
    m0: u32,
    n0: u32,
    ty: u32,
    tx: u32,
    // the whole 64 x 64 tile lies inside C
    inside: bool,
}

fn tile_of(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Tile {
    let g = workgroup_index(wid, nwg, params.wg_base);
    let m0 = (g / params.tiles_n) * TILE;
    let n0 = (g % params.tiles_n) * TILE;
    return Tile(m0, n0, lid / 8u, lid % 8u, m0 + TILE <= params.m && n0 + TILE <= params.n);
}

struct Acc {
    c00: mat4x4<f32>,
    c01: mat4x4<f32>,
    c10: mat4x4<f32>,
    c11: mat4x4<f32>,
}

fn outer(col: vec4<f32>, row: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(col * row.x, col * row.y, col * row.z, col * row.w);
}

// 16 rank-1 updates of the thread's 8 x 8 block from the staged slice: cRC column q is row
// 4ty + 32R + q of C over the columns 4tx + 32C .. +3.
fn mma_slice(acc: ptr<function, Acc>, ty: u32, tx: u32) {
    for (var k = 0u; k < TK; k++) {
        let a0 = sa[k * ROW4 + ty];
        let a1 = sa[k * ROW4 + ty + 8u];
        let b0 = sb[k * ROW4 + tx];
        let b1 = sb[k * ROW4 + tx + 8u];
        (*acc).c00 += outer(b0, a0);
        (*acc).c01 += outer(b1, a0);
        (*acc).c10 += outer(b0, a1);
        (*acc).c11 += outer(b1, a1);
    }
}

// ---------------------------------------------------------------- scalar entry (any shape)

// Element e (0..1023) of the A slice: k-contiguous operands walk k fastest (coalesced), the
// others m fastest.
fn copy_a_scalar(t: Tile, k0: u32, lid: u32, fast: bool) {
    let along_k = params.a_sk == 1u;
    for (var q = 0u; q < 16u; q++) {
        let e = lid + 64u * q;
        let mm = select(e % TILE, e / TK, along_k);
        let kk = select(e / TILE, e % TK, along_k);
        let m = t.m0 + mm;
        let k = k0 + kk;
        var v: f32;
        if (fast) {
            v = a[params.a_off + m * params.a_sm + k * params.a_sk];
        } else {
            let ok = m < params.m && k < params.k;
            v = select(0.0, a[params.a_off + min(m, params.m - 1u) * params.a_sm + min(k, params.k - 1u) * params.a_sk], ok);
        }
        sa[kk * ROW4 + mm / 4u][mm % 4u] = v;
    }
}

fn copy_b_scalar(t: Tile, k0: u32, lid: u32, fast: bool) {
    let along_k = params.b_sk == 1u && params.b_sn != 1u;
    for (var q = 0u; q < 16u; q++) {
        let e = lid + 64u * q;
        let nn = select(e % TILE, e / TK, along_k);
        let kk = select(e / TILE, e % TK, along_k);
        let n = t.n0 + nn;
        let k = k0 + kk;
        var v: f32;
        if (fast) {
            v = b[params.b_off + k * params.b_sk + n * params.b_sn];
        } else {
            let ok = n < params.n && k < params.k;
            v = select(0.0, b[params.b_off + min(k, params.k - 1u) * params.b_sk + min(n, params.n - 1u) * params.b_sn], ok);
        }
        sb[kk * ROW4 + nn / 4u][nn % 4u] = v;
    }
}

fn store_scalar(v: mat4x4<f32>, m: u32, n: u32, inside: bool) {
    for (var q = 0u; q < 4u; q++) {
        for (var r = 0u; r < 4u; r++) {
            if (!inside && (m + q >= params.m || n + r >= params.n)) { continue; }
            let i = params.c_off + (m + q) * params.ldc + n + r;
            var x = v[q][r];
            if (params.accumulate != 0u) { x += c[i]; }
            c[i] = x;
        }
    }
}

@compute @workgroup_size(64)
fn matmul_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = tile_of(wid, nwg, lid);
    var acc: Acc;
    for (var k0 = 0u; k0 < params.k; k0 += TK) {
        let fast = t.inside && k0 + TK <= params.k;
        copy_a_scalar(t, k0, lid, fast);
        copy_b_scalar(t, k0, lid, fast);
        workgroupBarrier();
        mma_slice(&acc, t.ty, t.tx);
        workgroupBarrier();
    }
    let m = t.m0 + 4u * t.ty;
    let n = t.n0 + 4u * t.tx;
    store_scalar(acc.c00, m, n, t.inside);
    store_scalar(acc.c01, m, n + 32u, t.inside);
    store_scalar(acc.c10, m + 32u, n, t.inside);
    store_scalar(acc.c11, m + 32u, n + 32u, t.inside);
}

// ---------------------------------------------------------------- vec4 entries (aligned)
// m, n, k, every offset and every non-unit stride are multiples of 4 (the host checks), so a
// vec4 along m, n or k is wholly inside the operand or wholly outside it. Each thread copies
// 4 vec4s of each slice. Outside C the row / column index is clamped (those outputs are not
// stored); past K the values are zero.

// op(A) along k (a_sk = 1): vec4 v covers row v / 4, k 4 (v % 4) .. +3; written transposed.
fn copy_a_k(t: Tile, k0: u32, lid: u32, fast: bool) {
    for (var q = 0u; q < 4u; q++) {
        let v = lid + 64u * q;
        let mm = v / 4u;
        let kk = (v % 4u) * 4u;
        var x: vec4<f32>;
        if (fast) {
            x = a4[(params.a_off + (t.m0 + mm) * params.a_sm + k0 + kk) / 4u];
        } else {
            let m = min(t.m0 + mm, params.m - 1u);
            let k = min(k0 + kk, params.k - 4u);
            x = select(vec4<f32>(0.0), a4[(params.a_off + m * params.a_sm + k) / 4u], k0 + kk < params.k);
        }
        let s = kk * ROW4 + mm / 4u;
        let j = mm % 4u;
        sa[s][j] = x.x;
        sa[s + ROW4][j] = x.y;
        sa[s + 2u * ROW4][j] = x.z;
        sa[s + 3u * ROW4][j] = x.w;
    }
}

// op(A) along m (a_sm = 1): vec4 v covers k v / 16, rows 4 (v % 16) .. +3; written as is.
fn copy_a_m(t: Tile, k0: u32, lid: u32, fast: bool) {
    for (var q = 0u; q < 4u; q++) {
        let v = lid + 64u * q;
        let kk = v / 16u;
        let mq = (v % 16u) * 4u;
        var x: vec4<f32>;
        if (fast) {
            x = a4[(params.a_off + t.m0 + mq + (k0 + kk) * params.a_sk) / 4u];
        } else {
            let m = min(t.m0 + mq, params.m - 4u);
            let k = min(k0 + kk, params.k - 1u);
            x = select(vec4<f32>(0.0), a4[(params.a_off + m + k * params.a_sk) / 4u], k0 + kk < params.k);
        }
        sa[kk * ROW4 + mq / 4u] = x;
    }
}

// op(B) along n (b_sn = 1): vec4 v covers k v / 16, columns 4 (v % 16) .. +3.
fn copy_b_n(t: Tile, k0: u32, lid: u32, fast: bool) {
    for (var q = 0u; q < 4u; q++) {
        let v = lid + 64u * q;
        let kk = v / 16u;
        let nq = (v % 16u) * 4u;
        var x: vec4<f32>;
        if (fast) {
            x = b4[(params.b_off + (k0 + kk) * params.b_sk + t.n0 + nq) / 4u];
        } else {
            let n = min(t.n0 + nq, params.n - 4u);
            let k = min(k0 + kk, params.k - 1u);
            x = select(vec4<f32>(0.0), b4[(params.b_off + k * params.b_sk + n) / 4u], k0 + kk < params.k);
        }
        sb[kk * ROW4 + nq / 4u] = x;
    }
}

// op(B) along k (b_sk = 1): vec4 v covers column v / 4, k 4 (v % 4) .. +3; written transposed.
fn copy_b_k(t: Tile, k0: u32, lid: u32, fast: bool) {
    for (var q = 0u; q < 4u; q++) {
        let v = lid + 64u * q;
        let nn = v / 4u;
        let kk = (v % 4u) * 4u;
        var x: vec4<f32>;
        if (fast) {
            x = b4[(params.b_off + (t.n0 + nn) * params.b_sn + k0 + kk) / 4u];
        } else {
            let n = min(t.n0 + nn, params.n - 1u);
            let k = min(k0 + kk, params.k - 4u);
            x = select(vec4<f32>(0.0), b4[(params.b_off + n * params.b_sn + k) / 4u], k0 + kk < params.k);
        }
        let s = kk * ROW4 + nn / 4u;
        let j = nn % 4u;
        sb[s][j] = x.x;
        sb[s + ROW4][j] = x.y;
        sb[s + 2u * ROW4][j] = x.z;
        sb[s + 3u * ROW4][j] = x.w;
    }
}

fn store_v4(v: mat4x4<f32>, m: u32, n: u32) {
    if (m >= params.m || n >= params.n) { return; }
    for (var q = 0u; q < 4u; q++) {
        let i = (params.c_off + (m + q) * params.ldc + n) / 4u;
        var x = v[q];
        if (params.accumulate != 0u) { x += c4[i]; }
        c4[i] = x;
    }
}

fn store_acc_v4(acc: Acc, t: Tile) {
    let m = t.m0 + 4u * t.ty;
    let n = t.n0 + 4u * t.tx;
    store_v4(acc.c00, m, n);
    store_v4(acc.c01, m, n + 32u);
    store_v4(acc.c10, m + 32u, n);
    store_v4(acc.c11, m + 32u, n + 32u);
}

@compute @workgroup_size(64)
fn matmul_tiled_v4_ak_bn(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = tile_of(wid, nwg, lid);
    var acc: Acc;
    for (var k0 = 0u; k0 < params.k; k0 += TK) {
        let fast = t.inside && k0 + TK <= params.k;
        copy_a_k(t, k0, lid, fast);
        copy_b_n(t, k0, lid, fast);
        workgroupBarrier();
        mma_slice(&acc, t.ty, t.tx);
        workgroupBarrier();
    }
    store_acc_v4(acc, t);
}

@compute @workgroup_size(64)
fn matmul_tiled_v4_ak_bk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = tile_of(wid, nwg, lid);
    var acc: Acc;
    for (var k0 = 0u; k0 < params.k; k0 += TK) {
        let fast = t.inside && k0 + TK <= params.k;
        copy_a_k(t, k0, lid, fast);
        copy_b_k(t, k0, lid, fast);
        workgroupBarrier();
        mma_slice(&acc, t.ty, t.tx);
        workgroupBarrier();
    }
    store_acc_v4(acc, t);
}

@compute @workgroup_size(64)
fn matmul_tiled_v4_am_bn(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = tile_of(wid, nwg, lid);
    var acc: Acc;
    for (var k0 = 0u; k0 < params.k; k0 += TK) {
        let fast = t.inside && k0 + TK <= params.k;
        copy_a_m(t, k0, lid, fast);
        copy_b_n(t, k0, lid, fast);
        workgroupBarrier();
        mma_slice(&acc, t.ty, t.tx);
        workgroupBarrier();
    }
    store_acc_v4(acc, t);
}

@compute @workgroup_size(64)
fn matmul_tiled_v4_am_bk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = tile_of(wid, nwg, lid);
    var acc: Acc;
    for (var k0 = 0u; k0 < params.k; k0 += TK) {
        let fast = t.inside && k0 + TK <= params.k;
        copy_a_m(t, k0, lid, fast);
        copy_b_k(t, k0, lid, fast);
        workgroupBarrier();
        mma_slice(&acc, t.ty, t.tx);
        workgroupBarrier();
    }
    store_acc_v4(acc, t);
}
