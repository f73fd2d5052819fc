// conv2d.wgsl — 2-D convolution as register-blocked implicit GEMMs (no shared memory, no
// barriers: each thread owns an 8x8 block of outputs in registers and gathers its operands
// straight from global memory / cache; see docs/ARCHITECTURE.md, "Conventions").
// Why 8x8: per step of the reduction a thread loads 8 + 8 values for 64 FMAs (4x4: 8 for 16).
// On llvmpipe every loaded component is scalarised per invocation and costs far more than an
// FMA, so this halves the time; on real GPUs 64 accumulators is the usual blocking.
//
// Shapes (NCHW, weights OIHW as PyTorch):
//   x  (batch, cin, h, w)      "input side" of the conv
//   y  (batch, cout, ho, wo)   "output side" (y of the forward, gy of the backward)
//   wt (cout, cin, kh, kw)   (every size and setting per axis: rows h, columns w)
// The same kernels serve the transposed conv: its forward is conv_bwd_input, its
// backward-input is conv_fwd, its backward-weight is conv_bwd_weight with x and y swapped.
// Spatial sizes are passed explicitly (never recomputed here), and every gather is
// bounds-checked against them, so padding/dilation/output_padding need no special cases.
//
// Bindings (per entry point; only those an entry uses are in its layout):
// (the Params struct and these bindings are in conv2d_params.wgsl, shared with conv2d_tiled.wgsl)
//   0 params (uniform), 1 dst (read_write), 2 src_a (read), 3 src_b (read), 4 bias (read)
//   conv_fwd:        dst = y,  src_a = x,  src_b4 = wt packed by pack_w_fwd, bias (Cout) used when has_bias
//   conv_bwd_input:  dst = x,  src_a = y,  src_b4 = wt packed by pack_w_bwd, bias (Cin)  used when has_bias
//   (both: the ReLU applied to the stored value when relu != 0)
//   conv_bwd_weight: dst = partial sums (splits, cout*cin*kh*kw), src_a = x, src_b = y
//   sum_partials:    dst = gw (cout*cin*kh*kw), src_a = partial sums
//   pack_w_fwd/bwd:  dst = packed weight, src_a = wt
// x_off / y_off are element offsets of the tensors inside their (256-byte aligned) bindings,
// which let the host bind one batch slice of a tensor larger than one binding.
// Storage types (conv2d_params.wgsl): f32 throughout, except in the f16 modules of the fused
// inference (src/gpu/conv.rs, `CONV_F16_*`: the packed weight and x and/or y as f16), where
// conv_fwd and pack_w_fwd run; values are converted to f32 as loaded, so sums are f32 always.
//
// Dispatch (linear workgroup counts, see prelude.wgsl), 64 threads per workgroup laid out as
// 16 "column" lanes x 4 "row" lanes; a thread's 8 columns are 16 apart, so neighbouring
// threads touch neighbouring pixels (coalesced on real GPUs); its 8 rows are contiguous in
// conv_fwd / conv_bwd_input (two vec4 loads of the packed weight, the same for the 16 lanes
// of a row: a broadcast) and 4 apart in conv_bwd_weight. A workgroup covers 128 columns x 32 rows.
//   conv_fwd:        ceil(batch*ho*wo / 128) * tiles_c workgroups, tiles_c = ceil(cout / 32)
//   conv_bwd_input:  ceil(batch*h*w / 128) * tiles_c workgroups,   tiles_c = ceil(cin / 32)
//   conv_bwd_weight: splits * ceil(cin*kh*kw / 128) * tiles_c,      tiles_c = ceil(cout / 32)
//   sum_partials:    ceil(cout*cin*kh*kw / 256)
//   pack_w_fwd/bwd:  ceil(len(packed) / 256)


const COLS: u32 = 128u; // columns (pixels or weight taps) per workgroup tile
const ROWS: u32 = 32u;  // rows (channels) per workgroup tile

