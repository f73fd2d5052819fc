//! The Adversarial tab's input paths: a drawing on a big canvas becomes the same 28x28 tensor as
//! the equivalent MNIST-format image, and the page's digit file parses (and refuses bad bytes).
//!
//! Why the comparisons are (near) exact: a digit drawn k times larger (each pixel a k x k block,
//! anywhere on the canvas) has a bounding box exactly k times the original's, so scaling it to
//! the 20-pixel box averages k x k equal values per output pixel: the result equals the
//! original up to float rounding of a 2k-term weighted sum (below 1e-6 for values in [0, 1]),
//! and the centre of mass, hence the integer shift, is the same. The tolerance 1e-5 leaves a
//! margin over that bound; any real error (an off-by-one box, a shifted centre) is >= 1/255.

use nnlab::data::drawing::{mnist_from_drawing, mnist_from_drawing_u8, BOX};
use nnlab::data::mnist::{Mnist, PIXELS, SIDE};

const TOL: f32 = 1e-5;

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `img` (28x28) drawn `k` times larger at (top, left) of a `side` x `side` canvas.
fn draw_big(img: &[f32], k: usize, top: usize, left: usize, side: usize) -> Vec<f32> {
    let mut c = vec![0.0; side * side];
    for y in 0..SIDE * k {
        for x in 0..SIDE * k {
            c[(top + y) * side + left + x] = img[(y / k) * SIDE + x / k];
        }
    }
    c
}

/// The page's digits (www/data/mnist_page.bin, made by `./build.sh setup`), or None, loudly.
fn page_digits() -> Option<Mnist> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("www/data/mnist_page.bin");
    match std::fs::read(&path) {
        Ok(bytes) => Some(Mnist::from_page_bytes(&bytes).expect("the page digit file parses")),
        Err(e) => {
            eprintln!(
                "SKIPPED: {} is missing ({e}); run ./build.sh setup to make it",
                path.display()
            );
            None
        }
    }
}

#[test]
fn golden_l_shape_by_hand() {
    // A 2-pixel-thick "L" on a 40x40 canvas: vertical bar rows 5..15 x cols 10..12, foot rows
    // 13..15 x cols 12..16. Bounding box 10 tall x 6 wide -> scale x2 to 20 x 12, each pixel a
    // 2x2 block: bar rows 0..20 x cols 0..4 (mass 80, mean row 9.5, mean col 1.5), foot rows
    // 16..20 x cols 4..12 (mass 32, mean row 17.5, mean col 7.5). Centre of mass
    // row (80*9.5 + 32*17.5)/112 = 11.786 -> shift round(14 - 11.786) = 2,
    // col (80*1.5 + 32*7.5)/112 = 3.214 -> shift round(14 - 3.214) = 11.
    let mut canvas = vec![0.0f32; 40 * 40];
    for y in 5..15 {
        for x in 10..12 {
            canvas[y * 40 + x] = 1.0;
        }
    }
    for y in 13..15 {
        for x in 12..16 {
            canvas[y * 40 + x] = 1.0;
        }
    }
    let mut want = vec![0.0f32; PIXELS];
    for y in 2..22 {
        for x in 11..15 {
            want[y * SIDE + x] = 1.0;
        }
    }
    for y in 18..22 {
        for x in 15..23 {
            want[y * SIDE + x] = 1.0;
        }
    }
    let got = mnist_from_drawing(&canvas, 40, 40).unwrap();
    assert_eq!(
        max_abs_diff(&got, &want),
        0.0,
        "the L must land exactly where worked out by hand"
    );

    // the same L as 8-bit canvas values gives the same image
    let bytes: Vec<u8> = canvas.iter().map(|&v| (v * 255.0) as u8).collect();
    assert_eq!(mnist_from_drawing_u8(&bytes, 40, 40).unwrap(), got);
}

