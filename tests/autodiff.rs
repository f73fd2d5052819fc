//! The autodiff tape against central finite differences of the CPU forward (differences taken
//! in f64), gradient accumulation, layer input checks, and safetensors save/load.

use nnlab::autodiff::{Graph, Param, Var};
use nnlab::backend::{read_blocking, Backend, Conv2dParams, ConvTranspose2dParams, Hw, LossKind};
use nnlab::cpu::CpuBackend;
use nnlab::nn::{
    Activation, BatchNorm2d, Conv2d, ConvTranspose2d, Flatten, Linear, Module, Sequential,
};
use nnlab::rng;
use nnlab::weights::{self, NamedTensor};
use nnlab::{Error, Tensor};

fn read(b: &dyn Backend, t: &Tensor) -> Vec<f32> {
    read_blocking(b, t).unwrap()
}

/// Overwrite element `i` of `t` in place.
fn set(b: &dyn Backend, t: &Tensor, i: usize, v: f32) {
    let mut d = read(b, t);
    d[i] = v;
    b.assign(t, &b.upload(t.shape(), &d).unwrap()).unwrap();
}

/// Compare the tape's gradient of every element of `leaves` with central differences of
/// `loss_of()` (the same forward, re-run). Returns the max abs error and the largest |grad|.
fn fd_check(
    b: &dyn Backend,
    leaves: &[(&str, Tensor, Vec<f32>)],
    h: f32,
    loss_of: &dyn Fn() -> f64,
) -> (f64, f64) {
    let mut max_err: f64 = 0.0;
    let mut max_g: f64 = 0.0;
    for (name, t, analytic) in leaves {
        let orig = read(b, t);
        assert_eq!(
            orig.len(),
            analytic.len(),
            "{name}: gradient has the wrong number of elements"
        );
        for i in 0..orig.len() {
            set(b, t, i, orig[i] + h);
            let lp = loss_of();
            set(b, t, i, orig[i] - h);
            let lm = loss_of();
            set(b, t, i, orig[i]);
            let fd = (lp - lm) / (2.0 * h as f64);
            let err = (fd - analytic[i] as f64).abs();
            if err > max_err {
                max_err = err;
            }
            max_g = max_g.max(fd.abs());
            assert!(
                err <= 5e-4 * (1.0 + fd.abs()),
                "{name}[{i}]: tape gradient {} vs finite difference {fd} (err {err})",
                analytic[i]
            );
        }
    }
    (max_err, max_g)
}

fn data(shape: &[usize], seed: u64) -> Vec<f32> {
    rng::normal_vec(shape.iter().product(), 0.0, 1.0, seed)
}

struct Net {
    conv: Conv2d,
    bn: BatchNorm2d,
    act: Activation,
    up: ConvTranspose2d,
    flat: Flatten,
    fc: Linear,
}

impl Net {
    /// Square kernels and settings, or (`per_axis`) rectangular kernels with a stride, padding,
    /// output_padding and dilation of their own per axis.
    fn new(b: &dyn Backend, per_axis: bool) -> Net {
        // square: 3x3 -> 3x3 -> 6x6; per axis: 3x5 -> (3, 2) kernel, padding (1, 0),
        // dilation (1, 2) -> 3x3 -> (2, 3) kernel, stride (2, 1), padding (0, 1),
        // output_padding (1, 0) -> 7x3
        let (kc, pc, kt, pt, fc_in) = if per_axis {
            (
                Hw::new(3, 2),
                Conv2dParams::new(1, 0, 1)
                    .with_padding((1, 0))
                    .with_dilation((1, 2)),
                Hw::new(2, 3),
                ConvTranspose2dParams::new(1, 0, 0, 1)
                    .with_stride((2, 1))
                    .with_padding((0, 1))
                    .with_output_padding((1, 0)),
                2 * 7 * 3,
            )
        } else {
            (
                Hw::square(3),
                Conv2dParams::new(1, 1, 1),
                Hw::square(3),
                ConvTranspose2dParams::new(2, 1, 1, 1),
                2 * 6 * 6,
            )
        };
        let conv = Conv2d::new(b, "conv", 2, 3, kc, pc, true, 11).unwrap();
        let bn = BatchNorm2d::new(b, "bn", 3).unwrap();
        // make gamma/beta non-trivial so their gradients are exercised in general position
        b.assign(
            bn.weight.value(),
            &b.upload(&[3], &[1.2, 0.7, -0.9]).unwrap(),
        )
        .unwrap();
        b.assign(bn.bias.value(), &b.upload(&[3], &[0.1, -0.2, 0.3]).unwrap())
            .unwrap();
        let up = ConvTranspose2d::new(b, "up", 3, 2, kt, pt, true, 12).unwrap();
        b.assign(
            up.bias.as_ref().unwrap().value(),
            &b.upload(&[2], &[0.05, -0.05]).unwrap(),
        )
        .unwrap();
        let fc = Linear::new(b, "fc", fc_in, 4, true, 13).unwrap();
        Net {
            conv,
            bn,
            act: Activation::LeakyRelu(0.2),
            up,
            flat: Flatten,
            fc,
        }
    }
    fn forward(&self, g: &mut Graph<'_>, x: Var) -> nnlab::Result<Var> {
        let x = self.conv.forward(g, x)?;
        let x = self.bn.forward(g, x)?;
        let x = self.act.forward(g, x)?;
        let x = self.up.forward(g, x)?;
        let x = self.flat.forward(g, x)?;
        self.fc.forward(g, x)
    }
    fn params(&self) -> Vec<&Param> {
        let mut p = self.conv.params();
        p.extend(self.bn.params());
        p.extend(self.up.params());
        p.extend(self.fc.params());
        p
    }
}

