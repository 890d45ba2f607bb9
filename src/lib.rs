//! gpu-train: train small fully connected networks on any GPU through WebGPU compute shaders, with
//! a CPU path that is both the fallback and the reference the GPU path is checked against.
//!
//! The flow of one run: command line → [`job::Job`] (validated once) → [`init::HostState`] (seeded
//! or loaded from .npy) → a [`backend::Backend`] ([`cpu::CpuBackend`] or [`gpu::GpuBackend`]) →
//! [`train::train`] → files.

pub mod app;
pub mod backend;
pub mod bench;
pub mod cli;
pub mod cpu;
pub mod error;
pub mod eval;
pub mod fuzz;
pub mod gpu;
pub mod init;
pub mod io;
pub mod job;
pub mod schedule;
pub mod thinned;
pub mod train;
pub mod verify;

pub use error::{Error, Result};
