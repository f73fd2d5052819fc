// reduce.wgsl — reductions: to a scalar (sum, mean, losses), over rows of the last dimension
// (softmax, softmax cross-entropy), and per channel = over every dim but 1 (bias_grad,
// BatchNorm statistics); plus the elementwise loss gradients.
//
// Bindings: 0 params; 1 `dst` (read_write); 2 `src`, 3 `src2`, 4 `src3`, 5 `src4` (read).
// Per-element tensors are bound as windows of a chunk (src/gpu/elementwise.rs `window`): the
// chunk's first element sits at index `skip` of the binding. Each entry lists its bindings.
//
// Scalar reductions run in two passes: `*_partials` over `groups` workgroups of 256 threads,
// each thread summing a grid-strided slice and the workgroup summing its threads in a tree,
// writes dst[base + workgroup]; `finish` (one workgroup) sums the partials of all chunks.
// Row kernels: one workgroup of 64 threads per row. Channel kernels: `groups` workgroups of
// 64 threads per channel write partials, `chan_finish` (one thread per channel) adds them. The launcher may start a few more workgroups than asked (x*y
// rounding), so every entry bounds-checks its workgroup index.

struct Params {
    wg_base: u32,
    n: u32,        // elements (scalar, elementwise), rows (row kernels) or planes (channel kernels) in the chunk
    skip: u32,     // floats before the chunk's first element inside the bound window
    mode: u32,     // LossKind code for loss entries: 1 mse, 2 l1, 3 bce with logits, 4 least squares
    groups: u32,   // *_partials: workgroups of the launch; chan_*: workgroups per channel
    base: u32,     // *_partials: first partial slot; xent_rows: global index of the chunk's first row;
                   // chan_*: global index of the chunk's first plane
    d: u32,        // row length (row kernels); plane size H*W (channel kernels)
    channels: u32, // channel kernels: C
    scale: f32,    // factor applied to the result (1/n for means)
    slot: u32,     // chan_*: first partial row (in units of `channels` floats) of this chunk
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read> src2: array<f32>;
@group(0) @binding(4) var<storage, read> src3: array<f32>;
@group(0) @binding(5) var<storage, read> src4: array<f32>;

var<workgroup> red256: array<f32, 256>;
var<workgroup> red64: array<f32, 64>;

// Sum of v over the 256 threads of a workgroup (tree in shared memory); every thread gets it.
fn tree_sum256(v: f32, lid: u32) -> f32 {
    red256[lid] = v;
    workgroupBarrier();
    for (var w = 128u; w > 0u; w = w >> 1u) {
        if (lid < w) { red256[lid] = red256[lid] + red256[lid + w]; }
        workgroupBarrier();
    }
    let r = red256[0];
    workgroupBarrier(); // red256 may be reused right after
    return r;
}

fn tree_sum64(v: f32, lid: u32) -> f32 {
    red64[lid] = v;
    workgroupBarrier();
    for (var w = 32u; w > 0u; w = w >> 1u) {
        if (lid < w) { red64[lid] = red64[lid] + red64[lid + w]; }
        workgroupBarrier();
    }
    let r = red64[0];
    workgroupBarrier();
    return r;
}

fn tree_max64(v: f32, lid: u32) -> f32 {
    red64[lid] = v;
    workgroupBarrier();
    for (var w = 32u; w > 0u; w = w >> 1u) {
        if (lid < w) { red64[lid] = max(red64[lid], red64[lid + w]); }
        workgroupBarrier();
    }
    let r = red64[0];
    workgroupBarrier();
    return r;
}

// ---------------------------------------------------------------- scalar reductions

// dst = partials; src = x window. dst[base + g] = sum of this workgroup's grid-strided elements.
@compute @workgroup_size(256)
fn sum_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = workgroup_index(wid, nwg, params.wg_base);
    if (g >= params.groups) { return; }
    var s = 0.0;
    for (var i = g * 256u + lid; i < params.n; i = i + params.groups * 256u) {
        s = s + src[params.skip + i];
    }
    let total = tree_sum256(s, lid);
    if (lid == 0u) { dst[params.base + g] = total; }
}