#[test]
fn downscaling_averages_areas() {
    // a 40 x 30 block of 1.0 (40 tall): f = 2, so 20 x 15 output pixels of 1.0; a 41 x 30 block:
    // f = 2.05, ceil(41 / 2.05) = 20 rows and ceil(30 / 2.05) = 15 columns, the last covering
    // 30 - 14 * 2.05 = 1.3 of its 2.05 source columns -> value 1.3 / 2.05.
    for (h, last_col) in [(40usize, 1.0f32), (41, 1.3 / 2.05)] {
        let (side, w) = (64, 30);
        let mut c = vec![0.0f32; side * side];
        for y in 3..3 + h {
            for x in 7..7 + w {
                c[y * side + x] = 1.0;
            }
        }
        let img = mnist_from_drawing(&c, side, side).unwrap();
        let rows: Vec<usize> = (0..SIDE)
            .filter(|&y| img[y * SIDE..(y + 1) * SIDE].iter().any(|&v| v > 0.0))
            .collect();
        assert_eq!(
            rows.len(),
            BOX,
            "height {h}: the larger side must become {BOX} pixels"
        );
        let row = &img[rows[5] * SIDE..(rows[5] + 1) * SIDE];
        let cols: Vec<usize> = (0..SIDE).filter(|&x| row[x] > 0.0).collect();
        assert_eq!(cols.len(), 15, "height {h}: width 30 scales to 15 columns");
        assert!((row[cols[0]] - 1.0).abs() < TOL);
        assert!(
            (row[*cols.last().unwrap()] - last_col).abs() < TOL,
            "height {h}: last column {} want {last_col}",
            row[*cols.last().unwrap()]
        );
    }
}

#[test]
fn drawn_mnist_digits_match_the_mnist_images() {
    let Some(set) = page_digits() else { return };
    // every 10th digit of the 10,000 (all classes; the file is sorted by class)
    let (mut checked, mut unchanged) = (0, 0);
    let mut worst = 0.0f32;
    for i in (0..set.len()).step_by(10) {
        let orig = set.image(i);
        let mnist_path = mnist_from_drawing(orig, SIDE, SIDE).unwrap();
        // drawn 10x larger near the top-left, and 7x larger off-centre toward the bottom-right
        for (k, top, left, side) in [(10usize, 3usize, 11usize, 300usize), (7, 90, 61, 290)] {
            let canvas = draw_big(orig, k, top, left, side);
            let drawn = mnist_from_drawing(&canvas, side, side).unwrap();
            let d = max_abs_diff(&drawn, &mnist_path);
            worst = worst.max(d);
            assert!(
                d <= TOL,
                "digit {i} drawn {k}x at ({top},{left}): differs from its MNIST-format path by {d}"
            );
        }
        // MNIST's own convention: its digits pass through unchanged
        checked += 1;
        if max_abs_diff(&mnist_path, orig) <= TOL {
            unchanged += 1;
        }
    }
    println!("{checked} digits: drawing path == MNIST-format path within {worst:e}; {unchanged} pass through unchanged");
    // the two digits (of 10,000) whose box is 19 pixels get rescaled; every other must be unchanged
    assert!(
        unchanged as f64 >= 0.99 * checked as f64,
        "only {unchanged} of {checked} MNIST digits pass through unchanged"
    );
}

#[test]
fn bad_drawings_are_refused() {
    assert!(mnist_from_drawing(&[0.0; 100], 10, 10)
        .unwrap_err()
        .to_string()
        .contains("empty"));
    assert!(mnist_from_drawing(&[1.0; 99], 10, 10).is_err());
    assert!(mnist_from_drawing(&[], 0, 0).is_err());
    assert!(mnist_from_drawing(&[1.0; 4], 1, 5000).is_err());
    // NaN is no ink; values above 1 are clamped
    let mut c = vec![f32::NAN; 16];
    c[5] = 7.0;
    let img = mnist_from_drawing(&c, 4, 4).unwrap();
    assert!(img.iter().all(|v| (0.0..=1.0).contains(v)));
}

#[test]
fn page_digit_file_parses_and_refuses_bad_bytes() {
    let mut bytes = b"NNMN".to_vec();
    bytes.extend_from_slice(&2u32.to_le_bytes());
    bytes.extend_from_slice(&[3, 9]);
    bytes.extend((0..2 * PIXELS).map(|i| (i % 256) as u8));
    let m = Mnist::from_page_bytes(&bytes).unwrap();
    assert_eq!(m.labels, vec![3, 9]);
    assert_eq!(m.images.len(), 2 * PIXELS);
    assert_eq!(m.images[255], 1.0);

    let err = |b: &[u8]| Mnist::from_page_bytes(b).unwrap_err().to_string();
    assert!(err(&bytes[..bytes.len() - 1]).contains("truncated"));
    assert!(err(b"NNMX\x01\0\0\0").contains("NNMN"));
    let mut extra = bytes.clone();
    extra.push(0);
    assert!(err(&extra).contains("unexpected"));
    let mut bad_label = bytes.clone();
    bad_label[8] = 12;
    assert!(err(&bad_label).contains("label 12"));

    if let Some(set) = page_digits() {
        assert_eq!(set.len(), 10_000);
        assert!(set.labels.iter().all(|&l| l < 10));
    }
}
