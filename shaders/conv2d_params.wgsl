// conv2d_params.wgsl — the uniforms and bindings shared by conv2d.wgsl (register-blocked) and
// conv2d_tiled.wgsl (workgroup-memory tiled): one layout, in the order the host builds it
// (`ConvLaunch::build`, src/gpu/conv.rs), so the two variants take the same launch. Prepended to each at build time.

struct Params {
    wg_base: u32,
    batch: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    ho: u32,
    wo: u32,
    // kernel, stride, padding, dilation: rows (h) and columns (w) each
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    dh: u32,
    dw: u32,
    x_off: u32,
    y_off: u32,
    has_bias: u32,
    tiles_c: u32,
    // conv_bwd_weight: output rows (n, oh) per split and number of splits;
    // sum_partials: splits and whether to add to dst (batch chunks after the first)
    rows_per_split: u32,
    splits: u32,
    accumulate: u32,
    // conv_fwd / conv_bwd_input (and their _tiled twins) epilogue: max(0, .) after the bias
    // (inference's fused conv + ReLU)
    relu: u32,
}

// Storage types, aliases the launcher puts before this file (src/gpu/conv.rs): XT for src_a and
// src_b, YT for dst, WT for the packed weight. All f32, except in conv2d.wgsl's f16 modules for
// the fused inference (`enable f16`: WT = f16, XT and YT f16 or f32); sums are f32 in every one.
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> dst: array<YT>;
@group(0) @binding(2) var<storage, read> src_a: array<XT>;
@group(0) @binding(3) var<storage, read> src_b: array<XT>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
// the forward and backward-input kernels read the weight packed by pack_w_fwd / pack_w_bwd, as vec4s
@group(0) @binding(3) var<storage, read> src_b4: array<vec4<WT>>;
