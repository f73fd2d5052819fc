// elementwise.wgsl — one thread per element.
// Bindings: 0 params; 1 `out` (read_write); 2 `x`, 3 `y` (read), as each entry lists.
// Chunks: the launcher side binds a chunk [start, start+n) of every per-element tensor at a
// 256-byte-aligned offset (chunks are multiples of 64 floats, so the chunk begins at index 0
// of the binding); `start` is the chunk's first global element, for entries whose result
// depends on the global index (bias_add's channel). Small per-channel tensors are bound whole.
// Dispatch: ceil(n / 256) workgroups (linear; see prelude.wgsl).

struct Params {
    wg_base: u32,
    n: u32,        // elements in this chunk
    op: u32,       // entry-specific selector (BinaryOp / UnaryOp index)
    a: f32,        // entry-specific scalars
    b: f32,
    start: u32,    // global index of the chunk's first element
    inner: u32,    // bias_add: elements per (n, c) plane
    channels: u32, // bias_add: size of dim 1
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> y: array<f32>;

fn element(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return workgroup_index(wid, nwg, params.wg_base) * 256u + lid;
}

// out[i] = a
@compute @workgroup_size(256)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element(wid, nwg, lid);
    if (i >= params.n) { return; }
    out[i] = params.a;
}

// out[i] = x[i] (op) y[i]; op 0 add, 1 sub, 2 mul
@compute @workgroup_size(256)
fn binary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element(wid, nwg, lid);
    if (i >= params.n) { return; }
    let u = x[i];
    let v = y[i];
    var r: f32;
    switch params.op {
        case 0u: { r = u + v; }
        case 1u: { r = u - v; }
        default: { r = u * v; }
    }
    out[i] = r;
}

// out[i] = a * x[i] + b
@compute @workgroup_size(256)
fn affine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element(wid, nwg, lid);
    if (i >= params.n) { return; }
    out[i] = params.a * x[i] + params.b;
}

// out[i] = min(max(x[i], a), b)
@compute @workgroup_size(256)
fn clamp_op(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element(wid, nwg, lid);
    if (i >= params.n) { return; }
    out[i] = min(max(x[i], params.a), params.b);
}

// out[i] = x[i] + y[channel of i]; y is the bias, `channels` entries, bound whole
@compute @workgroup_size(256)
fn bias_add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element(wid, nwg, lid);
    if (i >= params.n) { return; }
    let c = ((params.start + i) / params.inner) % params.channels;
    out[i] = x[i] + y[c];
}

// tanh without overflow: exp(-2|v|) is in (0, 1].
fn tanh_stable(v: f32) -> f32 {
    let t = exp(-2.0 * abs(v));
    return sign(v) * (1.0 - t) / (1.0 + t);
}

// logistic sigmoid without overflow on either side
fn sigmoid(v: f32) -> f32 {
    if (v >= 0.0) {
        return 1.0 / (1.0 + exp(-v));
    }
    let e = exp(v);
    return e / (1.0 + e);
}

// UnaryOp codes: 0 relu, 1 leaky relu (slope a), 2 tanh, 3 sigmoid, 4 sign, 5 square, 6 abs,
// 7 reciprocal
fn unary_f(op: u32, v: f32, slope: f32) -> f32 {
    switch op {
        case 0u: { return max(v, 0.0); }
        case 1u: { return select(slope * v, v, v > 0.0); }
        case 2u: { return tanh_stable(v); }
        case 3u: { return sigmoid(v); }
        case 4u: { return sign(v); }
        case 5u: { return v * v; }
        case 6u: { return abs(v); }
        default: { return 1.0 / v; }
    }
}

// f'(v); the kinks (relu, leaky relu, abs at 0) take the derivative from the left side's
// convention of PyTorch: 0 for relu at 0, slope for leaky relu at 0, 0 for abs at 0.
fn unary_df(op: u32, v: f32, slope: f32) -> f32 {
    switch op {
        case 0u: { return select(0.0, 1.0, v > 0.0); }
        case 1u: { return select(slope, 1.0, v > 0.0); }
        case 2u: { let t = tanh_stable(v); return 1.0 - t * t; }
        case 3u: { let s = sigmoid(v); return s * (1.0 - s); }
        case 4u: { return 0.0; }
        case 5u: { return 2.0 * v; }
        case 6u: { return sign(v); }
        default: { return -1.0 / (v * v); }
    }
}

// out[i] = f(x[i])
@compute @workgroup_size(256)
fn unary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element(wid, nwg, lid);
    if (i >= params.n) { return; }
    out[i] = unary_f(params.op, x[i], params.a);
}

// out[i] = y[i] * f'(x[i])   (y is the upstream gradient)
@compute @workgroup_size(256)
fn unary_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element(wid, nwg, lid);
    if (i >= params.n) { return; }
    out[i] = y[i] * unary_df(params.op, x[i], params.a);
}