// A thread's 8 columns and 8 rows, each as two vec4 halves (lo: 0..3, hi: 4..7), so that
// per-column and per-row bookkeeping is plain vector arithmetic (no indexed arrays).
fn thread_cols(tile: u32, lid: u32) -> array<vec4<u32>, 2> {
    let c = tile * COLS + lid % 16u;
    return array<vec4<u32>, 2>(c + vec4<u32>(0u, 16u, 32u, 48u), c + vec4<u32>(64u, 80u, 96u, 112u));
}
fn thread_rows(tile: u32, lid: u32) -> array<vec4<u32>, 2> {
    let r = tile * ROWS + lid / 16u;
    return array<vec4<u32>, 2>(r + vec4<u32>(0u, 4u, 8u, 12u), r + vec4<u32>(16u, 20u, 24u, 28u));
}

// 8 contiguous rows (channels read as two vec4s of a packed weight): first row of each half
fn thread_rows8(tile: u32, lid: u32) -> array<vec4<u32>, 2> {
    let r = tile * ROWS + (lid / 16u) * 8u;
    return array<vec4<u32>, 2>(r + vec4<u32>(0u, 1u, 2u, 3u), r + vec4<u32>(4u, 5u, 6u, 7u));
}

// vec4 index of each half's first channel in a packed weight row of `np` (a multiple of 4)
// channels, clamped so loads stay in range (the stores are masked)
fn packed_halves(ch: array<vec4<u32>, 2>, np: u32) -> vec2<u32> {
    return min(vec2<u32>(ch[0].x, ch[1].x), vec2<u32>(np - 4u)) / 4u;
}

fn round4(v: u32) -> u32 {
    return (v + 3u) & ~3u;
}

// The 8x8 accumulator as 2x2 blocks: cRC holds rows half R, columns half C; column q of a
// block is row 4R+q over 4 columns.
struct Acc {
    c00: mat4x4<f32>,
    c01: mat4x4<f32>,
    c10: mat4x4<f32>,
    c11: mat4x4<f32>,
}

fn outer(col: vec4<f32>, row: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(col * row.x, col * row.y, col * row.z, col * row.w);
}

// acc[i][j] += row_val[i] * col_val[j] for the 8 rows (r0, r1) and 8 columns (c0, c1)
fn acc_step(acc: ptr<function, Acc>, c0: vec4<f32>, c1: vec4<f32>, r0: vec4<f32>, r1: vec4<f32>) {
    (*acc).c00 += outer(c0, r0);
    (*acc).c01 += outer(c1, r0);
    (*acc).c10 += outer(c0, r1);
    (*acc).c11 += outer(c1, r1);
}

// Four values of a read-only source, zero where `ok` is false (the index is then 0, in range).
// (Values are converted to f32 as loaded and to YT as stored: no-ops in the f32 modules.)
fn load_a(idx: vec4<u32>, ok: vec4<bool>) -> vec4<f32> {
    return select(vec4<f32>(0.0), vec4<f32>(vec4<XT>(src_a[idx.x], src_a[idx.y], src_a[idx.z], src_a[idx.w])), ok);
}
fn load_b(idx: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(vec4<XT>(src_b[idx.x], src_b[idx.y], src_b[idx.z], src_b[idx.w]));
}
fn load_w4(i: u32) -> vec4<f32> {
    return vec4<f32>(src_b4[i]);
}

// Write a 4x4 block (rows = channels `ch` < nch, columns = pixels `pix` < total of planes of
// `plane` elements) to dst, adding the bias when there is one and then the ReLU when asked
// (the epilogue: no second pass over the output).
fn store4(v: mat4x4<f32>, ch: vec4<u32>, pix: vec4<u32>, nch: u32, plane: u32, total: u32, off: u32) {
    for (var i = 0u; i < 4u; i++) {
        if (ch[i] >= nch) { continue; }
        let b = select(0.0, bias[min(ch[i], arrayLength(&bias) - 1u)], params.has_bias != 0u);
        for (var j = 0u; j < 4u; j++) {
            if (pix[j] >= total) { continue; }
            let n = pix[j] / plane;
            let o = v[i][j] + b;
            dst[off + (n * nch + ch[i]) * plane + pix[j] % plane] = YT(select(o, max(o, 0.0), params.relu != 0u));
        }
    }
}

