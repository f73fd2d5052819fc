// conv2d_tiled.wgsl — 2-D convolution as workgroup-memory tiled implicit GEMMs: the "tiled"
// variant beside the register-blocked kernels of conv2d.wgsl (same Params and bindings: conv2d_params.wgsl, same
// packed weights, same partial sums; the host picks a variant per shape class, src/gpu/tuner.rs).
//
// Design, and why (the GEMM core is that of matmul_tiled.wgsl):
// * A workgroup of 64 threads computes a 64 x 64 tile of the GEMM (rows = channels, columns =
//   pixels, or weight taps in the backward-weight). The reduction runs in K-slices of 16: the
//   workgroup stages the 64 x 16 slice of the weight-side operand and the 16 x 64 slice of the
//   gathered activations (im2col on the fly, never materialised) in `var<workgroup>` arrays,
//   a barrier, then each thread runs 16 rank-1 updates of its 8 x 8 block from workgroup memory.
//   Each gathered activation is read from global memory once per workgroup instead of once per
//   row-group of threads, and its index arithmetic (tap decomposition, padding checks) is done
//   once per element instead of once per thread and tap.
// * Copies: the packed weight (pack_w_fwd / pack_w_bwd of conv2d.wgsl, channels contiguous and
//   padded to a multiple of 4) is read as aligned vec4s along the channels, 4 per thread per
//   slice; the activations as scalars, a thread keeping one column (one pixel, or one tap) for
//   the whole op, so its pixel / tap decomposition is done once and consecutive threads read
//   consecutive pixels (coalesced). Along K the gather walks (ci, i, j) or (n, oh, ow) with
//   increments instead of divisions.
// * Padding against bank conflicts: workgroup rows are 16 vec4s + 1 (ROW4 = 17).
// * Interior fast path: a pixel whose whole receptive field lies inside the image (forward), or
//   whose whole set of source pixels does at stride 1 (backward-input), gathers without bounds
//   checks; the weight copy of a tile inside the weight and a whole K-slice skips its clamps.
// * Per-axis stride / padding / dilation and rectangular kernels as conv2d.wgsl; the transposed
//   conv reuses these kernels through the same identities (src/gpu/conv.rs).
// Workgroup memory: 8.5 KiB.
//
// Bindings (as conv2d.wgsl): 0 params, 1 dst, 2 src_a, 3 src_b / src_b4, 4 bias
//   conv_fwd_tiled:        dst = y, src_a = x, src_b4 = pack_w_fwd(wt), bias over cout
//   conv_bwd_input_tiled:  dst = x, src_a = y, src_b4 = pack_w_bwd(wt), bias over cin
//   (both: the ReLU applied to the stored value when relu != 0)
//   conv_bwd_weight_tiled: dst = partial sums (splits, cout*cin*kh*kw), src_a = x, src_b = y;
//                          `rows_per_split` = GEMM K (= output pixels n, oh, ow) per split
// Dispatch (linear, see prelude.wgsl), tiles_c = ceil(channels / 64):
//   conv_fwd_tiled:        ceil(batch*ho*wo / 64) * tiles_c
//   conv_bwd_input_tiled:  ceil(batch*h*w / 64) * tiles_c
//   conv_bwd_weight_tiled: splits * ceil(cin*kh*kw / 64) * tiles_c   (tiles_c over cout)


const TILE: u32 = 64u;
const TK: u32 = 16u;
const ROW4: u32 = 17u;

// sa[k * ROW4 + m / 4][m % 4] = A[m0 + m, k0 + k] (channels);  sb[k * ROW4 + n / 4][n % 4] = B[k0 + k, n0 + n]
var<workgroup> sa: array<vec4<f32>, 272>;
var<workgroup> sb: array<vec4<f32>, 272>;

struct Acc {
    c00: mat4x4<f32>,
    c01: mat4x4<f32>,
    c10: mat4x4<f32>,
    c11: mat4x4<f32>,
}

fn outer(col: vec4<f32>, row: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(col * row.x, col * row.y, col * row.z, col * row.w);
}

