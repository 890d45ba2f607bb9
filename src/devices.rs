//! The devices a front end (bench, verify, the page) runs on: the host machine, each device as the
//! results files describe it, and opening every adapter the user chose (or all of them) beside the
//! CPU path.

#[cfg(not(target_arch = "wasm32"))]
use crate::error::Result;
#[cfg(not(target_arch = "wasm32"))]
use crate::gpu::context::{self, DeviceChoice, LimitsChoice};
use crate::gpu::layout::Layout;
use crate::gpu::GpuContext;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The machine the bench ran on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub cpu: String,
    pub threads: usize,
    pub os: String,
    pub arch: String,
    /// The FMA peak of the CPU path's threads, measured before the CPU rows (none in a run
    /// without them, and in files from before it was measured).
    #[serde(default)]
    pub fma_peak: Option<FmaPeak>,
}

/// The machine's measured FMA peak (`bench::peak`): what the CPU rows' share of peak is of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FmaPeak {
    /// `avx512f`, `avx2+fma`, `neon` or `scalar`.
    pub isa: String,
    /// Threads that ran at once (the CPU path's).
    pub threads: usize,
    pub gflops: f64,
}

pub use crate::backend::DeviceInfo;

/// A device of the run, opened.
pub enum Device {
    Cpu,
    /// An adapter and the memory layout its cases run in.
    Gpu(Arc<GpuContext>, Layout),
}

/// The machine this process runs on.
pub fn host() -> Host {
    let cpu = crate::cpu::model();
    Host {
        cpu,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
        fma_peak: None,
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// The devices to run on, in order: `--device` values, or every adapter that can run compute
/// shaders and then the CPU. An adapter that cannot be opened is listed with its error.
pub fn open_devices(
    choices: &[DeviceChoice],
    layout: Option<Layout>,
    limits: LimitsChoice,
) -> Result<Vec<(DeviceInfo, Option<Device>)>> {
    let mut out = Vec::new();
    let open = |entry: context::AdapterEntry| {
        let mut info = crate::gpu::adapters::describe(&entry.info);
        let opened = GpuContext::open(&entry.adapter, limits).and_then(|ctx| {
            let layout = layout.unwrap_or_else(|| ctx.auto_layout());
            ctx.kernels.layout(layout)?;
            Ok((ctx, layout))
        });
        match opened {
            Ok((ctx, layout)) => {
                let info = ctx.describe(layout);
                (info, Some(Device::Gpu(ctx, layout)))
            }
            Err(e) => {
                info.error = Some(e.to_string());
                (info, None)
            }
        }
    };
    if choices.is_empty() {
        let adapters: Vec<_> = (context::list_adapters().into_iter())
            .filter(|a| a.compute)
            .collect();
        if adapters.is_empty() {
            eprintln!(
                "notice: no GPU adapter found, benchmarking the CPU path only (on Linux, `apt-get \
                 install mesa-vulkan-drivers` gives the software adapter lavapipe)"
            );
        }
        for entry in adapters {
            out.push(open(entry));
        }
        out.push((crate::cpu::describe(), Some(Device::Cpu)));
        return Ok(out);
    }
    for c in choices {
        match c {
            DeviceChoice::Cpu => out.push((crate::cpu::describe(), Some(Device::Cpu))),
            choice => match context::choose(choice, context::list_adapters())? {
                Some(entry) => out.push(open(entry)),
                None => {
                    eprintln!("notice: --device {c}: no GPU adapter; benchmarking the CPU");
                    out.push((crate::cpu::describe(), Some(Device::Cpu)));
                }
            },
        }
    }
    Ok(out)
}
