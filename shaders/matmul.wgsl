// matmul.wgsl — C = op(A) op(B) (+ C when accumulating), register-blocked: each thread owns a
// 4x4 or 8x8 block of C in registers (no shared memory, no barriers; see docs/ARCHITECTURE.md).
// Entry points: `matmul` (scalar loads, any shape, 4x4 per thread) and four `matmul_vec4_*`
// (aligned shapes, one per operand layout, 8x8 per thread; see below); the host picks per launch.
//
// Operands are addressed through strides, so transposes cost nothing:
//   op(A)[m, k] = a[a_off + m * a_sm + k * a_sk]      (M x K)
//   op(B)[k, n] = b[b_off + k * b_sk + n * b_sn]      (K x N)
//   C[m, n]     = c[c_off + m * ldc + n]
// The host may run one block of a larger product per launch (binding-size limits): m, n, k
// are then the block's sizes and the offsets point at its first elements.
//
// Bindings (`matmul`; declared in matmul_params.wgsl, shared with matmul_tiled.wgsl): 0 params (uniform), 1 c (read_write), 2 a (read), 3 b (read).
// Dispatch (`matmul`): ceil(M / 32) * ceil(N / 32) workgroups (linear, see prelude.wgsl) of 64 threads
// as 8 x 8; a thread's 4 rows and 4 columns are 8 apart, so neighbouring threads read
// neighbouring columns of B and write neighbouring elements of C (coalesced on real GPUs).


@compute @workgroup_size(64)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = workgroup_index(wid, nwg, params.wg_base);
    let m0 = (g / params.tiles_n) * 32u + lid / 8u;
    let n0 = (g % params.tiles_n) * 32u + lid % 8u;

    // element offsets of the thread's rows of op(A) and columns of op(B); indices are clamped
    // so every load is in range, and the stores below are masked instead
    var arow: vec4<u32>;
    var bcol: vec4<u32>;
    for (var i = 0u; i < 4u; i++) {
        arow[i] = params.a_off + min(m0 + 8u * i, params.m - 1u) * params.a_sm;
        bcol[i] = params.b_off + min(n0 + 8u * i, params.n - 1u) * params.b_sn;
    }

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var ka = 0u; // k * a_sk
    var kb = 0u; // k * b_sk
    for (var k = 0u; k < params.k; k++) {
        let bv = vec4<f32>(b[bcol[0] + kb], b[bcol[1] + kb], b[bcol[2] + kb], b[bcol[3] + kb]);
        acc0 += a[arow[0] + ka] * bv;
        acc1 += a[arow[1] + ka] * bv;
        acc2 += a[arow[2] + ka] * bv;
        acc3 += a[arow[3] + ka] * bv;
        ka += params.a_sk;
        kb += params.b_sk;
    }

    let acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        let m = m0 + 8u * i;
        if (m >= params.m) { continue; }
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + 8u * j;
            if (n >= params.n) { continue; }
            let idx = params.c_off + m * params.ldc + n;
            var v = acc[i][j];
            if (params.accumulate != 0u) { v += c[idx]; }
            c[idx] = v;
        }
    }
}

// ---- vec4 variants: the same product when m, n, k, every offset and every non-unit stride are
// multiples of 4, so every operand access is an aligned 16-byte load along the operand's
// contiguous direction. One entry point per operand layout (the host picks), so the k loop
// holds no branch: a SIMD-over-invocations compiler such as llvmpipe runs both sides of an
// `if` with masks, which doubled the loads of an earlier single-entry version.
//   matmul_vec4_ak_bn: op(A) contiguous along k (a_sk = 1), op(B) along n (b_sn = 1)
//   matmul_vec4_ak_bk, matmul_vec4_am_bn, matmul_vec4_am_bk: likewise (am: a_sm = 1, bk: b_sk = 1)
// A thread owns an 8 x 8 block of C (rows 8*ty.., columns 8*tx.., as 2 x 2 blocks of 4 x 4), so
// per 4 steps of k it loads 16 vec4s for 256 FMAs: on llvmpipe each loaded component costs far
// more than an FMA (loads are scalarised per invocation), and on real GPUs 64 accumulators per
// thread is the usual register-blocking sweet spot. 8 x 8 threads cover a 64 x 64 tile of C;
// neighbouring threads read neighbouring 32-byte segments of B and write neighbouring ones of C.
// Bindings: 0 params, 1 c4 (read_write, vec4), 2 a4 (read, vec4), 3 b4 (read, vec4).
// Dispatch: ceil(M / 64) * tiles_n workgroups, tiles_n = ceil(N / 64).