fn store_block(acc: Acc, ch: array<vec4<u32>, 2>, pix: array<vec4<u32>, 2>, nch: u32, plane: u32, total: u32, off: u32) {
    store4(acc.c00, ch[0], pix[0], nch, plane, total, off);
    store4(acc.c01, ch[0], pix[1], nch, plane, total, off);
    store4(acc.c10, ch[1], pix[0], nch, plane, total, off);
    store4(acc.c11, ch[1], pix[1], nch, plane, total, off);
}

// Per-pixel state of the forward: x plane-0 base of the pixel's sample and its top-left
// input corner (oh*sh - ph, ow*sw - pw), for 4 pixels.
struct FwdPix {
    xbase: vec4<u32>,
    ih0: vec4<i32>,
    iw0: vec4<i32>,
}

fn fwd_pix(pix: vec4<u32>, total: u32) -> FwdPix {
    let howo = params.ho * params.wo;
    let p = min(pix, vec4<u32>(total - 1u));
    let n = p / howo;
    let r = p % howo;
    let ih0 = vec4<i32>((r / params.wo) * params.sh) - vec4<i32>(i32(params.ph));
    let iw0 = vec4<i32>((r % params.wo) * params.sw) - vec4<i32>(i32(params.pw));
    return FwdPix(params.x_off + n * (params.cin * params.h * params.w), ih0, iw0);
}

// Index in x of tap (dh, dw) from each pixel's corner, and whether it is inside the image.
struct Tap {
    idx: vec4<u32>,
    ok: vec4<bool>,
}

fn fwd_tap(q: FwdPix, dh: i32, dw: i32) -> Tap {
    let ih = q.ih0 + dh;
    let iw = q.iw0 + dw;
    let ok = (ih >= vec4<i32>(0)) & (iw >= vec4<i32>(0)) & (ih < vec4<i32>(i32(params.h))) & (iw < vec4<i32>(i32(params.w)));
    let idx = q.xbase + vec4<u32>(ih) * params.w + vec4<u32>(iw);
    return Tap(select(vec4<u32>(0u), idx, ok), ok);
}

// y[n, co, oh, ow] = bias[co] + sum_{ci,i,j} wt[co,ci,i,j] * x[n, ci, oh*sh - ph + i*dh, ow*sw - pw + j*dw]
// GEMM rows = cout, columns = batch*ho*wo, K = cin*kh*kw (gathered on the fly).
@compute @workgroup_size(64)
fn conv_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = workgroup_index(wid, nwg, params.wg_base);
    let total = params.batch * params.ho * params.wo;
    let hw = params.h * params.w;
    let kk = params.kh * params.kw;
    let cin = params.cin;

    let pix = thread_cols(g / params.tiles_c, lid);
    let q0 = fwd_pix(pix[0], total);
    let q1 = fwd_pix(pix[1], total);
    // the thread's 8 output channels, read as 2 vec4s of the packed weight wp[r][co]
    let co = thread_rows8(g % params.tiles_c, lid);
    let wstep = round4(params.cout) / 4u; // vec4s per packed row
    let wh = packed_halves(co, round4(params.cout));

    var acc: Acc;
    // taps outside, channels inside: the bounds checks are done once per tap, and the long
    // inner loop is 8 scalar + 2 vec4 loads and 64 FMAs
    for (var i = 0u; i < params.kh; i++) {
        for (var j = 0u; j < params.kw; j++) {
            let dh = i32(i * params.dh);
            let dw = i32(j * params.dw);
            let t0 = fwd_tap(q0, dh, dw);
            let t1 = fwd_tap(q1, dh, dw);
            if (!any(t0.ok) && !any(t1.ok)) { continue; }
            // vec4 index of wp[r][co] for r = (ci, i, j) flattened, the weight's inner index
            var wi = wh + vec2<u32>((i * params.kw + j) * wstep);
            let wi_step = vec2<u32>(kk * wstep);
            var plane = 0u;
            for (var ci = 0u; ci < cin; ci++) {
                let x0 = load_a(t0.idx + plane, t0.ok);
                let x1 = load_a(t1.idx + plane, t1.ok);
                acc_step(&acc, x0, x1, load_w4(wi.x), load_w4(wi.y));
                wi += wi_step;
                plane += hw;
            }
        }
    }
    store_block(acc, co, pix, params.cout, params.ho * params.wo, total, params.y_off);
}

