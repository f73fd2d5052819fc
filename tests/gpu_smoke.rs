use nnlab::backend::{read_blocking, Backend, BinaryOp};
use nnlab::gpu::{GpuBackend, GpuOptions};

#[test]
fn gpu_fill_binary_roundtrip() {
    let gpu = GpuBackend::new_blocking(GpuOptions {
        max_storage_binding_bytes: Some(1 << 12),
        max_workgroups_per_dim: Some(2),
    })
    .expect("GPU adapter");
    println!("{}", gpu.info().describe());
    let n = 5000;
    let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let ta = gpu.upload(&[n], &a).unwrap();
    let tb = gpu.fill(&[n], 2.0).unwrap();
    let c = gpu.binary(BinaryOp::Mul, &ta, &tb).unwrap();
    let out = read_blocking(&gpu, &c).unwrap();
    for i in 0..n {
        assert_eq!(out[i], 2.0 * i as f32);
    }
}