// cRC column q is GEMM row 4ty + 32R + q over the columns 4tx + 32C .. +3 (ty = lid / 8, tx = lid % 8)
fn mma_slice(acc: ptr<function, Acc>, lid: u32) {
    let ty = lid / 8u;
    let tx = lid % 8u;
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

fn round4(v: u32) -> u32 {
    return (v + 3u) & ~3u;
}

// The packed weight's slice: rows r = k0 .. k0 + 15 of `kred`, channels m0 .. m0 + 63 of a row
// of `np` (a multiple of 4, zero padded); zero past kred, clamped past np (not stored).
fn copy_packed_w(m0: u32, k0: u32, kred: u32, np: u32, lid: u32) {
    let fast = m0 + TILE <= np && k0 + TK <= kred;
    for (var q = 0u; q < 4u; q++) {
        let v = lid + 64u * q;
        let kk = v / 16u;
        let mq = (v % 16u) * 4u;
        var x: vec4<f32>;
        if (fast) {
            x = src_b4[((k0 + kk) * np + m0 + mq) / 4u];
        } else {
            let r = min(k0 + kk, kred - 1u);
            x = select(vec4<f32>(0.0), src_b4[(r * np + min(m0 + mq, np - 4u)) / 4u], k0 + kk < kred);
        }
        sa[kk * ROW4 + mq / 4u] = x;
    }
}

// Write a 4x4 block (rows = channels from `ch` < nch, columns = pixels from `pix` < total of
// planes of `plane` elements) to dst, adding the bias when there is one, then the ReLU when
// asked (the epilogue, as conv2d.wgsl).
fn store4(v: mat4x4<f32>, ch: u32, pix: u32, nch: u32, plane: u32, total: u32, off: u32) {
    for (var q = 0u; q < 4u; q++) {
        let c = ch + q;
        if (c >= nch) { continue; }
        let b = select(0.0, bias[min(c, arrayLength(&bias) - 1u)], params.has_bias != 0u);
        for (var r = 0u; r < 4u; r++) {
            let p = pix + r;
            if (p >= total) { continue; }
            let n = p / plane;
            let o = v[q][r] + b;
            dst[off + (n * nch + c) * plane + p % plane] = select(o, max(o, 0.0), params.relu != 0u);
        }
    }
}

fn store_data(acc: Acc, m0: u32, n0: u32, lid: u32, nch: u32, plane: u32, total: u32, off: u32) {
    let m = m0 + 4u * (lid / 8u);
    let n = n0 + 4u * (lid % 8u);
    store4(acc.c00, m, n, nch, plane, total, off);
    store4(acc.c01, m, n + 32u, nch, plane, total, off);
    store4(acc.c10, m + 32u, n, nch, plane, total, off);
    store4(acc.c11, m + 32u, n + 32u, nch, plane, total, off);
}

// Step (c, i, j) to the next reduction index in (c, kh, kw) order.
fn next_tap(t: vec3<u32>) -> vec3<u32> {
    var j = t.z + 1u;
    let wj = j == params.kw;
    j = select(j, 0u, wj);
    var i = select(t.y, t.y + 1u, wj);
    let wi = i == params.kh;
    i = select(i, 0u, wi);
    return vec3<u32>(select(t.x, t.x + 1u, wi), i, j);
}

fn tap_of(r: u32) -> vec3<u32> {
    let kk = params.kh * params.kw;
    let tap = r % kk;
    return vec3<u32>(r / kk, tap / params.kw, tap % params.kw);
}

// y[n, co, oh, ow] = bias[co] + sum_{ci,i,j} wt[co,ci,i,j] * x[n, ci, oh*sh - ph + i*dh, ow*sw - pw + j*dw]
// GEMM rows = cout, columns = batch*ho*wo, K = cin*kh*kw (r = (ci, i, j)).
@compute @workgroup_size(64)
fn conv_fwd_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = workgroup_index(wid, nwg, params.wg_base);
    let m0 = (g % params.tiles_c) * TILE;
    let n0 = (g / params.tiles_c) * TILE;
    let howo = params.ho * params.wo;
    let hw = params.h * params.w;
    let total = params.batch * howo;
    let kred = params.cin * params.kh * params.kw;
    let np = round4(params.cout);

    // this thread's gather column: one output pixel for the whole op
    let p = min(n0 + lid, total - 1u);
    let valid = n0 + lid < total;
    let rem = p % howo;
    let xbase = params.x_off + (p / howo) * params.cin * hw;
    let ih0 = i32((rem / params.wo) * params.sh) - i32(params.ph);
    let iw0 = i32((rem % params.wo) * params.sw) - i32(params.pw);
    let inside = valid && ih0 >= 0 && iw0 >= 0
        && ih0 + i32((params.kh - 1u) * params.dh) < i32(params.h)
        && iw0 + i32((params.kw - 1u) * params.dw) < i32(params.w);
    let col = lid / 4u;
    let comp = lid % 4u;

    var acc: Acc;
    for (var k0 = 0u; k0 < kred; k0 += TK) {
        copy_packed_w(m0, k0, kred, np, lid);
        var t = tap_of(k0);
        for (var q = 0u; q < TK; q++) {
            let ih = ih0 + i32(t.y * params.dh);
            let iw = iw0 + i32(t.z * params.dw);
            let ok = k0 + q < kred;
            var v = 0.0;
            if (inside && ok) {
                v = src_a[xbase + t.x * hw + u32(ih) * params.w + u32(iw)];
            } else if (valid && ok && ih >= 0 && iw >= 0 && ih < i32(params.h) && iw < i32(params.w)) {
                v = src_a[xbase + t.x * hw + u32(ih) * params.w + u32(iw)];
            }
            sb[q * ROW4 + col][comp] = v;
            t = next_tap(t);
        }
        workgroupBarrier();
        mma_slice(&acc, lid);
        workgroupBarrier();
    }
    store_data(acc, m0, n0, lid, params.cout, howo, total, params.y_off);
}