#[test]
fn composed_graph_gradients_match_finite_differences() {
    composed_graph(false, [2, 2, 3, 3], 1);
}

#[test]
fn composed_graph_with_per_axis_convs_matches_finite_differences() {
    composed_graph(true, [2, 2, 3, 5], 3);
}

/// The input is seeded so that no finite-difference step (1e-2) crosses a LeakyReLU kink.
fn composed_graph(per_axis: bool, xshape: [usize; 4], seed: u64) {
    let b = CpuBackend::new();
    let net = Net::new(&b, per_axis);
    let x = b.upload(&xshape, &data(&xshape, seed)).unwrap();
    let target = b.upload(&[2, 4], &data(&[2, 4], 2)).unwrap();

    type Grads = (Vec<Option<Vec<f32>>>, Option<Vec<f32>>);
    let run = |with_grad: bool| -> (f64, Grads) {
        let mut g = Graph::new(&b);
        let xv = g.input(x.clone());
        let y = net.forward(&mut g, xv).unwrap();
        let t = g.constant(target.clone());
        let loss = g.loss(LossKind::Mse, y, t).unwrap();
        let l = read(&b, g.value(loss).unwrap())[0] as f64;
        if !with_grad {
            return (l, (vec![], None));
        }
        g.backward(loss).unwrap();
        let pg = net
            .params()
            .iter()
            .map(|p| g.param_grad(p).map(|t| read(&b, &t)))
            .collect();
        (l, (pg, g.grad(xv).map(|t| read(&b, &t))))
    };
    let (_, (pgrads, xgrad)) = run(true);
    let mut leaves: Vec<(&str, Tensor, Vec<f32>)> = Vec::new();
    for (p, gr) in net.params().iter().zip(pgrads) {
        leaves.push((
            p.name(),
            p.value().clone(),
            gr.unwrap_or_else(|| panic!("no gradient for {}", p.name())),
        ));
    }
    leaves.push((
        "input",
        x.clone(),
        xgrad.expect("no gradient for the input"),
    ));
    let (err, gmax) = fd_check(&b, &leaves, 1e-2, &|| run(false).0);
    println!(
        "composed graph (per axis: {per_axis}): max abs error vs finite differences {err:.3e} (largest |grad| {gmax:.3e})"
    );
}

