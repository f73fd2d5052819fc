// matmul.wgsl — C = op(A) op(B) (+ C when accumulating), register-blocked: each thread owns a
// 4x4 block of C in registers (no shared memory, no barriers; see DESIGN.md).
//
// Operands are addressed through strides, so transposes cost nothing:
//   op(A)[m, k] = a[a_off + m * a_sm + k * a_sk]      (M x K)
//   op(B)[k, n] = b[b_off + k * b_sk + n * b_sn]      (K x N)
//   C[m, n]     = c[c_off + m * ldc + n]
// The host may run one block of a larger product per launch (binding-size limits): m, n, k
// are then the block's sizes and the offsets point at its first elements.
//
// Bindings: 0 params (uniform), 1 c (read_write), 2 a (read), 3 b (read).
// Dispatch: ceil(M / 32) * ceil(N / 32) workgroups (linear, see prelude.wgsl) of 64 threads
// as 8 x 8; a thread's 4 rows and 4 columns are 8 apart, so neighbouring threads read
// neighbouring columns of B and write neighbouring elements of C (coalesced on real GPUs).

struct Params {
    wg_base: u32,
    m: u32,
    n: u32,
    k: u32,
    a_off: u32,
    a_sm: u32,
    a_sk: u32,
    b_off: u32,
    b_sk: u32,
    b_sn: u32,
    c_off: u32,
    ldc: u32,
    accumulate: u32,
    tiles_n: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> c: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;

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