// x[n, ci, ih, iw] = bias[ci] + sum over (co, i, j) with oh = (ih + ph - i*dh) / sh and
// ow = (iw + pw - j*dw) / sw integral and in range of wt[co, ci, i, j] * y[n, co, oh, ow].
// GEMM rows = cin, columns = batch*h*w, K = cout*kh*kw (r = (co, i, j), the packed weight's rows).
@compute @workgroup_size(64)
fn conv_bwd_input_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = workgroup_index(wid, nwg, params.wg_base);
    let m0 = (g % params.tiles_c) * TILE;
    let n0 = (g / params.tiles_c) * TILE;
    let howo = params.ho * params.wo;
    let hw = params.h * params.w;
    let total = params.batch * hw;
    let kred = params.cout * params.kh * params.kw;
    let np = round4(params.cin);

    let p = min(n0 + lid, total - 1u);
    let valid = n0 + lid < total;
    let rem = p % hw;
    let ybase = params.y_off + (p / hw) * params.cout * howo;
    let th0 = i32(rem / params.w + params.ph);
    let tw0 = i32(rem % params.w + params.pw);
    // stride 1 and every tap's source pixel inside y: no checks
    let inside = valid && params.sh == 1u && params.sw == 1u
        && th0 - i32((params.kh - 1u) * params.dh) >= 0 && th0 < i32(params.ho)
        && tw0 - i32((params.kw - 1u) * params.dw) >= 0 && tw0 < i32(params.wo);
    let sh = i32(params.sh);
    let sw = i32(params.sw);
    let col = lid / 4u;
    let comp = lid % 4u;

    var acc: Acc;
    for (var k0 = 0u; k0 < kred; k0 += TK) {
        copy_packed_w(m0, k0, kred, np, lid);
        var t = tap_of(k0);
        for (var q = 0u; q < TK; q++) {
            let th = th0 - i32(t.y * params.dh);
            let tw = tw0 - i32(t.z * params.dw);
            let ok = k0 + q < kred;
            var v = 0.0;
            if (inside && ok) {
                v = src_a[ybase + t.x * howo + u32(th) * params.wo + u32(tw)];
            } else if (valid && ok && th >= 0 && tw >= 0 && th % sh == 0 && tw % sw == 0) {
                let oh = th / sh;
                let ow = tw / sw;
                if (oh < i32(params.ho) && ow < i32(params.wo)) {
                    v = src_a[ybase + t.x * howo + u32(oh) * params.wo + u32(ow)];
                }
            }
            sb[q * ROW4 + col][comp] = v;
            t = next_tap(t);
        }
        workgroupBarrier();
        mma_slice(&acc, lid);
        workgroupBarrier();
    }
    store_data(acc, m0, n0, lid, params.cin, hw, total, params.x_off);
}