/// Run a one-op (or few-op) graph over fresh leaves and check every leaf's gradient.
fn check_op(
    name: &str,
    shapes: &[&[usize]],
    build: &dyn Fn(&mut Graph<'_>, &[Var]) -> nnlab::Result<Var>,
) {
    let b = CpuBackend::new();
    let ts: Vec<Tensor> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| b.upload(s, &data(s, 100 + i as u64)).unwrap())
        .collect();
    let run = |with_grad: bool| -> (f64, Vec<Vec<f32>>) {
        let mut g = Graph::new(&b);
        let vs: Vec<Var> = ts.iter().map(|t| g.input(t.clone())).collect();
        let y = build(&mut g, &vs).unwrap();
        // reduce with a fixed random weighting so every output element matters differently
        let ys = g.shape(y).unwrap();
        let wv = g.constant(b.upload(&ys, &data(&ys, 999)).unwrap());
        let yw = g.mul(y, wv).unwrap();
        let loss = g.sum(yw).unwrap();
        let l = read(&b, g.value(loss).unwrap())[0] as f64;
        if !with_grad {
            return (l, vec![]);
        }
        g.backward(loss).unwrap();
        (
            l,
            vs.iter()
                .map(|&v| {
                    g.grad(v)
                        .map(|t| read(&b, &t))
                        .unwrap_or_else(|| vec![0.0; g.value(v).unwrap().numel()])
                })
                .collect(),
        )
    };
    let (_, grads) = run(true);
    let leaves: Vec<(&str, Tensor, Vec<f32>)> = ts
        .iter()
        .zip(grads)
        .map(|(t, g)| (name, t.clone(), g))
        .collect();
    let (err, gmax) = fd_check(&b, &leaves, 1e-2, &|| run(false).0);
    println!("{name}: max abs error {err:.3e} (largest |grad| {gmax:.3e})");
}

#[test]
fn matmul_with_every_transpose_matches_finite_differences() {
    for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
        let a: &[usize] = if ta { &[4, 3] } else { &[3, 4] };
        let bs: &[usize] = if tb { &[5, 4] } else { &[4, 5] };
        check_op(&format!("matmul ta={ta} tb={tb}"), &[a, bs], &|g, v| {
            g.matmul(v[0], v[1], ta, tb)
        });
    }
}

#[test]
fn elementwise_and_reduction_grads_match_finite_differences() {
    let s: &[usize] = &[2, 3, 2, 2];
    check_op("add", &[s, s], &|g, v| g.add(v[0], v[1]));
    check_op("sub", &[s, s], &|g, v| g.sub(v[0], v[1]));
    check_op("mul", &[s, s], &|g, v| g.mul(v[0], v[1]));
    check_op("affine", &[s], &|g, v| g.affine(v[0], -1.5, 0.25));
    check_op("bias_add 4d", &[s, &[3]], &|g, v| g.bias_add(v[0], v[1]));
    check_op("bias_add 2d", &[&[4, 3], &[3]], &|g, v| {
        g.bias_add(v[0], v[1])
    });
    check_op("relu", &[s], &|g, v| g.relu(v[0]));
    check_op("leaky_relu", &[s], &|g, v| g.leaky_relu(v[0], 0.1));
    check_op("tanh", &[s], &|g, v| g.tanh(v[0]));
    check_op("sigmoid", &[s], &|g, v| g.sigmoid(v[0]));
    check_op("square", &[s], &|g, v| g.square(v[0]));
    check_op("abs", &[s], &|g, v| g.abs(v[0]));
    check_op("clamp", &[s], &|g, v| g.clamp(v[0], -0.5, 0.7));
    check_op("reshape", &[s], &|g, v| g.reshape(v[0], &[4, 6]));
    check_op("sum", &[s], &|g, v| g.sum(v[0]));
    check_op("mean", &[s], &|g, v| g.mean(v[0]));
    check_op("softmax", &[&[3, 5]], &|g, v| g.softmax(v[0]));
    check_op("linear", &[&[3, 4], &[2, 4], &[2]], &|g, v| {
        g.linear(v[0], v[1], Some(v[2]))
    });
}

#[test]
fn loss_grads_match_finite_differences() {
    let s: &[usize] = &[3, 4];
    // difference losses: gradients to pred and target
    for kind in [LossKind::Mse, LossKind::L1, LossKind::LeastSquares] {
        check_op(&format!("{kind:?}"), &[s, s], &|g, v| {
            g.loss(kind, v[0], v[1])
        });
    }
    // target must be a constant in [0, 1] / a distribution for these
    let b = CpuBackend::new();
    let t01 = b.upload(s, &rng::uniform_vec(12, 0.0, 1.0, 5)).unwrap();
    let onehot = b
        .upload(s, &[1., 0., 0., 0., 0., 0., 1., 0., 0.25, 0.25, 0.25, 0.25])
        .unwrap();
    check_op("BceWithLogits", &[s], &|g, v| {
        let t = g.constant(t01.clone());
        g.loss(LossKind::BceWithLogits, v[0], t)
    });
    check_op("SoftmaxCrossEntropy", &[s], &|g, v| {
        let t = g.constant(onehot.clone());
        g.loss(LossKind::SoftmaxCrossEntropy, v[0], t)
    });
    // and a target that wants a gradient is refused for them, clearly
    let mut g = Graph::new(&b);
    let p = g.input(t01.clone());
    let t = g.input(t01.clone());
    match g.loss(LossKind::BceWithLogits, p, t) {
        Err(Error::Invalid(m)) => assert!(m.contains("target"), "{m}"),
        other => panic!("expected Error::Invalid, got {other:?}"),
    }
}

