//! gpu-train: train small fully connected networks on any GPU through WebGPU compute shaders, with
//! a CPU path that is both the fallback and the reference the GPU path is checked against.
//!
//! The flow of one run: command line (`app`) or JSON ([`spec::JobSpec`], the browser page's) →
//! [`job::Job`] (validated once) → [`init::HostState`] (seeded or loaded from .npy) → a
//! [`backend::Backend`] ([`cpu::CpuBackend`] or [`gpu::GpuBackend`]) → a [`train::Session`]
//! stepped chunk by chunk → files (natively) or bytes (in the page). Every wait on the GPU is a
//! future ([`wait`]): natively driven by `pollster`, in the browser by its event loop.

#[cfg(not(target_arch = "wasm32"))]
pub mod app;
pub mod backend;
pub mod bench;
pub mod check;
#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
pub mod codes;
pub mod cpu;
pub mod devices;
pub mod error;
pub mod eval;
pub mod fuzz;
pub mod gpu;
pub mod init;
pub mod io;
pub mod job;
pub mod monitor;
pub mod schedule;
pub mod spec;
pub mod state;
pub mod sweep;
pub mod text;
pub mod thinned;
pub mod train;
pub mod verify;
pub mod wait;

pub use error::{Error, Result};
