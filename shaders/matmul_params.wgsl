// matmul_params.wgsl — the uniforms and bindings shared by matmul.wgsl (register-blocked) and
// matmul_tiled.wgsl (workgroup-memory tiled): one layout for both variants' launches.
// Prepended to each at build time.

struct Params {
    wg_base: u32,
    m: u32,
    n: u32,
    k: u32,
    a_off: u32,
    a_sm: u32,
    a_sk: u32,
    b_off: u32,
    b_sk: u32,
    b_sn: u32,
    c_off: u32,
    ldc: u32,
    accumulate: u32,
    tiles_n: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> c: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
// the vec4 entries view the same bindings as vec4s
@group(0) @binding(1) var<storage, read_write> c4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b4: array<vec4<f32>>;