// partial[split, co, r] = sum over output pixels k = (n, oh, ow) of this split of
// y[n, co, oh, ow] * x[n, ci, oh*sh - ph + i*dh, ow*sw - pw + j*dw],  r = (ci, i, j).
// GEMM rows = cout, columns = cin*kh*kw, K = batch*ho*wo in `splits` ranges of rows_per_split.
@compute @workgroup_size(64)
fn conv_bwd_weight_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = workgroup_index(wid, nwg, params.wg_base);
    let kred = params.cin * params.kh * params.kw;
    let tiles_r = (kred + TILE - 1u) / TILE;
    let m0 = (g % params.tiles_c) * TILE;
    let n0 = ((g / params.tiles_c) % tiles_r) * TILE;
    let split = g / (params.tiles_c * tiles_r);
    let howo = params.ho * params.wo;
    let hw = params.h * params.w;
    let ktot = params.batch * howo;
    let kbeg = split * params.rows_per_split;
    let kend = min(kbeg + params.rows_per_split, ktot);

    // this thread's gather column: one weight tap r = (ci, i, j) for the whole op
    let r = n0 + lid;
    let col_ok = r < kred;
    let tp = tap_of(min(r, kred - 1u));
    let xplane = params.x_off + tp.x * hw;
    let dh = i32(tp.y * params.dh) - i32(params.ph);
    let dw = i32(tp.z * params.dw) - i32(params.pw);
    // the weight-side copy: this thread's pixel k0 + lid % 16 and channels m0 + lid / 16 + 4q
    let kk_a = lid % 16u;
    let col = lid / 4u;
    let comp = lid % 4u;

    var acc: Acc;
    for (var k0 = kbeg; k0 < kend; k0 += TK) {
        // A[co, k] = y[n, co, pixel]: 16 scalars per thread, consecutive threads consecutive pixels
        let ka = min(k0 + kk_a, ktot - 1u);
        let ya = params.y_off + (ka / howo) * params.cout * howo + ka % howo;
        let ka_ok = k0 + kk_a < kend;
        for (var q = 0u; q < 16u; q++) {
            let mm = lid / 16u + 4u * q;
            let co = m0 + mm;
            let v = select(0.0, src_b[ya + min(co, params.cout - 1u) * howo], ka_ok && co < params.cout);
            sa[kk_a * ROW4 + mm / 4u][mm % 4u] = v;
        }
        // B[k, r] = x at the tap's shift of output pixel k = (n, oh, ow), walked by increments
        let kb = min(k0, ktot - 1u);
        var n = kb / howo;
        var oh = (kb % howo) / params.wo;
        var ow = kb % params.wo;
        for (var q = 0u; q < TK; q++) {
            let ih = i32(oh * params.sh) + dh;
            let iw = i32(ow * params.sw) + dw;
            let ok = col_ok && k0 + q < kend && ih >= 0 && iw >= 0 && ih < i32(params.h) && iw < i32(params.w);
            var v = 0.0;
            if (ok) {
                v = src_a[xplane + n * params.cin * hw + u32(ih) * params.w + u32(iw)];
            }
            sb[q * ROW4 + col][comp] = v;
            ow += 1u;
            let wrap = ow == params.wo;
            ow = select(ow, 0u, wrap);
            oh = select(oh, oh + 1u, wrap);
            let wrap_h = oh == params.ho;
            oh = select(oh, 0u, wrap_h);
            n = select(n, n + 1u, wrap_h);
        }
        workgroupBarrier();
        mma_slice(&acc, lid);
        workgroupBarrier();
    }
    let base = split * params.cout * kred;
    let m = m0 + 4u * (lid / 8u);
    let c = n0 + 4u * (lid % 8u);
    store_w4(acc.c00, m, c, kred, base);
    store_w4(acc.c01, m, c + 32u, kred, base);
    store_w4(acc.c10, m + 32u, c, kred, base);
    store_w4(acc.c11, m + 32u, c + 32u, kred, base);
}

// partial[base + co * kred + r] for a 4x4 block (rows co.., columns r..), masked to the weight
fn store_w4(v: mat4x4<f32>, co: u32, r: u32, kred: u32, base: u32) {
    for (var q = 0u; q < 4u; q++) {
        if (co + q >= params.cout) { continue; }
        for (var t = 0u; t < 4u; t++) {
            if (r + t >= kred) { continue; }
            dst[base + (co + q) * kred + r + t] = v[q][t];
        }
    }
}
