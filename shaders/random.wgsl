// random.wgsl — counter-based random numbers (the functions of prelude.wgsl = src/rng.rs):
// element i of the tensor uses counter i (uniform) or counters 2i, 2i+1 (normal, Box-Muller,
// cosine branch), so the CPU and the GPU give the same numbers, chunk by chunk.
// Bindings: 0 params; 1 `out` (read_write), a window of the chunk [start, start + n) from index 0.
// Dispatch: ceil(n / 256) workgroups per chunk.

struct Params {
    wg_base: u32,
    n: u32,        // elements in this chunk
    start: u32,    // counter of the chunk's first element
    seed_lo: u32,
    seed_hi: u32,
    a: f32,        // uniform: lo;  normal: mean
    b: f32,        // uniform: hi;  normal: std
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

fn element(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return workgroup_index(wid, nwg, params.wg_base) * 256u + lid;
}

// out = lo + (hi - lo) * u, u in [0, 1)
@compute @workgroup_size(256)
fn random_uniform(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element(wid, nwg, lid);
    if (i >= params.n) { return; }
    let u = uniform01(params.seed_lo, params.seed_hi, params.start + i);
    out[i] = params.a + (params.b - params.a) * u;
}

// out = mean + std * sqrt(-2 ln u1) cos(2 pi u2), u1 = 1 - uniform01(2k) in (0, 1], u2 = uniform01(2k + 1)
@compute @workgroup_size(256)
fn random_normal(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element(wid, nwg, lid);
    if (i >= params.n) { return; }
    let k = (params.start + i) * 2u;
    let u1 = 1.0 - uniform01(params.seed_lo, params.seed_hi, k);
    let u2 = uniform01(params.seed_lo, params.seed_hi, k + 1u);
    let z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
    out[i] = params.a + params.b * z;
}
