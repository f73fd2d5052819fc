// batchnorm.wgsl — BatchNorm2d over (N, H, W) per channel. The per-channel statistics come
// from reduce.wgsl's channel kernels; here: small per-channel "coef" kernels (one thread per
// channel) that turn statistics into four coefficients per channel, and one elementwise
// kernel that applies them:
//     out = A_c * y + B_c * (x - M_c) + D_c
// forward (train and eval): A = 0, B = gamma * invstd, M = mean, D = beta (y bound to x);
// backward (y = gy): A = gamma * invstd, B = -gamma * invstd^2 * ggamma / count, M = mean,
//     D = -gamma * invstd * gbeta / count, i.e. the usual
//     gx = gamma * invstd / count * (count * gy - gbeta - xhat * ggamma).
// coef layout: 4C floats, [A_0..A_C | B_0..B_C | M_0..M_C | D_0..D_C].
//
// Bindings: 0 params; 1 `rw1` (read_write); 2..5 `r2`..`r5` (read); 6..8 `rw6`..`rw8`
// (read_write). Each entry lists what it binds where.
// Dispatch: coef kernels ceil(C / 64) workgroups; bn_apply ceil(n / 256) per chunk, the
// chunk [start, start + n) bound from index 0 (chunks are multiples of 64 floats).

struct Params {
    wg_base: u32,
    n: u32,        // coef kernels: C; bn_apply: elements in this chunk
    start: u32,    // bn_apply: global index of the chunk's first element
    inner: u32,    // bn_apply: H * W
    channels: u32, // bn_apply: C
    count: f32,    // N * H * W
    momentum: f32, // train: running = (1 - momentum) * running + momentum * batch
    eps: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> rw1: array<f32>;
@group(0) @binding(2) var<storage, read> r2: array<f32>;
@group(0) @binding(3) var<storage, read> r3: array<f32>;
@group(0) @binding(4) var<storage, read> r4: array<f32>;
@group(0) @binding(5) var<storage, read> r5: array<f32>;
@group(0) @binding(6) var<storage, read_write> rw6: array<f32>;
@group(0) @binding(7) var<storage, read_write> rw7: array<f32>;
@group(0) @binding(8) var<storage, read_write> rw8: array<f32>;

fn channel_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return workgroup_index(wid, nwg, params.wg_base) * 64u + lid;
}

fn store_coef(c: u32, a: f32, b: f32, m: f32, d: f32) {
    let C = params.n;
    rw1[c] = a;
    rw1[C + c] = b;
    rw1[2u * C + c] = m;
    rw1[3u * C + c] = d;
}

// rw1 = coef, r2 = gamma, r3 = beta, r4 = batch mean, r5 = biased batch variance,
// rw6 = invstd (out), rw7 = running mean, rw8 = running var (updated in place, unbiased var).
@compute @workgroup_size(64)
fn train_coef(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = channel_id(wid, nwg, lid);
    if (c >= params.n) { return; }
    let mean = r4[c];
    let var_b = r5[c];
    let invstd = 1.0 / sqrt(var_b + params.eps);
    rw6[c] = invstd;
    let mo = params.momentum;
    let unbiased = var_b * params.count / (params.count - 1.0); // count >= 2 (checked on the host)
    rw7[c] = (1.0 - mo) * rw7[c] + mo * mean;
    rw8[c] = (1.0 - mo) * rw8[c] + mo * unbiased;
    store_coef(c, 0.0, r2[c] * invstd, mean, r3[c]);
}

// rw1 = coef, r2 = gamma, r3 = beta, r4 = running mean, r5 = running var.
@compute @workgroup_size(64)
fn eval_coef(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = channel_id(wid, nwg, lid);
    if (c >= params.n) { return; }
    let invstd = 1.0 / sqrt(r5[c] + params.eps);
    store_coef(c, 0.0, r2[c] * invstd, r4[c], r3[c]);
}

// rw1 = coef, r2 = gamma, r3 = mean, r4 = invstd, r5 = gbeta (sum gy), rw6 = ggamma (sum gy * xhat; only read).
@compute @workgroup_size(64)
fn backward_coef(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = channel_id(wid, nwg, lid);
    if (c >= params.n) { return; }
    let k = r2[c] * r4[c];
    store_coef(c, k, -k * r4[c] * rw6[c] / params.count, r3[c], -k * r5[c] / params.count);
}

// rw1 = out (chunk), r2 = x (chunk), r3 = y (chunk: gy, or x again in the forward), r4 = coef.
@compute @workgroup_size(256)
fn bn_apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = workgroup_index(wid, nwg, params.wg_base) * 256u + lid;
    if (i >= params.n) { return; }
    let C = params.channels;
    let c = ((params.start + i) / params.inner) % C;
    rw1[i] = r4[c] * r3[i] + r4[C + c] * (r2[i] - r4[2u * C + c]) + r4[3u * C + c];
}