// The per-element loss of prediction p against target t.
fn loss_elem(mode: u32, p: f32, t: f32) -> f32 {
    let e = p - t;
    switch mode {
        case 1u: { return e * e; }
        case 2u: { return abs(e); }
        case 3u: { return max(p, 0.0) - p * t + log(1.0 + exp(-abs(p))); }
        default: { return 0.5 * e * e; }
    }
}

// dst = partials; src = pred window, src2 = target window.
@compute @workgroup_size(256)
fn loss_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = workgroup_index(wid, nwg, params.wg_base);
    if (g >= params.groups) { return; }
    var s = 0.0;
    for (var i = g * 256u + lid; i < params.n; i = i + params.groups * 256u) {
        s = s + loss_elem(params.mode, src[params.skip + i], src2[params.skip + i]);
    }
    let total = tree_sum256(s, lid);
    if (lid == 0u) { dst[params.base + g] = total; }
}

// dst = out [1]; src = partials (n of them). One workgroup: dst[0] = scale * sum.
@compute @workgroup_size(256)
fn finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if (workgroup_index(wid, nwg, params.wg_base) != 0u) { return; }
    var s = 0.0;
    for (var i = lid; i < params.n; i = i + 256u) {
        s = s + src[i];
    }
    let total = tree_sum256(s, lid);
    if (lid == 0u) { dst[0] = params.scale * total; }
}

// dst = gradient window, src = pred window, src2 = target window, src3 = gloss [1].
// One thread per element: dst = gloss * scale * d loss_elem / d p (scale = 1/n).
@compute @workgroup_size(256)
fn loss_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = workgroup_index(wid, nwg, params.wg_base) * 256u + lid;
    if (i >= params.n) { return; }
    let p = src[params.skip + i];
    let t = src2[params.skip + i];
    let e = p - t;
    var g: f32;
    switch params.mode {
        case 1u: { g = 2.0 * e; }
        case 2u: { g = sign(e); }
        case 3u: {
            // sigmoid(p) - t, computed without overflow
            let q = exp(-abs(p));
            g = select(q / (1.0 + q), 1.0 / (1.0 + q), p >= 0.0) - t;
        }
        default: { g = e; }
    }
    dst[params.skip + i] = src3[0] * params.scale * g;
}

// ---------------------------------------------------------------- rows of the last dimension

// Max and sum of exp(x - max) of row r of src (window-relative offset `o`, length d).
fn row_stats(o: u32, d: u32, lid: u32) -> vec2<f32> {
    var m = -3.0e38;
    for (var j = lid; j < d; j = j + 64u) { m = max(m, src[o + j]); }
    m = tree_max64(m, lid);
    var s = 0.0;
    for (var j = lid; j < d; j = j + 64u) { s = s + exp(src[o + j] - m); }
    s = tree_sum64(s, lid);
    return vec2<f32>(m, s);
}

// dst = out window, src = x window; one workgroup per row: dst = exp(x - max) / sum.
@compute @workgroup_size(64)
fn softmax_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = workgroup_index(wid, nwg, params.wg_base);
    if (r >= params.n) { return; }
    let o = params.skip + r * params.d;
    let ms = row_stats(o, params.d, lid);
    let inv = 1.0 / ms.y;
    for (var j = lid; j < params.d; j = j + 64u) {
        dst[o + j] = exp(src[o + j] - ms.x) * inv;
    }
}

// dst = row losses (whole), src = logits window, src2 = target window.
// dst[base + r] = sum_j t_j (logsumexp(x) - x_j) = -sum_j t_j log softmax(x)_j.
@compute @workgroup_size(64)
fn xent_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = workgroup_index(wid, nwg, params.wg_base);
    if (r >= params.n) { return; }
    let o = params.skip + r * params.d;
    let ms = row_stats(o, params.d, lid);
    let lse = ms.x + log(ms.y);
    var s = 0.0;
    for (var j = lid; j < params.d; j = j + 64u) { s = s + src2[o + j] * (lse - src[o + j]); }
    s = tree_sum64(s, lid);
    if (lid == 0u) { dst[params.base + r] = s; }
}

