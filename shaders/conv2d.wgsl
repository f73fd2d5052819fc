// conv2d.wgsl — 2-D convolution as register-blocked implicit GEMMs (no shared memory, no
// barriers: each thread owns a 4x4 block of outputs in registers and gathers its operands
// straight from global memory / cache; see DESIGN.md for why barriers are avoided).
//
// Shapes (NCHW, weights OIHW as PyTorch):
//   x  (batch, cin, h, w)      "input side" of the conv
//   y  (batch, cout, ho, wo)   "output side" (y of the forward, gy of the backward)
//   wt (cout, cin, k, k)
// The same kernels serve the transposed conv: its forward is conv_bwd_input, its
// backward-input is conv_fwd, its backward-weight is conv_bwd_weight with x and y swapped.
// Spatial sizes are passed explicitly (never recomputed here), and every gather is
// bounds-checked against them, so padding/dilation/output_padding need no special cases.
//
// Bindings (per entry point; only those an entry uses are in its layout):
//   0 params (uniform), 1 dst (read_write), 2 src_a (read), 3 src_b (read), 4 bias (read)
//   conv_fwd:        dst = y,  src_a = x,  src_b = wt, bias (Cout) used when has_bias
//   conv_bwd_input:  dst = x,  src_a = y,  src_b = wt, bias (Cin)  used when has_bias
//   conv_bwd_weight: dst = partial sums (splits, cout*cin*k*k), src_a = x, src_b = y
//   sum_partials:    dst = gw (cout*cin*k*k), src_a = partial sums
// x_off / y_off are element offsets of the tensors inside their (256-byte aligned) bindings,
// which let the host bind one batch slice of a tensor larger than one binding.
//
// Dispatch (linear workgroup counts, see prelude.wgsl), 64 threads per workgroup laid out as
// 16 "column" lanes x 4 "row" lanes; a thread's 4 columns are 16 apart and its 4 rows are 4
// apart, so neighbouring threads touch neighbouring pixels (coalesced on real GPUs) and the
// lanes of a warp that share a row read the same weight (a broadcast).
//   conv_fwd:        ceil(batch*ho*wo / 64) * tiles_c workgroups, tiles_c = ceil(cout / 16)
//   conv_bwd_input:  ceil(batch*h*w / 64) * tiles_c workgroups,   tiles_c = ceil(cin / 16)
//   conv_bwd_weight: splits * ceil(cin*k*k / 64) * tiles_c,      tiles_c = ceil(cout / 16)
//   sum_partials:    ceil(cout*cin*k*k / 256)

struct Params {
    wg_base: u32,
    batch: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    ho: u32,
    wo: u32,
    k: u32,
    stride: u32,
    pad: u32,
    dil: u32,
    x_off: u32,
    y_off: u32,
    has_bias: u32,
    tiles_c: u32,
    // conv_bwd_weight: output rows (n, oh) per split and number of splits;
    // sum_partials: splits and whether to add to dst (batch chunks after the first)
    rows_per_split: u32,
    splits: u32,
    accumulate: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read> src_a: array<f32>;
@group(0) @binding(3) var<storage, read> src_b: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

const COLS: u32 = 64u; // columns (pixels or weight taps) per workgroup tile
const ROWS: u32 = 16u; // rows (channels) per workgroup tile

// Value of x at (plane base, row ih, col iw) or 0 outside the image.
fn gather_x(base: u32, ih: i32, iw: i32) -> f32 {
    let ok = ih >= 0 && iw >= 0 && ih < i32(params.h) && iw < i32(params.w);
    let idx = select(0u, base + u32(ih) * params.w + u32(iw), ok);
    return select(0.0, src_a[idx], ok);
}

// y[n, co, oh, ow] = bias[co] + sum_{ci,kh,kw} wt[co,ci,kh,kw] * x[n, ci, oh*s - p + kh*d, ow*s - p + kw*d]
// GEMM rows = cout, columns = batch*ho*wo, K = cin*k*k (gathered on the fly).
@compute @workgroup_size(64)
fn conv_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = workgroup_index(wid, nwg, params.wg_base);
    let tile_c = g % params.tiles_c;
    let tile_p = g / params.tiles_c;
    let hw = params.h * params.w;
    let howo = params.ho * params.wo;
    let total = params.batch * howo;
    let kk = params.k * params.k;
    let kred = params.cin * kk;