#[test]
fn conv_and_batchnorm_grads_match_finite_differences() {
    let p = Conv2dParams::new(2, 1, 1);
    check_op(
        "conv2d s2 p1",
        &[&[2, 2, 5, 5], &[3, 2, 3, 3], &[3]],
        &|g, v| g.conv2d(v[0], v[1], Some(v[2]), p),
    );
    let pd = Conv2dParams::new(1, 2, 2);
    check_op(
        "conv2d d2 p2 no bias",
        &[&[1, 2, 4, 4], &[2, 2, 3, 3]],
        &|g, v| g.conv2d(v[0], v[1], None, pd),
    );
    let pt = ConvTranspose2dParams::new(2, 1, 1, 1);
    check_op(
        "conv_transpose2d s2 p1 op1",
        &[&[2, 3, 3, 3], &[3, 2, 3, 3], &[2]],
        &|g, v| g.conv_transpose2d(v[0], v[1], Some(v[2]), pt),
    );

    let b = CpuBackend::new();
    let rm = b.upload(&[3], &[0.1, -0.3, 0.2]).unwrap();
    let rv = b.upload(&[3], &[0.8, 1.5, 0.6]).unwrap();
    check_op(
        "batchnorm2d train",
        &[&[2, 3, 2, 3], &[3], &[3]],
        &|g, v| {
            // fresh running stats per call: training mode updates them in place
            let (m, r) = (b.zeros(&[3]).unwrap(), b.fill(&[3], 1.0).unwrap());
            g.batchnorm2d(v[0], v[1], v[2], &m, &r, 0.1, 1e-5)
        },
    );
    check_op("batchnorm2d eval", &[&[2, 3, 2, 3], &[3], &[3]], &|g, v| {
        g.set_training(false);
        g.batchnorm2d(v[0], v[1], v[2], &rm, &rv, 0.1, 1e-5)
    });
}

#[test]
fn var_used_twice_accumulates_gradients() {
    let b = CpuBackend::new();
    let xs = [0.5f32, -1.0, 2.0];
    let mut g = Graph::new(&b);
    let x = g.input(b.upload(&[3], &xs).unwrap());
    let xx = g.mul(x, x).unwrap();
    let y = g.add(xx, x).unwrap();
    let l = g.sum(y).unwrap();
    g.backward(l).unwrap();
    let gx = read(&b, &g.grad(x).unwrap());
    for i in 0..3 {
        assert!(
            (gx[i] - (2.0 * xs[i] + 1.0)).abs() < 1e-6,
            "d/dx (x^2 + x) at {}: {}",
            xs[i],
            gx[i]
        );
    }

    // the same parameter fetched twice is one leaf; a layer applied twice sums its gradients
    let lin = Linear::new(&b, "fc", 2, 1, false, 3).unwrap();
    b.assign(
        lin.weight.value(),
        &b.upload(&[1, 2], &[2.0, -1.0]).unwrap(),
    )
    .unwrap();
    let mut g = Graph::new(&b);
    assert_eq!(g.param(&lin.weight), g.param(&lin.weight));
    let a = g.constant(b.upload(&[1, 2], &[1.0, 2.0]).unwrap());
    let c = g.constant(b.upload(&[1, 2], &[3.0, 5.0]).unwrap());
    let ya = lin.forward(&mut g, a).unwrap();
    let yc = lin.forward(&mut g, c).unwrap();
    let s = g.add(ya, yc).unwrap();
    let l = g.sum(s).unwrap();
    g.backward(l).unwrap();
    assert_eq!(
        read(&b, &g.param_grad(&lin.weight).unwrap()),
        vec![4.0, 7.0]
    );
    // constants get no gradient; sign passes none
    assert!(g.grad(a).is_none());

    // a frozen parameter gets no gradient, and the gradient through it is unchanged
    let mut g = Graph::new(&b);
    g.freeze(&[&lin.weight]);
    let x = g.input(b.upload(&[1, 2], &[1.0, 2.0]).unwrap());
    let y = lin.forward(&mut g, x).unwrap();
    let l = g.sum(y).unwrap();
    g.backward(l).unwrap();
    assert!(g.param_grad(&lin.weight).is_none());
    assert_eq!(read(&b, &g.grad(x).unwrap()), vec![2.0, -1.0]);
}