// Per-pixel state of the backward-input: y plane-0 base of the pixel's sample and (ih + ph, iw + pw).
struct BwdPix {
    ybase: vec4<u32>,
    th0: vec4<i32>,
    tw0: vec4<i32>,
    valid: vec4<bool>,
}

fn bwd_pix(pix: vec4<u32>, total: u32) -> BwdPix {
    let hw = params.h * params.w;
    let p = min(pix, vec4<u32>(total - 1u));
    let n = p / hw;
    let r = p % hw;
    let th0 = vec4<i32>(r / params.w) + vec4<i32>(i32(params.ph));
    let tw0 = vec4<i32>(r % params.w) + vec4<i32>(i32(params.pw));
    return BwdPix(params.y_off + n * (params.cout * params.ho * params.wo), th0, tw0, pix < vec4<u32>(total));
}

// Which output pixel (if any) each of 4 input pixels feeds through the tap (dh, dw):
// oh = (ih + ph - dh) / sh and ow = (iw + pw - dw) / sw when integral and in range.
fn bwd_tap(q: BwdPix, dh: i32, dw: i32) -> Tap {
    let sh = vec4<i32>(i32(params.sh));
    let sw = vec4<i32>(i32(params.sw));
    let th = q.th0 - dh;
    let tw = q.tw0 - dw;
    let oh = th / sh;
    let ow = tw / sw;
    let ok = q.valid & (th >= vec4<i32>(0)) & (tw >= vec4<i32>(0)) & (th % sh == vec4<i32>(0)) & (tw % sw == vec4<i32>(0))
        & (oh < vec4<i32>(i32(params.ho))) & (ow < vec4<i32>(i32(params.wo)));
    let idx = q.ybase + vec4<u32>(oh) * params.wo + vec4<u32>(ow);
    return Tap(select(vec4<u32>(0u), idx, ok), ok);
}

// x[n, ci, ih, iw] = bias[ci] + sum over (co, i, j) with oh = (ih + ph - i*dh) / sh and
// ow = (iw + pw - j*dw) / sw integral and in range of wt[co, ci, i, j] * y[n, co, oh, ow]
// (the adjoint of conv_fwd). GEMM rows = cin, columns = batch*h*w, K = cout for each tap (i, j).
@compute @workgroup_size(64)
fn conv_bwd_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = workgroup_index(wid, nwg, params.wg_base);
    let hw = params.h * params.w;
    let howo = params.ho * params.wo;
    let total = params.batch * hw;
    let kk = params.kh * params.kw;
    let cout = params.cout;

    let pix = thread_cols(g / params.tiles_c, lid);
    let q0 = bwd_pix(pix[0], total);
    let q1 = bwd_pix(pix[1], total);
    // the thread's 8 input channels, read as 2 vec4s of the packed weight wp[co][i][j][ci]
    let ci = thread_rows8(g % params.tiles_c, lid);
    let wstep = round4(params.cin) / 4u; // vec4s per packed row
    let wh = packed_halves(ci, round4(params.cin));

    var acc: Acc;
    for (var i = 0u; i < params.kh; i++) {
        for (var j = 0u; j < params.kw; j++) {
            let dh = i32(i * params.dh);
            let dw = i32(j * params.dw);
            let t0 = bwd_tap(q0, dh, dw);
            let t1 = bwd_tap(q1, dh, dw);
            if (!any(t0.ok) && !any(t1.ok)) { continue; }
            var wi = wh + vec2<u32>((i * params.kw + j) * wstep); // wp[co][i][j][ci..]
            let wi_step = vec2<u32>(kk * wstep);
            var yo = 0u; // co * howo
            for (var co = 0u; co < cout; co++) {
                let y0 = load_a(t0.idx + yo, t0.ok);
                let y1 = load_a(t1.idx + yo, t1.ok);
                acc_step(&acc, y0, y1, load_w4(wi.x), load_w4(wi.y));
                wi += wi_step;
                yo += howo;
            }
        }
    }
    store_block(acc, ci, pix, params.cin, hw, total, params.x_off);
}

