//! wasm API of the Conv-arithmetic tab: the lecture's transposed-convolution arithmetic
//! (Dumoulin & Visin 2016) for a direct conv (i, m, s, p), the layout of its zero-inserted,
//! padded grid, and the lecture's example run on the backend in use (www/conv.js draws them).

use js_sys::{Array, Float32Array, Object};
use wasm_bindgen::prelude::*;

use super::{backend, backend_describe, err, set};
use crate::backend::conv_arith::{self, LectureTransposed};
use crate::backend::Conv2dParams;

/// Largest sizes the Conv-arithmetic tab accepts (keeps the drawing and the run small).
const MAX_SIZE: usize = 64;
const MAX_KERNEL: usize = 15;
const MAX_STRIDE: usize = 8;

fn lecture(i: usize, m: usize, s: usize, p: usize) -> Result<LectureTransposed, JsError> {
    if i > MAX_SIZE || m > MAX_KERNEL || s > MAX_STRIDE {
        return Err(JsError::new(&format!(
            "invalid argument: this tab takes i <= {MAX_SIZE}, m <= {MAX_KERNEL}, s <= {MAX_STRIDE} (got i={i}, m={m}, s={s})"
        )));
    }
    conv_arith::lecture_transposed(i, m, s, p).map_err(err)
}

/// What each cell of the zero-inserted, padded grid is (row-major, side x side).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cell {
    /// a pixel of the transposed conv's input (the direct conv's output)
    Input = 0,
    /// one of the i' zeros inserted between neighbouring pixels
    Inserted = 1,
    /// the p' zeros of padding on every side
    Padding = 2,
    /// the a' extra zeros on the bottom/right
    Extra = 3,
}

fn cell_kind(lt: &LectureTransposed, y: usize, x: usize) -> Cell {
    let side = lt.stretched + 2 * lt.p_t + lt.a_t;
    let body = lt.p_t..lt.p_t + lt.stretched;
    if y >= side - lt.a_t || x >= side - lt.a_t {
        Cell::Extra
    } else if !body.contains(&y) || !body.contains(&x) {
        Cell::Padding
    } else if (y - lt.p_t).is_multiple_of(lt.i_t + 1) && (x - lt.p_t).is_multiple_of(lt.i_t + 1) {
        Cell::Input
    } else {
        Cell::Inserted
    }
}

/// The lecture's parameters for a direct conv (i, m, s, p) and the layout of the zero-inserted,
/// padded grid: `{i, m, s, p, o, m_t, s_t, p_t, i_t, a_t, stretched, o_t, side, kinds,
/// input_index, pytorch: {stride, padding, output_padding}}`. `kinds` is a Uint8Array of
/// side*side cells (0 input pixel, 1 inserted zero, 2 padding, 3 the a' extra row/col);
/// `input_index` gives, per cell, the index of the input pixel (row-major in o x o) or -1.
#[wasm_bindgen]
pub fn conv_arith_params(i: usize, m: usize, s: usize, p: usize) -> Result<JsValue, JsError> {
    let lt = lecture(i, m, s, p)?;
    let o = Object::new();
    for (k, v) in [
        ("i", i),
        ("m", m),
        ("s", s),
        ("p", p),
        ("o", lt.o),
        ("m_t", lt.m_t),
        ("s_t", lt.s_t),
        ("p_t", lt.p_t),
        ("i_t", lt.i_t),
        ("a_t", lt.a_t),
        ("stretched", lt.stretched),
        ("o_t", lt.o_t),
    ] {
        set(&o, k, v as u32);
    }
    // the grid layout, from the library's own construction applied to pixel indices 1..=o*o
    let idx: Vec<f32> = (1..=lt.o * lt.o).map(|v| v as f32).collect();
    let (grid, side) = conv_arith::stretch_and_pad(&idx, 1, 1, lt.o, &lt);
    let mut kinds = Vec::with_capacity(side * side);
    let mut input_index = Vec::with_capacity(side * side);
    for y in 0..side {
        for x in 0..side {
            let kind = cell_kind(&lt, y, x);
            let v = grid[y * side + x];
            // the library and the classification must agree on where the input pixels are
            if (kind == Cell::Input) != (v != 0.0) {
                return Err(JsError::new(&format!(
                    "internal: grid cell ({y},{x}) classified {kind:?} but holds {v}"
                )));
            }
            kinds.push(kind as u8);
            input_index.push(if v != 0.0 { v as i32 - 1 } else { -1 });
        }
    }
    set(&o, "side", side as u32);
    set(&o, "kinds", js_sys::Uint8Array::from(&kinds[..]));
    set(
        &o,
        "input_index",
        js_sys::Int32Array::from(&input_index[..]),
    );
    let pt = lt.pytorch_params(s, p);
    let py = Object::new();
    set(&py, "stride", pt.stride.h as u32);
    set(&py, "padding", pt.padding.h as u32);
    set(&py, "output_padding", pt.output_padding.h as u32);
    set(&o, "pytorch", py);
    Ok(o.into())
}