#[test]
fn sign_has_zero_gradient_and_detach_stops_flow() {
    let b = CpuBackend::new();
    let mut g = Graph::new(&b);
    let x = g.input(b.upload(&[3], &[0.5, -1.0, 0.0]).unwrap());
    let s = g.sign(x).unwrap();
    assert_eq!(read(&b, g.value(s).unwrap()), vec![1.0, -1.0, 0.0]);
    let d = g.detach(x).unwrap();
    let sd = g.add(s, d).unwrap();
    let y = g.add(sd, x).unwrap();
    let l = g.sum(y).unwrap();
    g.backward(l).unwrap();
    assert_eq!(read(&b, &g.grad(x).unwrap()), vec![1.0, 1.0, 1.0]);
}

#[test]
fn bad_inputs_give_errors_not_panics() {
    let b = CpuBackend::new();
    let conv = Conv2d::new(&b, "conv1", 3, 4, 3, Conv2dParams::default(), true, 1).unwrap();
    let fc = Linear::new(&b, "fc", 8, 2, true, 1).unwrap();
    let bn = BatchNorm2d::new(&b, "bn1", 4).unwrap();
    let up =
        ConvTranspose2d::new(&b, "up", 4, 2, 3, ConvTranspose2dParams::default(), true, 1).unwrap();
    let mut g = Graph::new(&b);
    let x4 = g.constant(b.zeros(&[2, 2, 5, 5]).unwrap());
    let x2 = g.constant(b.zeros(&[2, 7]).unwrap());
    let small = g.constant(b.zeros(&[1, 3, 2, 2]).unwrap());
    let cases: Vec<(&str, nnlab::Result<Var>)> = vec![
        ("conv wrong channels", conv.forward(&mut g, x4)),
        ("conv rank 2", conv.forward(&mut g, x2)),
        (
            "conv input smaller than kernel",
            conv.forward(&mut g, small),
        ),
        ("linear wrong features", fc.forward(&mut g, x2)),
        ("linear rank 4", fc.forward(&mut g, x4)),
        ("bn wrong channels", bn.forward(&mut g, x4)),
        ("conv_transpose wrong channels", up.forward(&mut g, x4)),
        ("add mismatched", g.add(x4, x2)),
        ("reshape wrong count", g.reshape(x2, &[3, 5])),
        ("clamp lo > hi", g.clamp(x2, 1.0, -1.0)),
    ];
    for (what, r) in cases {
        match r {
            Err(e @ (Error::Shape(_) | Error::Invalid(_))) => println!("{what}: {e}"),
            other => panic!("{what}: expected a shape/invalid error, got {other:?}"),
        }
    }
    assert!(Conv2d::new(&b, "c", 0, 4, 3, Conv2dParams::default(), true, 1).is_err());
    // backward of a non-scalar, and a Var from another graph
    assert!(matches!(g.backward(x2), Err(Error::Shape(_))));
    let mut other = Graph::new(&b);
    let foreign = other.constant(b.zeros(&[1]).unwrap());
    assert!(matches!(g.relu(foreign), Err(Error::Invalid(_))));
    assert!(matches!(g.backward(foreign), Err(Error::Invalid(_))));
}

fn model(b: &dyn Backend, seed: u64) -> Sequential {
    Sequential::new()
        .push(
            Conv2d::new(
                b,
                "features.0",
                1,
                2,
                3,
                Conv2dParams::default(),
                true,
                seed,
            )
            .unwrap(),
        )
        .push(BatchNorm2d::new(b, "features.1", 2).unwrap())
        .push(Activation::Relu)
        .push(Flatten)
        .push(Linear::new(b, "classifier", 2 * 4 * 4, 3, true, seed + 1).unwrap())
}

