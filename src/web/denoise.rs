//! wasm API of the Denoise tab (DnCNN inference and in-tab training).
