// matmul.wgsl — C = op(A) op(B) (+ C when accumulating), register-blocked: each thread owns a
// 4x4 block of C in registers (no shared memory, no barriers; see DESIGN.md).
// Two entry points: `matmul` (scalar loads, any shape) and `matmul_vec4` (aligned shapes: every
// 4x4 operand block is four 16-byte loads, 64 FMAs per 8 loads); the host picks per launch.
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

// ---- vec4 variant: the same product when m, n, k, every offset and every non-unit stride are
// multiples of 4, so a thread's 4x4 block of op(A), op(B) and C is four aligned vec4 loads.
// A thread owns rows 4*ty.. and columns 4*tx.. (contiguous), 8 x 8 threads per 32 x 32 tile;
// neighbouring threads read neighbouring 16-byte words. Strides and offsets here count vec4s
// along the contiguous direction: a_vk / b_vk say whether k is that direction.
// Bindings: 0 params, 1 c (read_write, f32), 2 a4 (read, vec4), 3 b4 (read, vec4).

@group(0) @binding(2) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b4: array<vec4<f32>>;

// The 4x4 block rows [i0, i0+4) x cols [j0, j0+4) of a strided operand held as vec4s along its
// contiguous direction, returned as a matrix whose column q is the row i0 + q (vec4 over j).
fn load_block_a(i0: u32, j0: u32) -> mat4x4<f32> {
    // op(A)[m, k] with (i, j) = (m, k)
    if (params.a_sk == 1u) { // vec4 along k: the rows are direct
        let base = (params.a_off + i0 * params.a_sm + j0) / 4u;
        let s = params.a_sm / 4u;
        return mat4x4<f32>(a4[base], a4[base + s], a4[base + 2u * s], a4[base + 3u * s]);
    }
    // vec4 along m: the loads are columns, transpose them
    let base = (params.a_off + j0 * params.a_sk + i0) / 4u;
    let s = params.a_sk / 4u;
    return transpose(mat4x4<f32>(a4[base], a4[base + s], a4[base + 2u * s], a4[base + 3u * s]));
}

fn load_block_b(i0: u32, j0: u32) -> mat4x4<f32> {
    // op(B)[k, n] with (i, j) = (k, n)
    if (params.b_sn == 1u) {
        let base = (params.b_off + i0 * params.b_sk + j0) / 4u;
        let s = params.b_sk / 4u;
        return mat4x4<f32>(b4[base], b4[base + s], b4[base + 2u * s], b4[base + 3u * s]);
    }
    let base = (params.b_off + j0 * params.b_sn + i0) / 4u;
    let s = params.b_sn / 4u;
    return transpose(mat4x4<f32>(b4[base], b4[base + s], b4[base + 2u * s], b4[base + 3u * s]));
}

@compute @workgroup_size(64)
fn matmul_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = workgroup_index(wid, nwg, params.wg_base);
    let m0 = (g / params.tiles_n) * 32u + (lid / 8u) * 4u;
    let n0 = (g % params.tiles_n) * 32u + (lid % 8u) * 4u;
    // m and n are multiples of 4: a block is either wholly inside or wholly outside C;
    // outside blocks load a clamped (valid) block and store nothing
    let lm = min(m0, params.m - 4u);
    let ln = min(n0, params.n - 4u);
    var acc = mat4x4<f32>(); // column q = row m0 + q of C
    for (var k = 0u; k < params.k; k += 4u) {
        let ab = load_block_a(lm, k); // column q: op(A)[m0 + q, k..k+4]
        let bb = load_block_b(k, ln); // column r: op(B)[k + r, n0..n0+4]
        // C[m0+q, :] += sum_r A[m0+q, k+r] * B[k+r, :]  ==  bb * ab[q]
        acc += bb * ab;
    }
    if (m0 >= params.m || n0 >= params.n) { return; }
    for (var q = 0u; q < 4u; q++) {
        let idx = params.c_off + (m0 + q) * params.ldc + n0;
        var v = acc[q];
        if (params.accumulate != 0u) { v += vec4<f32>(c[idx], c[idx + 1u], c[idx + 2u], c[idx + 3u]); }
        c[idx] = v.x;
        c[idx + 1u] = v.y;
        c[idx + 2u] = v.z;
        c[idx + 3u] = v.w;
    }
}