#[test]
fn save_load_round_trip() {
    let b = CpuBackend::new();
    let m1 = model(&b, 1);
    // change running stats so buffers are exercised
    let mut g = Graph::new(&b);
    let x = g.constant(b.upload(&[2, 1, 6, 6], &data(&[2, 1, 6, 6], 4)).unwrap());
    m1.forward(&mut g, x).unwrap();
    let names: Vec<&str> = m1.state().iter().map(|p| p.name()).collect();
    assert_eq!(
        names,
        [
            "features.0.weight",
            "features.0.bias",
            "features.1.weight",
            "features.1.bias",
            "classifier.weight",
            "classifier.bias",
            "features.1.running_mean",
            "features.1.running_var"
        ]
    );
    let meta = [("command".to_string(), "test".to_string())]
        .into_iter()
        .collect();
    let bytes = pollster::block_on(weights::save_params(&b, &m1.state(), Some(meta))).unwrap();
    assert_eq!(weights::metadata(&bytes).unwrap()["command"], "test");

    let m2 = model(&b, 2);
    assert_ne!(
        read(&b, m1.params()[0].value()),
        read(&b, m2.params()[0].value())
    );
    weights::load_params(&b, &m2.state(), &bytes).unwrap();
    for (p, q) in m1.state().iter().zip(m2.state()) {
        assert_eq!(read(&b, p.value()), read(&b, q.value()), "{}", p.name());
    }

    // through a file, too
    let path = std::env::temp_dir().join(format!(
        "nnlab_roundtrip_{}.safetensors",
        std::process::id()
    ));
    weights::save_file(&b, &m1.state(), &path, None).unwrap();
    let m3 = model(&b, 3);
    weights::load_file(&b, &m3.state(), &path).unwrap();
    assert_eq!(
        read(&b, m1.params()[4].value()),
        read(&b, m3.params()[4].value())
    );
    std::fs::remove_file(&path).ok();
}

