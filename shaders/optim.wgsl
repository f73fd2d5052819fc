// optim.wgsl — optimizer updates in place, one thread per parameter (PyTorch semantics).
// Bindings: 0 params; 1 `p` parameters (read_write); 2 `g` gradient (read);
// 3 `s1` velocity (SGD) or first moment m (Adam) (read_write); 4 `s2` second moment v (Adam).
// All are windows of one chunk [start, start + n), bound from index 0.
// Dispatch: ceil(n / 256) workgroups per chunk.

struct Params {
    wg_base: u32,
    n: u32,          // elements in this chunk
    lr: f32,
    beta1: f32,      // SGD: momentum
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    bc1: f32,        // Adam: 1 - beta1^step
    bc2: f32,        // Adam: 1 - beta2^step
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> p: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> s1: array<f32>;
@group(0) @binding(4) var<storage, read_write> s2: array<f32>;

fn element(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return workgroup_index(wid, nwg, params.wg_base) * 256u + lid;
}

// torch.optim.SGD (dampening 0, not Nesterov): g' = g + wd p; v = momentum v + g'; p -= lr v.
// With momentum 0 this is plain SGD (v = g'); v starts at zero, so step 1 gives v = g' as torch.
@compute @workgroup_size(256)
fn sgd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element(wid, nwg, lid);
    if (i >= params.n) { return; }
    let gi = g[i] + params.weight_decay * p[i];
    let v = params.beta1 * s1[i] + gi;
    s1[i] = v;
    p[i] = p[i] - params.lr * v;
}

// torch.optim.Adam (L2 weight decay added to the gradient, bias-corrected moments):
// m = b1 m + (1-b1) g'; v = b2 v + (1-b2) g'^2; p -= lr * (m / bc1) / (sqrt(v / bc2) + eps).
@compute @workgroup_size(256)
fn adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element(wid, nwg, lid);
    if (i >= params.n) { return; }
    let gi = g[i] + params.weight_decay * p[i];
    let m = params.beta1 * s1[i] + (1.0 - params.beta1) * gi;
    let v = params.beta2 * s2[i] + (1.0 - params.beta2) * gi * gi;
    s1[i] = m;
    s2[i] = v;
    p[i] = p[i] - params.lr * (m / params.bc1) / (sqrt(v / params.bc2) + params.eps);
}
