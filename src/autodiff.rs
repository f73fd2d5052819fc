//! filled by the autodiff work