    // the thread's 4 output pixels: base of their sample in x, top-left input corner
    var xbase: vec4<u32>;
    var ih0: vec4<i32>;
    var iw0: vec4<i32>;
    var pix: vec4<u32>;
    for (var j = 0u; j < 4u; j++) {
        pix[j] = tile_p * COLS + (lid % 16u) + 16u * j;
        let p = min(pix[j], total - 1u);
        let n = p / howo;
        let r = p % howo;
        xbase[j] = params.x_off + n * params.cin * hw;
        ih0[j] = i32((r / params.wo) * params.stride) - i32(params.pad);
        iw0[j] = i32((r % params.wo) * params.stride) - i32(params.pad);
    }
    // the thread's 4 output channels (clamped for loads; stores are masked)
    var wrow: vec4<u32>;
    var co: vec4<u32>;
    for (var i = 0u; i < 4u; i++) {
        co[i] = tile_c * ROWS + (lid / 16u) + 4u * i;
        wrow[i] = min(co[i], params.cout - 1u) * kred;
    }

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    // taps outside, channels inside: the bounds checks are done once per tap, and the long
    // inner loop is 8 loads and 16 FMAs
    for (var kh = 0u; kh < params.k; kh++) {
        for (var kw = 0u; kw < params.k; kw++) {
            var xidx: vec4<u32>;
            var ok: vec4<bool>;
            for (var j = 0u; j < 4u; j++) {
                let ih = ih0[j] + i32(kh * params.dil);
                let iw = iw0[j] + i32(kw * params.dil);
                ok[j] = ih >= 0 && iw >= 0 && ih < i32(params.h) && iw < i32(params.w);
                xidx[j] = select(0u, xbase[j] + u32(ih) * params.w + u32(iw), ok[j]);
            }
            if (!any(ok)) { continue; }
            var r = kh * params.k + kw; // (ci, kh, kw) flattened, the weight's inner index
            var plane = 0u;
            for (var ci = 0u; ci < params.cin; ci++) {
                let xv = vec4<f32>(
                    select(0.0, src_a[xidx[0] + plane], ok[0]),
                    select(0.0, src_a[xidx[1] + plane], ok[1]),
                    select(0.0, src_a[xidx[2] + plane], ok[2]),
                    select(0.0, src_a[xidx[3] + plane], ok[3]));
                acc0 += src_b[wrow[0] + r] * xv;
                acc1 += src_b[wrow[1] + r] * xv;
                acc2 += src_b[wrow[2] + r] * xv;
                acc3 += src_b[wrow[3] + r] * xv;
                r += kk;
                plane += hw;
            }
        }
    }
    store_block(array<vec4<f32>, 4>(acc0, acc1, acc2, acc3), co, pix, params.cout, howo, total, params.y_off);
}

// Write a 4x4 block (rows = channels `ch` < nch, columns = pixels `pix` < total of planes of
// `plane` elements) to dst, adding the bias when there is one.
fn store_block(acc: array<vec4<f32>, 4>, ch: vec4<u32>, pix: vec4<u32>, nch: u32, plane: u32, total: u32, off: u32) {
    for (var i = 0u; i < 4u; i++) {
        if (ch[i] >= nch) { continue; }
        let b = select(0.0, bias[min(ch[i], arrayLength(&bias) - 1u)], params.has_bias != 0u);
        for (var j = 0u; j < 4u; j++) {
            if (pix[j] >= total) { continue; }
            let n = pix[j] / plane;
            dst[off + (n * nch + ch[i]) * plane + pix[j] % plane] = acc[i][j] + b;
        }
    }
}

// x[n, ci, ih, iw] = bias[ci] + sum over (co, kh, kw) with oh = (ih + p - kh*d) / s integral and
// in range of wt[co, ci, kh, kw] * y[n, co, oh, ow]  (the adjoint of conv_fwd).
// GEMM rows = cin, columns = batch*h*w, K = cout for each tap (kh, kw).
@compute @workgroup_size(64)
fn conv_bwd_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = workgroup_index(wid, nwg, params.wg_base);
    let tile_c = g % params.tiles_c;
    let tile_p = g / params.tiles_c;
    let hw = params.h * params.w;
    let howo = params.ho * params.wo;
    let total = params.batch * hw;
    let kk = params.k * params.k;
    let s = i32(params.stride);

    var ybase: vec4<u32>;
    var th0: vec4<i32>; // ih + p
    var tw0: vec4<i32>;
    var pix: vec4<u32>;
    for (var j = 0u; j < 4u; j++) {
        pix[j] = tile_p * COLS + (lid % 16u) + 16u * j;
        let p = min(pix[j], total - 1u);
        let n = p / hw;
        let r = p % hw;
        ybase[j] = params.y_off + n * params.cout * howo;
        th0[j] = i32(r / params.w) + i32(params.pad);
        tw0[j] = i32(r % params.w) + i32(params.pad);
    }
    var ci: vec4<u32>;
    var wcol: vec4<u32>;
    for (var i = 0u; i < 4u; i++) {
        ci[i] = tile_c * ROWS + (lid / 16u) + 4u * i;
        wcol[i] = min(ci[i], params.cin - 1u) * kk;
    }

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var kh = 0u; kh < params.k; kh++) {
        for (var kw = 0u; kw < params.k; kw++) {
            // which output pixel (if any) each of the 4 input pixels feeds through tap (kh, kw)
            var yidx: vec4<u32>;
            var ok: vec4<bool>;
            for (var j = 0u; j < 4u; j++) {
                let th = th0[j] - i32(kh * params.dil);
                let tw = tw0[j] - i32(kw * params.dil);
                let oh = th / s;
                let ow = tw / s;
                ok[j] = pix[j] < total && th >= 0 && tw >= 0 && th % s == 0 && tw % s == 0
                    && oh < i32(params.ho) && ow < i32(params.wo);
                yidx[j] = select(0u, ybase[j] + u32(oh) * params.wo + u32(ow), ok[j]);
            }
            if (!any(ok)) { continue; }
            let tap = kh * params.k + kw;
            for (var co = 0u; co < params.cout; co++) {
                let yo = co * howo;
                let yv = vec4<f32>(
                    select(0.0, src_a[yidx[0] + yo], ok[0]),
                    select(0.0, src_a[yidx[1] + yo], ok[1]),
                    select(0.0, src_a[yidx[2] + yo], ok[2]),
                    select(0.0, src_a[yidx[3] + yo], ok[3]));
                let wr = co * params.cin * kk + tap;
                acc0 += src_b[wr + wcol[0]] * yv;
                acc1 += src_b[wr + wcol[1]] * yv;
                acc2 += src_b[wr + wcol[2]] * yv;
                acc3 += src_b[wr + wcol[3]] * yv;
            }
        }
    }
    store_block(array<vec4<f32>, 4>(acc0, acc1, acc2, acc3), ci, pix, params.cin, hw, total, params.x_off);
}