// A thread's block: the first row / column of each 4-wide half (clamped so that loads stay in
// range; m and n are multiples of 4, so a half is wholly inside C or wholly outside) and the
// unclamped ones for the masked stores.
struct Block {
    m: vec2<u32>,
    n: vec2<u32>,
    m_store: vec2<u32>,
    n_store: vec2<u32>,
}

fn block_of(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Block {
    let g = workgroup_index(wid, nwg, params.wg_base);
    let m0 = (g / params.tiles_n) * 64u + (lid / 8u) * 8u;
    let n0 = (g % params.tiles_n) * 64u + (lid % 8u) * 8u;
    let ms = vec2<u32>(m0, m0 + 4u);
    let ns = vec2<u32>(n0, n0 + 4u);
    return Block(min(ms, vec2<u32>(params.m - 4u)), min(ns, vec2<u32>(params.n - 4u)), ms, ns);
}

// Loaders of one 4 x 4 block for k in [4kv, 4kv + 4), always returned as the matrix the FMA
// step wants: for A, column q = op(A)[m + q, k..k+4]; for B, column r = op(B)[k + r, n..n+4].
// (Transposes only rename registers.)
// op(A) along k: `rows` = vec4 index of each row's first element; one load per row.
fn a_along_k(rows: vec4<u32>, kv: u32) -> mat4x4<f32> {
    return mat4x4<f32>(a4[rows.x + kv], a4[rows.y + kv], a4[rows.z + kv], a4[rows.w + kv]);
}
// op(A) along m: `p` = vec4 index of op(A)[m, 4kv], `s` = a_sk / 4; one load per k.
fn a_along_m(p: u32, s: u32) -> mat4x4<f32> {
    return transpose(mat4x4<f32>(a4[p], a4[p + s], a4[p + 2u * s], a4[p + 3u * s]));
}
// op(B) along n: `p` = vec4 index of op(B)[4kv, n], `s` = b_sk / 4; one load per k.
fn b_along_n(p: u32, s: u32) -> mat4x4<f32> {
    return mat4x4<f32>(b4[p], b4[p + s], b4[p + 2u * s], b4[p + 3u * s]);
}
// op(B) along k: `cols` = vec4 index of each column's first element; one load per column.
fn b_along_k(cols: vec4<u32>, kv: u32) -> mat4x4<f32> {
    return transpose(mat4x4<f32>(b4[cols.x + kv], b4[cols.y + kv], b4[cols.z + kv], b4[cols.w + kv]));
}

// vec4 index of the first element of 4 consecutive rows (stride `s` floats) from `first`.
fn lines4(first: u32, s: u32) -> vec4<u32> {
    return vec4<u32>(first / 4u) + vec4<u32>(0u, 1u, 2u, 3u) * (s / 4u);
}

// The 8 x 8 accumulator as 2 x 2 blocks: cRC is rows half R, columns half C; column q of a
// block is row (m + q) of C over 4 columns.
struct Acc {
    c00: mat4x4<f32>,
    c01: mat4x4<f32>,
    c10: mat4x4<f32>,
    c11: mat4x4<f32>,
}

// C[m+q, n..] += sum_r op(B)[k+r, n..] * op(A)[m+q, k+r]  ==  B * A  (column q)
fn fma_step(acc: ptr<function, Acc>, a0: mat4x4<f32>, a1: mat4x4<f32>, b0: mat4x4<f32>, b1: mat4x4<f32>) {
    (*acc).c00 += b0 * a0;
    (*acc).c01 += b1 * a0;
    (*acc).c10 += b0 * a1;
    (*acc).c11 += b1 * a1;
}

fn store4(v: mat4x4<f32>, m: u32, n: u32) {
    if (m >= params.m || n >= params.n) { return; }
    for (var q = 0u; q < 4u; q++) {
        let i = (params.c_off + (m + q) * params.ldc + n) / 4u;
        var x = v[q];
        if (params.accumulate != 0u) { x += c4[i]; }
        c4[i] = x;
    }
}

fn store_acc(acc: Acc, blk: Block) {
    store4(acc.c00, blk.m_store.x, blk.n_store.x);
    store4(acc.c01, blk.m_store.x, blk.n_store.y);
    store4(acc.c10, blk.m_store.y, blk.n_store.x);
    store4(acc.c11, blk.m_store.y, blk.n_store.y);
}

@compute @workgroup_size(64)
fn matmul_vec4_ak_bn(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let blk = block_of(wid, nwg, lid);
    let ra0 = lines4(params.a_off + blk.m.x * params.a_sm, params.a_sm);
    let ra1 = lines4(params.a_off + blk.m.y * params.a_sm, params.a_sm);
    let sb = params.b_sk / 4u;
    var pb = vec2<u32>(params.b_off) / 4u + blk.n / 4u;
    let kv_end = params.k / 4u;
    var acc: Acc;
    for (var kv = 0u; kv < kv_end; kv++) {
        fma_step(&acc, a_along_k(ra0, kv), a_along_k(ra1, kv), b_along_n(pb.x, sb), b_along_n(pb.y, sb));
        pb += vec2<u32>(4u * sb);
    }
    store_acc(acc, blk);
}

@compute @workgroup_size(64)
fn matmul_vec4_ak_bk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let blk = block_of(wid, nwg, lid);
    let ra0 = lines4(params.a_off + blk.m.x * params.a_sm, params.a_sm);
    let ra1 = lines4(params.a_off + blk.m.y * params.a_sm, params.a_sm);
    let cb0 = lines4(params.b_off + blk.n.x * params.b_sn, params.b_sn);
    let cb1 = lines4(params.b_off + blk.n.y * params.b_sn, params.b_sn);
    let kv_end = params.k / 4u;
    var acc: Acc;
    for (var kv = 0u; kv < kv_end; kv++) {
        fma_step(&acc, a_along_k(ra0, kv), a_along_k(ra1, kv), b_along_k(cb0, kv), b_along_k(cb1, kv));
    }
    store_acc(acc, blk);
}

