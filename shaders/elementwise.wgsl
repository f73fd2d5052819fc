// elementwise.wgsl — one thread per element.
// Bindings: 0 params, 1.. storage buffers as listed per entry point.
// Dispatch: ceil(n / 256) workgroups (linear; see prelude.wgsl).

struct Params {
    wg_base: u32,
    n: u32,     // number of elements
    op: u32,    // entry-specific selector (BinaryOp index)
    a: f32,     // entry-specific scalars
    b: f32,
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