// partial[split, co, r] = sum over output rows (n, oh) of this split and all ow of
// y[n, co, oh, ow] * x[n, ci, oh*sh - ph + i*dh, ow*sw - pw + j*dw],  r = (ci, i, j).
// GEMM rows = cout, columns = cin*kh*kw, K = batch*ho*wo split into `splits` slices.
struct WTaps {
    plane: vec4<u32>, // ci * h * w
    dh: vec4<i32>,    // i*dh - ph
    dw: vec4<i32>,    // j*dw - pw
}

fn wtaps(rr: vec4<u32>, kred: u32) -> WTaps {
    let kk = params.kh * params.kw;
    let r = min(rr, vec4<u32>(kred - 1u));
    let dh = vec4<i32>(((r % kk) / params.kw) * params.dh) - vec4<i32>(i32(params.ph));
    let dw = vec4<i32>((r % params.kw) * params.dw) - vec4<i32>(i32(params.pw));
    return WTaps((r / kk) * (params.h * params.w), dh, dw);
}

// One output row (n, oh) seen from 4 taps: x index of (ih + dh, 0) in each tap's plane and
// whether that input row exists; the columns are checked per output pixel.
struct XRow {
    base: vec4<i32>,
    ok: vec4<bool>,
}

fn x_row(t: WTaps, xb: u32, ih: i32) -> XRow {
    let h = ih + t.dh;
    let ok = (h >= vec4<i32>(0)) & (h < vec4<i32>(i32(params.h)));
    return XRow(vec4<i32>(xb + t.plane) + h * i32(params.w), ok);
}

// x at (ih + dh, iw + dw) of each tap, or 0 outside the image
fn gather_x(t: WTaps, row: XRow, iw: i32) -> vec4<f32> {
    let w = iw + t.dw;
    let ok = row.ok & (w >= vec4<i32>(0)) & (w < vec4<i32>(i32(params.w)));
    return load_a(select(vec4<u32>(0u), vec4<u32>(row.base + w), ok), ok);
}