#[test]
fn mismatched_or_corrupt_weights_give_clear_errors() {
    let b = CpuBackend::new();
    let m = model(&b, 1);
    let good = weights::from_bytes(
        &pollster::block_on(weights::save_params(&b, &m.state(), None)).unwrap(),
    )
    .unwrap();
    let expect_weights_err = |bytes: &[u8], needles: &[&str]| {
        let before = read(&b, m.params()[0].value());
        match weights::load_params(&b, &m.state(), bytes) {
            Err(Error::Weights(msg)) => {
                println!("{msg}");
                for n in needles {
                    assert!(msg.contains(n), "message {msg:?} should mention {n:?}");
                }
            }
            other => panic!("expected Error::Weights, got {other:?}"),
        }
        assert_eq!(
            before,
            read(&b, m.params()[0].value()),
            "a failed load must not change the model"
        );
    };

    // missing name
    let missing: Vec<NamedTensor> = good
        .iter()
        .filter(|t| t.name != "classifier.bias")
        .cloned()
        .collect();
    expect_weights_err(
        &weights::to_bytes(&missing, None).unwrap(),
        &["missing", "classifier.bias"],
    );
    // wrong shape
    let mut wrong = good.clone();
    let w = wrong
        .iter_mut()
        .find(|t| t.name == "classifier.weight")
        .unwrap();
    w.shape = vec![3, 16];
    w.data.truncate(48);
    expect_weights_err(
        &weights::to_bytes(&wrong, None).unwrap(),
        &["shape mismatch", "classifier.weight", "[3, 32]", "[3, 16]"],
    );
    // unexpected name
    let mut extra = good.clone();
    extra.push(NamedTensor {
        name: "fc2.weight".into(),
        shape: vec![1],
        data: vec![0.0],
    });
    expect_weights_err(
        &weights::to_bytes(&extra, None).unwrap(),
        &["unexpected", "fc2.weight"],
    );
    // truncated and garbage bytes
    let bytes = weights::to_bytes(&good, None).unwrap();
    expect_weights_err(&bytes[..bytes.len() - 7], &["safetensors"]);
    expect_weights_err(&bytes[..5], &["safetensors"]);
    expect_weights_err(b"definitely not safetensors", &["safetensors"]);
    expect_weights_err(&[], &["safetensors"]);
    // PyTorch's BatchNorm counter is tolerated
    let mut with_counter: Vec<(String, safetensors::tensor::TensorView<'_>)> = Vec::new();
    let raw: Vec<Vec<u8>> = good
        .iter()
        .map(|t| t.data.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    for (t, r) in good.iter().zip(&raw) {
        with_counter.push((
            t.name.clone(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape.clone(), r)
                .unwrap(),
        ));
    }
    let counter = 5i64.to_le_bytes();
    with_counter.push((
        "features.1.num_batches_tracked".into(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![], &counter).unwrap(),
    ));
    let torch_like = safetensors::serialize(with_counter, None).unwrap();
    weights::load_params(&b, &m.state(), &torch_like).unwrap();
    // NaN or inf anywhere is refused on load (naming the first bad tensor) and on save
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut raw_named: Vec<(String, Vec<u8>, Vec<usize>)> = good
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    t.data.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    t.shape.clone(),
                )
            })
            .collect();
        let last = raw_named
            .iter_mut()
            .find(|t| t.0 == "classifier.weight")
            .unwrap();
        last.1[8..12].copy_from_slice(&bad.to_le_bytes());
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = raw_named
            .iter()
            .map(|(n, r, s)| {
                (
                    n.clone(),
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), r)
                        .unwrap(),
                )
            })
            .collect();
        let poisoned = safetensors::serialize(views, None).unwrap();
        expect_weights_err(
            &poisoned,
            &["'classifier.weight'", "1 non-finite value", "index 2"],
        );
        assert!(weights::from_bytes(&poisoned).is_err());
        assert!(weights::average(&[&poisoned]).is_err());
        let mut unsaved = good.clone();
        unsaved[0].data[0] = bad;
        let e = weights::to_bytes(&unsaved, None).unwrap_err().to_string();
        assert!(
            e.contains("cannot save") && e.contains(&unsaved[0].name),
            "{e}"
        );
    }
    // saving duplicate names or inconsistent data is refused
    let dup = vec![good[0].clone(), good[0].clone()];
    assert!(matches!(
        weights::to_bytes(&dup, None),
        Err(Error::Weights(_))
    ));
    let bad = vec![NamedTensor {
        name: "x".into(),
        shape: vec![2, 2],
        data: vec![0.0; 3],
    }];
    assert!(matches!(
        weights::to_bytes(&bad, None),
        Err(Error::Weights(_))
    ));
}