// dst = gradient window, src = logits window, src2 = target window, src3 = gloss [1].
// d/dx_j = softmax_j * sum_k t_k - t_j, times gloss * scale (scale = 1/rows).
@compute @workgroup_size(64)
fn xent_grad_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = workgroup_index(wid, nwg, params.wg_base);
    if (r >= params.n) { return; }
    let o = params.skip + r * params.d;
    let ms = row_stats(o, params.d, lid);
    var st = 0.0;
    for (var j = lid; j < params.d; j = j + 64u) { st = st + src2[o + j]; }
    st = tree_sum64(st, lid);
    let inv = 1.0 / ms.y;
    let k = src3[0] * params.scale;
    for (var j = lid; j < params.d; j = j + 64u) {
        dst[o + j] = k * (exp(src[o + j] - ms.x) * inv * st - src2[o + j]);
    }
}

// ---------------------------------------------------------------- per channel (all dims but 1)

// The chunk holds planes [base, base + n) of d floats; plane p has channel p % channels.
// Each channel is split over `groups` workgroups (more parallelism, shorter f32 sums): workgroup
// w takes channel c = w % channels and split s = w / channels, enumerates the elements of the
// chunk's planes of channel c by k and takes k = s*64 + lid, stepping groups*64. It writes its
// partial sum to dst[(slot + s) * channels + c]; `chan_finish` adds the partials of a channel.
fn chan_first(c: u32) -> u32 {
    let C = params.channels;
    return (c + C - params.base % C) % C;
}
fn chan_count(c: u32) -> u32 {
    let f = chan_first(c);
    if (f >= params.n) { return 0u; }
    return ((params.n - 1u - f) / params.channels + 1u) * params.d;
}
fn chan_index(c: u32, k: u32) -> u32 {
    let p = chan_first(c) + (k / params.d) * params.channels;
    return params.skip + p * params.d + k % params.d;
}
fn chan_store(c: u32, s: u32, lid: u32, v: f32) {
    let total = tree_sum64(v, lid);
    if (lid == 0u) { dst[(params.slot + s) * params.channels + c] = total; }
}

// dst = partials; src = x window. Partial sums of x.
@compute @workgroup_size(64)
fn chan_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let w = workgroup_index(wid, nwg, params.wg_base);
    if (w >= params.channels * params.groups) { return; }
    let c = w % params.channels;
    let sp = w / params.channels;
    let cnt = chan_count(c);
    var acc = 0.0;
    for (var k = sp * 64u + lid; k < cnt; k = k + params.groups * 64u) { acc = acc + src[chan_index(c, k)]; }
    chan_store(c, sp, lid, acc);
}

// dst = partials; src = x window, src2 = mean [C]. Partial sums of (x - mean_c)^2.
@compute @workgroup_size(64)
fn chan_sqdev(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let w = workgroup_index(wid, nwg, params.wg_base);
    if (w >= params.channels * params.groups) { return; }
    let c = w % params.channels;
    let sp = w / params.channels;
    let cnt = chan_count(c);
    let m = src2[c];
    var acc = 0.0;
    for (var k = sp * 64u + lid; k < cnt; k = k + params.groups * 64u) { let e = src[chan_index(c, k)] - m; acc = acc + e * e; }
    chan_store(c, sp, lid, acc);
}

// dst = partials; src = x window, src2 = gy window, src3 = mean [C], src4 = invstd [C].
// Partial sums of gy * (x - mean_c) * invstd_c   (BatchNorm's d loss / d gamma).
@compute @workgroup_size(64)
fn chan_dot(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let w = workgroup_index(wid, nwg, params.wg_base);
    if (w >= params.channels * params.groups) { return; }
    let c = w % params.channels;
    let sp = w / params.channels;
    let cnt = chan_count(c);
    let m = src3[c];
    var acc = 0.0;
    for (var k = sp * 64u + lid; k < cnt; k = k + params.groups * 64u) { let i = chan_index(c, k); acc = acc + src2[i] * (src[i] - m); }
    chan_store(c, sp, lid, acc * src4[c]);
}

// dst = out [C]; src = partials [n * C]. One thread per channel: dst[c] = scale * sum_s src[s * C + c].
@compute @workgroup_size(64)
fn chan_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = workgroup_index(wid, nwg, params.wg_base) * 64u + lid;
    if (c >= params.channels) { return; }
    var acc = 0.0;
    for (var s = 0u; s < params.n; s = s + 1u) { acc = acc + src[s * params.channels + c]; }
    dst[c] = params.scale * acc;
}
