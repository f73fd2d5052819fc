//! A tiny MLP and a tiny CNN, trained for a few dozen steps on synthetic data, lower their loss
//! on the CPU and on the GPU (lavapipe natively), and both backends agree at step 1 (same seed,
//! same init). Without a GPU adapter the GPU half fails loudly: it is never skipped.

use nnlab::autodiff::Graph;
use nnlab::backend::{read_blocking, Backend, Conv2dParams, LossKind};
use nnlab::cpu::CpuBackend;
use nnlab::gpu::{GpuBackend, GpuOptions};
use nnlab::nn::{
    Activation, Adam, BatchNorm2d, Conv2d, Flatten, Init, Linear, Module, Optimizer, Sequential,
    Sgd,
};
use nnlab::rng;

fn gpu() -> GpuBackend {
    std::env::set_var("XDG_RUNTIME_DIR", "/tmp");
    match GpuBackend::new_blocking(GpuOptions::default()) {
        Ok(g) => {
            println!("GPU: {}", nnlab::Backend::info(&g).describe());
            g
        }
        Err(e) => panic!("no GPU adapter, so the GPU half of this test cannot run (install mesa-vulkan-drivers + libvulkan1 for lavapipe): {e}"),
    }
}

/// A synthetic full-batch task: inputs, targets (host data with shapes) and the loss.
struct Task {
    x: (Vec<f32>, Vec<usize>),
    t: (Vec<f32>, Vec<usize>),
    kind: LossKind,
}

/// Full-batch training; returns the loss before each step.
fn train(
    b: &dyn Backend,
    model: &dyn Module,
    opt: &mut dyn Optimizer,
    task: &Task,
    steps: usize,
) -> Vec<f32> {
    let xt = b.upload(&task.x.1, &task.x.0).unwrap();
    let tt = b.upload(&task.t.1, &task.t.0).unwrap();
    let kind = task.kind;
    let mut losses = Vec::new();
    for _ in 0..steps {
        let mut g = Graph::new(b);
        let xv = g.constant(xt.clone());
        let tv = g.constant(tt.clone());
        let y = model.forward(&mut g, xv).unwrap();
        let loss = g.loss(kind, y, tv).unwrap();
        losses.push(read_blocking(b, g.value(loss).unwrap()).unwrap()[0]);
        g.backward(loss).unwrap();
        opt.step(&g, &model.params()).unwrap();
    }
    losses
}

/// Three classes from a fixed random linear teacher on 8 features, one-hot targets.
fn mlp_data(n: usize) -> (Vec<f32>, Vec<f32>) {
    let x = rng::normal_vec(n * 8, 0.0, 1.0, 1);
    let teacher = rng::normal_vec(8 * 3, 0.0, 1.0, 2);
    let mut t = vec![0.0; n * 3];
    for i in 0..n {
        let score = |k: usize| {
            (0..8)
                .map(|j| x[i * 8 + j] * teacher[j * 3 + k])
                .sum::<f32>()
        };
        let best = (0..3)
            .max_by(|&a, &c| score(a).total_cmp(&score(c)))
            .unwrap();
        t[i * 3 + best] = 1.0;
    }
    (x, t)
}

fn run_mlp(b: &dyn Backend) -> Vec<f32> {
    let fc2 = Linear::new(b, "2", 16, 3, true, 11).unwrap();
    fc2.reinit(b, Init::XavierUniform { gain: 1.0 }, 11)
        .unwrap();
    let model = Sequential::new()
        .push(Linear::new(b, "0", 8, 16, true, 10).unwrap())
        .push(Activation::Relu)
        .push(fc2);
    let (x, t) = mlp_data(64);
    let mut opt = Adam::new(0.02, 0.9, 0.999);
    let task = Task {
        x: (x, vec![64, 8]),
        t: (t, vec![64, 3]),
        kind: LossKind::SoftmaxCrossEntropy,
    };
    train(b, &model, &mut opt, &task, 40)
}

/// 8x8 single-channel images with a bright 2x2 blob; label 1 when the blob is in the left half.
fn cnn_data(n: usize) -> (Vec<f32>, Vec<f32>) {
    let mut x = rng::normal_vec(n * 64, 0.0, 0.3, 3);
    let pos = rng::uniform_vec(n * 2, 0.0, 7.0, 4);
    let mut t = vec![0.0; n];
    for i in 0..n {
        let (r, c) = (pos[2 * i] as usize, pos[2 * i + 1] as usize);
        for (dr, dc) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            x[i * 64 + (r + dr) * 8 + c + dc] += 2.0;
        }
        t[i] = if c + 1 < 4 { 1.0 } else { 0.0 };
    }
    (x, t)
}

fn run_cnn(b: &dyn Backend) -> Vec<f32> {
    let p1 = Conv2dParams::new(1, 1, 1);
    let p2 = Conv2dParams::new(2, 1, 1);
    let model = Sequential::new()
        .push(Conv2d::new(b, "0", 1, 4, 3, p1, false, 20).unwrap())
        .push(BatchNorm2d::new(b, "1", 4).unwrap())
        .push(Activation::LeakyRelu(0.2))
        .push(Conv2d::new(b, "3", 4, 4, 3, p2, true, 21).unwrap())
        .push(Activation::Relu)
        .push(Flatten)
        .push(Linear::new(b, "6", 4 * 4 * 4, 1, true, 22).unwrap());
    let (x, t) = cnn_data(16);
    let mut opt = Sgd::new(0.05, 0.9, 1e-4);
    let task = Task {
        x: (x, vec![16, 1, 8, 8]),
        t: (t, vec![16, 1]),
        kind: LossKind::BceWithLogits,
    };
    train(b, &model, &mut opt, &task, 30)
}

fn check(name: &str, cpu: &[f32], gpu: &[f32]) {
    println!("{name} CPU losses: {:?}", cpu);
    println!("{name} GPU losses: {:?}", gpu);
    let n = cpu.len();
    for (dev, l) in [("CPU", cpu), ("GPU", gpu)] {
        assert!(
            l.iter().all(|v| v.is_finite()),
            "{name} on {dev}: non-finite loss {l:?}"
        );
        assert!(
            l[n - 1] < 0.5 * l[0],
            "{name} on {dev}: loss did not fall enough: {} -> {}",
            l[0],
            l[n - 1]
        );
    }
    let d1 = (cpu[0] - gpu[0]).abs();
    println!(
        "{name}: step-1 loss CPU {} GPU {} |diff| {d1:.3e}; last-step |diff| {:.3e}",
        cpu[0],
        gpu[0],
        (cpu[n - 1] - gpu[n - 1]).abs()
    );
    assert!(
        d1 <= 1e-4 * (1.0 + cpu[0].abs()),
        "{name}: step-1 losses differ between backends: CPU {} GPU {}",
        cpu[0],
        gpu[0]
    );
}

#[test]
fn tiny_mlp_trains_on_cpu_and_gpu() {
    let cpu = run_mlp(&CpuBackend::new());
    let gpu = run_mlp(&gpu());
    check("MLP", &cpu, &gpu);
}

#[test]
fn tiny_cnn_trains_on_cpu_and_gpu() {
    let cpu = run_cnn(&CpuBackend::new());
    let gpu = run_cnn(&gpu());
    check("CNN", &cpu, &gpu);
}
