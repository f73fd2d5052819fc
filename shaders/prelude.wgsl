// prelude.wgsl — prepended to every shader by the launcher (src/gpu/context.rs).
//
// Every shader declares `struct Params { wg_base: u32, ... }` at @group(0) @binding(0) and
// computes its workgroup number with `workgroup_index`: the launcher spreads a linear count
// of workgroups over x and y, and over several dispatches (wg_base) when even x*y is too few.

fn workgroup_index(wid: vec3<u32>, nwg: vec3<u32>, wg_base: u32) -> u32 {
    return wg_base + wid.x + wid.y * nwg.x;
}

// Counter-based random bits; the same functions as src/rng.rs.
fn pcg_hash(x: u32) -> u32 {
    let state = x * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

fn random_u32(seed_lo: u32, seed_hi: u32, i: u32) -> u32 {
    return pcg_hash(pcg_hash(i ^ pcg_hash(seed_lo)) + seed_hi);
}

fn uniform01(seed_lo: u32, seed_hi: u32, i: u32) -> f32 {
    return f32(random_u32(seed_lo, seed_hi, i) >> 8u) * (1.0 / 16777216.0);
}