@compute @workgroup_size(64)
fn matmul_vec4_am_bn(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let blk = block_of(wid, nwg, lid);
    let sa = params.a_sk / 4u;
    let sb = params.b_sk / 4u;
    var pa = vec2<u32>(params.a_off) / 4u + blk.m / 4u;
    var pb = vec2<u32>(params.b_off) / 4u + blk.n / 4u;
    let kv_end = params.k / 4u;
    var acc: Acc;
    for (var kv = 0u; kv < kv_end; kv++) {
        fma_step(&acc, a_along_m(pa.x, sa), a_along_m(pa.y, sa), b_along_n(pb.x, sb), b_along_n(pb.y, sb));
        pa += vec2<u32>(4u * sa);
        pb += vec2<u32>(4u * sb);
    }
    store_acc(acc, blk);
}

@compute @workgroup_size(64)
fn matmul_vec4_am_bk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let blk = block_of(wid, nwg, lid);
    let sa = params.a_sk / 4u;
    var pa = vec2<u32>(params.a_off) / 4u + blk.m / 4u;
    let cb0 = lines4(params.b_off + blk.n.x * params.b_sn, params.b_sn);
    let cb1 = lines4(params.b_off + blk.n.y * params.b_sn, params.b_sn);
    let kv_end = params.k / 4u;
    var acc: Acc;
    for (var kv = 0u; kv < kv_end; kv++) {
        fma_step(&acc, a_along_m(pa.x, sa), a_along_m(pa.y, sa), b_along_k(cb0, kv), b_along_k(cb1, kv));
        pa += vec2<u32>(4u * sa);
    }
    store_acc(acc, blk);
}
