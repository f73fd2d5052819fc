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

// ln(v) for v in (0, 1], from + - * / only, so that every device rounds it alike (WGSL lets a
// device's log and cos be far less accurate than the host's libm, e.g. cos to 2^-11):
// v = m 2^e with m in [sqrt(1/2), sqrt(2)); ln m = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172,
// by its series to s^11 (truncation < 1e-11).
fn ln_portable(v: f32) -> f32 {
    let fr = frexp(v); // v = fract * 2^exp, fract in [0.5, 1)
    var m = fr.fract;
    var e = f32(fr.exp);
    if (m < 0.70710678) {
        m = 2.0 * m;
        e = e - 1.0;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let p = 1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0 + s2 * (1.0 / 11.0)))));
    return e * 0.6931471805599453 + 2.0 * s * p;
}

// cos(2 pi v) for v in [0, 1), from + - * / only: v = q/4 + r with |r| <= 1/8 (exact in f32),
// then the Taylor polynomials of cos or sin at t = 2 pi r in [-pi/4, pi/4] (truncation < 2e-9).
fn cos_2pi_portable(v: f32) -> f32 {
    let q = round(4.0 * v);
    let t = 6.283185307179586 * (v - 0.25 * q);
    let t2 = t * t;
    let c = 1.0 - t2 * (0.5 - t2 * (1.0 / 24.0 - t2 * (1.0 / 720.0 - t2 * (1.0 / 40320.0 - t2 * (1.0 / 3628800.0)))));
    let s = t * (1.0 - t2 * (1.0 / 6.0 - t2 * (1.0 / 120.0 - t2 * (1.0 / 5040.0 - t2 * (1.0 / 362880.0)))));
    switch (u32(q) % 4u) {
        case 0u: { return c; }
        case 1u: { return -s; }
        case 2u: { return -c; }
        default: { return s; }
    }
}

// out = mean + std * sqrt(-2 ln u1) cos(2 pi u2), u1 = 1 - uniform01(2k) in (0, 1], u2 = uniform01(2k + 1)
@compute @workgroup_size(256)
fn random_normal(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element(wid, nwg, lid);
    if (i >= params.n) { return; }
    let k = (params.start + i) * 2u;
    let u1 = 1.0 - uniform01(params.seed_lo, params.seed_hi, k);
    let u2 = uniform01(params.seed_lo, params.seed_hi, k + 1u);
    let z = sqrt(-2.0 * ln_portable(u1)) * cos_2pi_portable(u2);
    out[i] = params.a + params.b * z;
}
