//! The library against its references: every kernel against the CPU on awkward shapes, GPU
//! training against CPU training, the float64 and PyTorch references, the limits of an adapter,
//! classification, presets, the checked-in fixtures, and the fuzz corpus replayed.
//!
//! One test binary (linking is most of a test build's time): one module per topic.

#[path = "../common/mod.rs"]
mod common;

mod checkpoint_fixture;
mod classification;
mod fuzz_inputs;
mod kernels;
mod limits;
mod parity;
mod presets;
mod reference;
mod sweep;
mod torch_fixture;