fn tensor_result(shape_in: &[usize], shape_out: &[usize], values: &[f32]) -> Object {
    let o = Object::new();
    set(&o, "in_size", shape_in[2] as u32);
    set(&o, "out_size", shape_out[2] as u32);
    set(&o, "values", Float32Array::from(values));
    o
}

/// Run the lecture's example on the backend: a conv2d (kernel of ones, stride s, padding p) of
/// an arange-filled i x i input (0, 1, 2, ...) giving o x o; then the transposed conv (PyTorch
/// parameters, kernel of ones) of that output back to i x i; and the lecture's construction of
/// the same transposed conv (a stride-1 direct conv with the 180-degree-rotated kernel on the
/// zero-inserted, padded grid). Resolves to `{backend, conv: {in_size, out_size, values},
/// transposed: {...}, lecture: {...}, grid: {side, values}, max_abs_diff}` where
/// `max_abs_diff` compares the two transposed convs.
#[wasm_bindgen]
pub async fn conv_arith_run(i: usize, m: usize, s: usize, p: usize) -> Result<JsValue, JsError> {
    let lt = lecture(i, m, s, p)?;
    let be = backend()?;
    let x_host: Vec<f32> = (0..i * i).map(|v| v as f32).collect();
    let w_host = vec![1.0f32; m * m];
    let x = be.upload(&[1, 1, i, i], &x_host).map_err(err)?;
    let w = be.upload(&[1, 1, m, m], &w_host).map_err(err)?;

    let y = be
        .conv2d(&x, &w, None, Conv2dParams::new(s, p, 1))
        .map_err(err)?;
    let y_host = be.read(&y).await.map_err(err)?;

    let pt = lt.pytorch_params(s, p);
    let z = be.conv_transpose2d(&y, &w, None, pt).map_err(err)?;
    let z_host = be.read(&z).await.map_err(err)?;

    let (grid, side) = conv_arith::stretch_and_pad(&y_host, 1, 1, lt.o, &lt);
    let g = be.upload(&[1, 1, side, side], &grid).map_err(err)?;
    let w_flip = be
        .upload(
            &[1, 1, m, m],
            &conv_arith::flip_transpose_weight(&w_host, 1, 1, m),
        )
        .map_err(err)?;
    let l = be
        .conv2d(&g, &w_flip, None, Conv2dParams::new(lt.s_t, 0, 1))
        .map_err(err)?;
    let l_host = be.read(&l).await.map_err(err)?;

    if z.shape() != l.shape() {
        return Err(JsError::new(&format!(
            "the lecture's construction gives {:?} but conv_transpose2d gives {:?}",
            l.shape(),
            z.shape()
        )));
    }
    let max_abs_diff = z_host
        .iter()
        .zip(&l_host)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);

    let o = Object::new();
    set(&o, "backend", backend_describe());
    set(&o, "conv", tensor_result(x.shape(), y.shape(), &y_host));
    set(
        &o,
        "transposed",
        tensor_result(y.shape(), z.shape(), &z_host),
    );
    set(&o, "lecture", tensor_result(g.shape(), l.shape(), &l_host));
    let go = Object::new();
    set(&go, "side", side as u32);
    set(&go, "values", Float32Array::from(&grid[..]));
    set(&o, "grid", go);
    set(&o, "max_abs_diff", max_abs_diff as f64);
    Ok(o.into())
}

/// The cell legend of `conv_arith_params().kinds`, in kind order.
#[wasm_bindgen]
pub fn conv_arith_cell_kinds() -> Array {
    [
        "input pixel",
        "inserted zero (i')",
        "padding (p')",
        "extra zero (a')",
    ]
    .iter()
    .map(|s| JsValue::from_str(s))
    .collect()
}