#[test]
fn init_has_the_right_scale_and_repeats_with_the_seed() {
    use nnlab::nn::init::{fans, init_values, Init};
    assert_eq!(fans(&[64, 32, 3, 3]).unwrap(), (288, 576));
    assert_eq!(fans(&[10, 20]).unwrap(), (20, 10));
    let std = |v: &[f32]| {
        let m = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        (v.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
    };
    let shape = [64, 32, 3, 3];
    let kn = init_values(&shape, Init::KaimingNormal { slope: 0.0 }, 1).unwrap();
    let want = (2.0f64 / 288.0).sqrt();
    assert!(
        (std(&kn) / want - 1.0).abs() < 0.03,
        "Kaiming normal std {} want {want}",
        std(&kn)
    );
    let ku = init_values(&shape, Init::KaimingUniform { slope: 0.0 }, 1).unwrap();
    let bound = (6.0f32 / 288.0).sqrt();
    assert!(
        ku.iter().all(|x| x.abs() <= bound)
            && (std(&ku) / (bound as f64 / 3f64.sqrt()) - 1.0).abs() < 0.03
    );
    let xu = init_values(&shape, Init::XavierUniform { gain: 1.0 }, 1).unwrap();
    let bound = (6.0f32 / (288.0 + 576.0)).sqrt();
    assert!(
        xu.iter().all(|x| x.abs() <= bound)
            && (std(&xu) / (bound as f64 / 3f64.sqrt()) - 1.0).abs() < 0.03
    );
    assert_eq!(
        kn,
        init_values(&shape, Init::KaimingNormal { slope: 0.0 }, 1).unwrap()
    );
    assert_ne!(
        kn,
        init_values(&shape, Init::KaimingNormal { slope: 0.0 }, 2).unwrap()
    );
    assert!(fans(&[5]).is_err());
    // layers: biases zero, BatchNorm gamma 1 beta 0
    let b = CpuBackend::new();
    let l = Linear::new(&b, "fc", 3, 2, true, 1).unwrap();
    assert_eq!(read(&b, l.bias.as_ref().unwrap().value()), vec![0.0; 2]);
    let bn = BatchNorm2d::new(&b, "bn", 2).unwrap();
    assert_eq!(
        (read(&b, bn.weight.value()), read(&b, bn.bias.value())),
        (vec![1.0; 2], vec![0.0; 2])
    );
}

#[test]
fn optimizers_update_params_in_place() {
    use nnlab::nn::{Adam, Optimizer, Sgd};
    let b = CpuBackend::new();
    // loss = sum(g0 * p) has gradient g0 whatever p is
    let g0 = [0.5f32, -2.0];
    let step = |opt: &mut dyn Optimizer, p: &Param, unused: &Param| {
        let mut g = Graph::new(&b);
        let pv = g.param(p);
        let c = g.constant(b.upload(&[2], &g0).unwrap());
        let y = g.mul(pv, c).unwrap();
        let l = g.sum(y).unwrap();
        g.backward(l).unwrap();
        opt.step(&g, &[p, unused]).unwrap();
    };
    let unused = Param::new("unused", b.fill(&[2], 3.0).unwrap());
    // SGD, momentum 0.9, lr 0.1: v1 = g, p1 = p0 - 0.1 g; v2 = 1.9 g, p2 = p1 - 0.19 g
    let p = Param::new("p", b.fill(&[2], 1.0).unwrap());
    let mut sgd = Sgd::new(0.1, 0.9, 0.0);
    step(&mut sgd, &p, &unused);
    step(&mut sgd, &p, &unused);
    let got = read(&b, p.value());
    for i in 0..2 {
        assert!((got[i] - (1.0 - 0.29 * g0[i])).abs() < 1e-6, "sgd: {got:?}");
    }
    assert_eq!(
        read(&b, unused.value()),
        vec![3.0; 2],
        "a parameter without gradient must not move"
    );
    // Adam's first bias-corrected step moves each weight by lr * sign(g)
    let p = Param::new("p", b.fill(&[2], 1.0).unwrap());
    let mut adam = Adam::new(0.01, 0.9, 0.999);
    step(&mut adam, &p, &unused);
    let got = read(&b, p.value());
    for i in 0..2 {
        assert!(
            (got[i] - (1.0 - 0.01 * g0[i].signum())).abs() < 1e-6,
            "adam: {got:?}"
        );
    }
    assert_eq!((adam.steps(&p), adam.steps(&unused)), (1, 0));
}

/// `weights::average` is the element-wise mean, leaves a checkpoint's `adam.*` state out, and
/// refuses files of different models or no files at all.
#[test]
fn averaging_weights_files() {
    let t = |name: &str, shape: Vec<usize>, data: Vec<f32>| NamedTensor {
        name: name.into(),
        shape,
        data,
    };
    let a = weights::to_bytes(
        &[
            t("w", vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]),
            t("bn.running_var", vec![1], vec![1.0]),
            t("adam.m.w", vec![2, 2], vec![9.0; 4]),
        ],
        None,
    )
    .unwrap();
    let b = weights::to_bytes(
        &[
            t("w", vec![2, 2], vec![3.0, 2.0, 1.0, 0.0]),
            t("bn.running_var", vec![1], vec![2.0]),
        ],
        None,
    )
    .unwrap();
    let avg = weights::average(&[&a, &b]).unwrap();
    assert_eq!(
        avg,
        vec![
            t("bn.running_var", vec![1], vec![1.5]),
            t("w", vec![2, 2], vec![2.0; 4])
        ]
    );
    // one file: itself, optimizer state dropped
    assert_eq!(weights::average(&[&b]).unwrap().len(), 2);
    let other = weights::to_bytes(
        &[
            t("w", vec![4], vec![0.0; 4]),
            t("bn.running_var", vec![1], vec![1.0]),
        ],
        None,
    )
    .unwrap();
    let e = weights::average(&[&a, &other]).unwrap_err().to_string();
    assert!(e.contains("file 2") && e.contains("same tensors"), "{e}");
    assert!(weights::average(&[])
        .unwrap_err()
        .to_string()
        .contains("no weights files"));
    assert!(weights::average(&[&a, b"junk"]).is_err());
}
