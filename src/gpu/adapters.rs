//! Adapters: listing them, the best one, and choosing one by `--device` (auto, cpu, gpu, an
//! index or a name).

use crate::error::{Error, Result};

/// One adapter as `gpu-train devices` shows it.
pub struct AdapterEntry {
    /// Position in the enumeration; what `--device <index>` refers to.
    pub index: usize,
    pub adapter: wgpu::Adapter,
    pub info: wgpu::AdapterInfo,
    /// Whether the adapter can run compute shaders at all (some GL adapters cannot).
    pub compute: bool,
}

impl AdapterEntry {
    /// One line: index, name, vendor, type, backend, driver.
    pub fn describe(&self) -> String {
        let i = &self.info;
        format!(
            "[{}] {} (vendor 0x{:04x}, {:?}, {}, driver {} {}){}",
            self.index,
            i.name,
            i.vendor,
            i.device_type,
            i.backend,
            i.driver,
            i.driver_info,
            if self.compute {
                ""
            } else {
                " [no compute shaders]"
            }
        )
    }

    /// Lower is better: discrete > integrated > virtual/other > software; the native APIs before
    /// GL at equal type.
    fn rank(&self) -> (u8, u8) {
        let ty = match self.info.device_type {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            wgpu::DeviceType::Other => 3,
            wgpu::DeviceType::Cpu => 4,
        };
        let backend = match self.info.backend {
            wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
            wgpu::Backend::Gl => 1,
            _ => 2,
        };
        (ty, backend)
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(super) fn instance() -> wgpu::Instance {
    // WGPU_BACKEND and friends can narrow the backends, as in every wgpu program.
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// Every adapter wgpu offers, in enumeration order.
#[cfg(not(target_arch = "wasm32"))]
pub fn list_adapters() -> Vec<AdapterEntry> {
    let instance = instance();
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    adapters
        .into_iter()
        .enumerate()
        .map(|(index, adapter)| {
            let info = adapter.get_info();
            let compute = adapter
                .get_downlevel_capabilities()
                .flags
                .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS);
            AdapterEntry {
                index,
                adapter,
                info,
                compute,
            }
        })
        .collect()
}

/// The adapter `--device auto` picks: the best-ranked one that can run compute shaders.
pub fn best_adapter(list: &[AdapterEntry]) -> Option<&AdapterEntry> {
    list.iter()
        .filter(|a| a.compute)
        .min_by_key(|a| (a.rank(), a.index))
}

/// What `--device` asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Gpu,
    Index(usize),
    Name(String),
}

impl DeviceChoice {
    pub fn parse(s: &str) -> Result<Self> {
        let t = s.trim();
        Ok(match t.to_ascii_lowercase().as_str() {
            "" => {
                return Err(Error::arg(
                    "--device",
                    "is empty; use auto, cpu, gpu, an index or a name",
                ))
            }
            "auto" => DeviceChoice::Auto,
            "cpu" => DeviceChoice::Cpu,
            "gpu" => DeviceChoice::Gpu,
            _ => match t.parse::<usize>() {
                Ok(i) => DeviceChoice::Index(i),
                Err(_) => DeviceChoice::Name(t.to_string()),
            },
        })
    }
}

/// An adapter as every output describes it, before it is opened.
pub fn describe(info: &wgpu::AdapterInfo) -> crate::backend::DeviceInfo {
    crate::backend::DeviceInfo {
        name: info.name.clone(),
        kind: "gpu".into(),
        vendor: info.vendor,
        device: info.device,
        device_type: format!("{:?}", info.device_type),
        backend: info.backend.to_string(),
        driver: info.driver.clone(),
        driver_info: info.driver_info.clone(),
        timestamps: "none".into(),
        tuned_shapes: 0,
        self_tuned: None,
        error: None,
        layout: None,
        limits: None,
    }
}

/// As `--device` takes it.
impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Gpu => f.write_str("gpu"),
            DeviceChoice::Index(i) => write!(f, "{i}"),
            DeviceChoice::Name(n) => f.write_str(n),
        }
    }
}

/// The text listing the adapters, for `gpu-train devices` and for error messages.
pub fn adapters_report(list: &[AdapterEntry]) -> String {
    if list.is_empty() {
        return "no GPU adapters found (on Linux without a GPU, `apt-get install mesa-vulkan-drivers` \
                gives the software adapter lavapipe)\nauto would choose the CPU"
            .into();
    }
    let mut s = String::new();
    for a in list {
        s.push_str(&a.describe());
        s.push('\n');
    }
    match best_adapter(list) {
        Some(b) => s.push_str(&format!("auto would choose [{}] {}", b.index, b.info.name)),
        None => s.push_str("auto would choose the CPU: no adapter can run compute shaders"),
    }
    s
}

/// Resolve a GPU choice to one adapter. `Auto` and `Cpu` are handled by the caller; this returns
/// `Ok(None)` for `Auto` when there is no usable adapter.
pub fn choose(choice: &DeviceChoice, list: Vec<AdapterEntry>) -> Result<Option<AdapterEntry>> {
    let report = adapters_report(&list);
    let pick = match choice {
        DeviceChoice::Cpu => return Ok(None),
        DeviceChoice::Auto => best_adapter(&list).map(|a| a.index),
        DeviceChoice::Gpu => match best_adapter(&list) {
            Some(a) => Some(a.index),
            None => {
                return Err(Error::Device(format!(
                    "--device gpu: no usable GPU adapter.\n{report}"
                )))
            }
        },
        DeviceChoice::Index(i) => match list.iter().find(|a| a.index == *i) {
            Some(a) => Some(a.index),
            None => {
                return Err(Error::Device(format!(
                    "--device {i}: there is no adapter with that index.\n{report}"
                )))
            }
        },
        DeviceChoice::Name(n) => {
            let lower = n.to_lowercase();
            let hits: Vec<usize> = list
                .iter()
                .filter(|a| a.info.name.to_lowercase().contains(&lower))
                .map(|a| a.index)
                .collect();
            match hits.as_slice() {
                [] => {
                    return Err(Error::Device(format!(
                        "--device {n}: not auto, cpu, gpu, an index or the name of an adapter.\n{report}"
                    )))
                }
                // Several adapters share a name (one per backend): take the best of them.
                _ => list
                    .iter()
                    .filter(|a| hits.contains(&a.index))
                    .min_by_key(|a| (a.rank(), a.index))
                    .map(|a| a.index),
            }
        }
    };
    let Some(index) = pick else { return Ok(None) };
    let entry = list.into_iter().find(|a| a.index == index);
    match entry {
        Some(e) if !e.compute => Err(Error::Device(format!(
            "adapter [{}] {} cannot run compute shaders.\n{report}",
            e.index, e.info.name
        ))),
        other => Ok(other),
    }
}