@compute @workgroup_size(64)
fn conv_bwd_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = workgroup_index(wid, nwg, params.wg_base);
    let kred = params.cin * params.kh * params.kw;
    let tiles_r = (kred + COLS - 1u) / COLS;
    let tile_c = g % params.tiles_c;
    let tile_r = (g / params.tiles_c) % tiles_r;
    let split = g / (params.tiles_c * tiles_r);
    let hw = params.h * params.w;
    let howo = params.ho * params.wo;
    let wo = params.wo;

    // the thread's 8 weight taps (ci, i, j) and 8 output channels
    let rr = thread_cols(tile_r, lid);
    let t0 = wtaps(rr[0], kred);
    let t1 = wtaps(rr[1], kred);
    let co = thread_rows(tile_c, lid);
    let yplane0 = min(co[0], vec4<u32>(params.cout - 1u)) * howo;
    let yplane1 = min(co[1], vec4<u32>(params.cout - 1u)) * howo;

    var acc: Acc;
    let row_end = min((split + 1u) * params.rows_per_split, params.batch * params.ho);
    for (var row = split * params.rows_per_split; row < row_end; row++) {
        let n = row / params.ho;
        let oh = row % params.ho;
        let xb = params.x_off + n * params.cin * hw;
        let yb = params.y_off + n * params.cout * howo + oh * wo;
        let ih = i32(oh * params.sh);
        let xr0 = x_row(t0, xb, ih);
        let xr1 = x_row(t1, xb, ih);
        if (!any(xr0.ok) && !any(xr1.ok)) { continue; }
        for (var ow = 0u; ow < wo; ow++) {
            let iw = i32(ow * params.sw);
            let x0 = gather_x(t0, xr0, iw);
            let x1 = gather_x(t1, xr1, iw);
            acc_step(&acc, x0, x1, load_b(yplane0 + (yb + ow)), load_b(yplane1 + (yb + ow)));
        }
    }
    let base = split * params.cout * kred;
    store_w4(acc.c00, co[0], rr[0], kred, base);
    store_w4(acc.c01, co[0], rr[1], kred, base);
    store_w4(acc.c10, co[1], rr[0], kred, base);
    store_w4(acc.c11, co[1], rr[1], kred, base);
}

// partial[base + co * kred + r] for a 4x4 block (rows co, columns r), masked to the weight
fn store_w4(v: mat4x4<f32>, co: vec4<u32>, rr: vec4<u32>, kred: u32, base: u32) {
    for (var i = 0u; i < 4u; i++) {
        if (co[i] >= params.cout) { continue; }
        for (var j = 0u; j < 4u; j++) {
            if (rr[j] >= kred) { continue; }
            dst[base + co[i] * kred + rr[j]] = YT(v[i][j]);
        }
    }
}

// Weight packing, so that a thread's 8 channels are two aligned vec4 loads (channel counts
// padded to a multiple of 4 with zeros). src_a = wt (cout, cin, kh, kw), dst = packed weight.
//   pack_w_fwd: wp[r][co], r = (ci, i, j), rows of round4(cout)           (for conv_fwd)
//   pack_w_bwd: wp[co][i][j][ci], rows of round4(cin)                     (for conv_bwd_input)
// Dispatch: ceil(len(wp) / 256) workgroups of 256.
@compute @workgroup_size(256)
fn pack_w_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = workgroup_index(wid, nwg, params.wg_base) * 256u + lid;
    let np = round4(params.cout);
    let kred = params.cin * params.kh * params.kw;
    if (i >= kred * np) { return; }
    let co = i % np;
    let r = i / np;
    dst[i] = YT(select(0.0, f32(src_a[min(co, params.cout - 1u) * kred + r]), co < params.cout));
}

@compute @workgroup_size(256)
fn pack_w_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = workgroup_index(wid, nwg, params.wg_base) * 256u + lid;
    let np = round4(params.cin);
    let kk = params.kh * params.kw;
    if (i >= params.cout * kk * np) { return; }
    let ci = i % np;
    let tap = (i / np) % kk;
    let co = i / (np * kk);
    dst[i] = YT(select(0.0, f32(src_a[(co * params.cin + min(ci, params.cin - 1u)) * kk + tap]), ci < params.cin));
}

// dst[i] = (accumulate ? dst[i] : 0) + sum_s src_a[s * n + i],  n = cout*cin*kh*kw
@compute @workgroup_size(256)
fn sum_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = workgroup_index(wid, nwg, params.wg_base) * 256u + lid;
    let n = params.cout * params.cin * params.kh * params.kw;
    if (i >= n) { return; }
    var s = 0.0;
    for (var j = 0u; j < params.splits; j++) {
        s += f32(src_a[j * n + i]);
    }
    if (params.accumulate != 0u) { s += f32(dst[i]); }
    dst[i] = YT(s);
}
