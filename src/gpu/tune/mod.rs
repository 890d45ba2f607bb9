//! Matmul tuning per adapter: for each product shape, every variant of `shaders/matmul.wgsl`
//! ([`Block::of_layout`]) is checked against the CPU on random inputs, the ones that pass are timed, and
//! the fastest is kept. The choices are cached per adapter and driver in the user's cache
//! directory (`$GPU_TRAIN_CACHE_DIR`, else e.g. `~/.cache/gpu-train`), one JSON file each; training
//! and the bench read them when they open the adapter. A cache that cannot be read, that another
//! version of the kernels or of the tool wrote, or that names another adapter or driver is ignored
//! with a warning: a stale choice can only be slow, never wrong (every variant computes the same
//! product), but it must not be trusted silently.

use super::kernels::{Block, MatmulKey, Sources};
use super::layout::Layout;
use super::GpuContext;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::Hasher;
use std::path::PathBuf;

mod auto;
mod cache;
mod search;
#[cfg(test)]
mod tests;

pub use auto::*;
pub use cache::*;
pub use search::*;