// partial[split, co, r] = sum over output rows (n, oh) of this split and all ow of
// y[n, co, oh, ow] * x[n, ci, oh*s - p + kh*d, ow*s - p + kw*d],  r = (ci, kh, kw).
// GEMM rows = cout, columns = cin*k*k, K = batch*ho*wo split into `splits` slices.
@compute @workgroup_size(64)
fn conv_bwd_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = workgroup_index(wid, nwg, params.wg_base);
    let kk = params.k * params.k;
    let kred = params.cin * kk;
    let tiles_r = (kred + COLS - 1u) / COLS;
    let tile_c = g % params.tiles_c;
    let tile_r = (g / params.tiles_c) % tiles_r;
    let split = g / (params.tiles_c * tiles_r);
    let hw = params.h * params.w;
    let howo = params.ho * params.wo;

    // the thread's 4 weight taps (ci, kh, kw): plane offset in x and dilated tap offsets
    var rr: vec4<u32>;
    var plane: vec4<u32>;
    var dh: vec4<i32>;
    var dw: vec4<i32>;
    for (var j = 0u; j < 4u; j++) {
        rr[j] = tile_r * COLS + (lid % 16u) + 16u * j;
        let r = min(rr[j], kred - 1u);
        plane[j] = (r / kk) * hw;
        dh[j] = i32(((r % kk) / params.k) * params.dil) - i32(params.pad);
        dw[j] = i32((r % params.k) * params.dil) - i32(params.pad);
    }
    var co: vec4<u32>;
    var yplane: vec4<u32>;
    for (var i = 0u; i < 4u; i++) {
        co[i] = tile_c * ROWS + (lid / 16u) + 4u * i;
        yplane[i] = min(co[i], params.cout - 1u) * howo;
    }

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let row_end = min((split + 1u) * params.rows_per_split, params.batch * params.ho);
    for (var row = split * params.rows_per_split; row < row_end; row++) {
        let n = row / params.ho;
        let oh = row % params.ho;
        let xb = params.x_off + n * params.cin * hw;
        let yb = params.y_off + n * params.cout * howo + oh * params.wo;
        let ih = i32(oh * params.stride);
        var xbase: vec4<u32>;
        for (var j = 0u; j < 4u; j++) { xbase[j] = xb + plane[j]; }
        for (var ow = 0u; ow < params.wo; ow++) {
            let iw = i32(ow * params.stride);
            let xv = vec4<f32>(
                gather_x(xbase[0], ih + dh[0], iw + dw[0]),
                gather_x(xbase[1], ih + dh[1], iw + dw[1]),
                gather_x(xbase[2], ih + dh[2], iw + dw[2]),
                gather_x(xbase[3], ih + dh[3], iw + dw[3]));
            acc0 += src_b[yb + yplane[0] + ow] * xv;
            acc1 += src_b[yb + yplane[1] + ow] * xv;
            acc2 += src_b[yb + yplane[2] + ow] * xv;
            acc3 += src_b[yb + yplane[3] + ow] * xv;
        }
    }
    let acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    let base = split * params.cout * kred;
    for (var i = 0u; i < 4u; i++) {
        if (co[i] >= params.cout) { continue; }
        for (var j = 0u; j < 4u; j++) {
            if (rr[j] >= kred) { continue; }
            dst[base + co[i] * kred + rr[j]] = acc[i][j];
        }
    }
}

// dst[i] = (accumulate ? dst[i] : 0) + sum_s src_a[s * n + i],  n = cout*cin*k*k
@compute @workgroup_size(256)
fn sum_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = workgroup_index(wid, nwg, params.wg_base) * 256u + lid;
    let n = params.cout * params.cin * params.k * params.k;
    if (i >= n) { return; }
    var s = 0.0;
    for (var j = 0u; j < params.splits; j++) {
        s += src_a[j * n + i];
    }
    if (params.accumulate != 0u) { s += dst[i]; }
    dst[i] = s;
}
