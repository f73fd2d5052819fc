//! wasm-bindgen API (filled by the web work)
