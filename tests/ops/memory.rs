//! Memory ops: upload, read, read_many, fill, zeros, assign; bad input; tensors of the other
//! backend refused.

use crate::common::*;
use nnlab::backend::*;
use nnlab::cpu::CpuBackend;
use nnlab::gpu::GpuOptions;
use nnlab::Tensor;

backend_test! {
    fn upload_read_fill_assign_roundtrip(b) {
        let a = b.t(&[2, 3], &arange(6));
        assert_eq!(b.v(&a), arange(6));
        let f = b.fill(&[3, 2], 2.5).unwrap();
        assert_eq!(f.shape(), &[3, 2]);
        assert_eq!(b.v(&f), vec![2.5; 6]);
        b.assign(&f, &a).unwrap(); // same element count, different shape: allowed
        assert_eq!(b.v(&f), arange(6));
        b.assign(&a, &a).unwrap(); // self-assignment must not deadlock
        assert_eq!(b.v(&b.zeros(&[4]).unwrap()), vec![0.0; 4]);
    }
}

backend_test! {
    /// `read_many` (one staging buffer and one map on the GPU) returns each tensor exactly as its
    /// own `read` does, in order: sizes 1, odd and large, the same tensor twice.
    fn read_many_equals_one_read_per_tensor(b) {
        let shapes: [&[usize]; 4] = [&[1], &[3, 7], &[2, 3, 50, 41], &[5]];
        let ts: Vec<Tensor> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| b.upload(s, &rnd_in(numel(s), 40 + i as u64, -2.0, 2.0)).unwrap())
            .collect();
        let mut refs: Vec<&Tensor> = ts.iter().collect();
        refs.push(&ts[1]);
        let many = pollster::block_on(b.read_many(&refs)).unwrap();
        assert_eq!(many.len(), refs.len());
        for (t, got) in refs.iter().zip(&many) {
            assert_eq!(got, &pollster::block_on(b.read(t)).unwrap(), "{}", b.info().describe());
        }
        assert!(pollster::block_on(b.read_many(&[])).unwrap().is_empty());
    }
}

backend_test! {
    /// Zero-size tensors and data of the wrong length are refused; assign needs equal element counts.
    fn bad_input_is_an_error(b) {
        is_err_with(b.upload(&[0, 3], &[]), "no elements");
        is_err_with(b.upload(&[2, 3], &[1.0; 5]), "6 values");
        is_err_with(b.fill(&[4, 0], 1.0), "no elements");
        is_err_with(b.zeros(&[0]), "no elements");
        let a = b.t(&[2, 3], &rnd(6, 1));
        is_err_with(b.assign(&a, &b.t(&[5], &rnd(5, 1))), "element counts differ");
    }
}

/// A tensor of one backend handed to the other is refused (an error, not a panic), both ways.
#[test]
fn a_tensor_of_the_other_backend_is_refused() {
    let (g, c) = (gpu(), CpuBackend::new());
    assert!(g.sum(&c.t(&[2, 3], &[0.0; 6])).is_err());
    assert!(c.sum(&g.t(&[2, 3], &[0.0; 6])).is_err());
}

/// Work is recorded into one command encoder and submitted at the next read (issue 18 item 4).
/// An upload into a pooled buffer that recorded work still reads must land after that work;
/// a chain longer than one submit's worth of dispatches and a copy in the middle stay in order.
#[test]
fn recorded_work_keeps_its_order_across_uploads_and_submits() {
    let g = gpu_with(GpuOptions::default()); // its own pool: the recycling below is certain
    let n = 1000;
    let (da, db) = (rnd_in(n, 71, -1.0, 1.0), rnd_in(n, 72, -1.0, 1.0));
    let a = g.upload(&[n], &da).unwrap();
    let sum = g.binary(BinaryOp::Add, &a, &a).unwrap(); // recorded, reads a
    drop(a); // a's buffer goes back to the pool while the add still needs it
    let b = g.upload(&[n], &db).unwrap(); // takes that buffer
    let mut x = g.binary(BinaryOp::Mul, &b, &b).unwrap();
    let copy = g.zeros(&[n]).unwrap();
    g.assign(&copy, &x).unwrap();
    for _ in 0..700 {
        // past the dispatches one submit collects
        x = g.binary(BinaryOp::Add, &x, &b).unwrap();
    }
    let got = pollster::block_on(g.read_many(&[&sum, &b, &copy, &x])).unwrap();
    for i in 0..n {
        assert_eq!(got[0][i], da[i] + da[i], "sum at {i}");
        assert_eq!(got[1][i], db[i], "upload at {i}");
        assert_eq!(got[2][i], db[i] * db[i], "copy at {i}");
        let mut want = db[i] * db[i];
        for _ in 0..700 {
            want += db[i];
        }
        assert_eq!(got[3][i], want, "chain at {i}");
    }
}
