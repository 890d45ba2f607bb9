//! The Rust side's bindings and uniform blocks against the WGSL, by naga reflection: a binding
//! renumbered or a uniform field moved on one side only fails here, not as garbage on a GPU.
use super::*;

/// Binding names by number, uniform members and offsets, uniform size.
type Tables = (
    &'static [&'static str],
    &'static [(&'static str, usize)],
    usize,
);

/// (shader, source, its tables) for every composed shader.
fn shaders(sources: &Sources) -> Vec<(&'static str, &str, Tables)> {
    let matmul = (
        matmul::BINDINGS,
        matmul::UNIFORM_FIELDS,
        size_of::<matmul::MatmulParams>(),
    );
    let bias = (
        bias_update::BINDINGS,
        bias_update::UNIFORM_FIELDS,
        size_of::<bias_update::BiasParams>(),
    );
    let gather = (
        gather::BINDINGS,
        gather::UNIFORM_FIELDS,
        size_of::<gather::GatherParams>(),
    );
    let reduce = (
        loss_reduce::BINDINGS,
        loss_reduce::UNIFORM_FIELDS,
        size_of::<loss_reduce::ReduceParams>(),
    );
    let ce = (
        cross_entropy::BINDINGS,
        loss_reduce::UNIFORM_FIELDS,
        size_of::<loss_reduce::ReduceParams>(),
    );
    let naive = (
        matmul_naive::BINDINGS,
        matmul_naive::UNIFORM_FIELDS,
        size_of::<[u32; 4]>(),
    );
    sources
        .iter()
        .map(|(name, src)| {
            let (b, f, s) = match name.split(' ').next() {
                Some("matmul") => matmul,
                Some("bias_update") => bias,
                Some("gather") => gather,
                Some("loss_reduce") => reduce,
                Some("cross_entropy") => ce,
                Some("matmul_naive") => naive,
                other => panic!("no binding table for {other:?}"),
            };
            (name, src, (b, f, s))
        })
        .collect()
}

#[test]
fn bindings_and_uniform_blocks_match_the_wgsl() {
    let sources = Sources::embedded();
    let all = shaders(&sources);
    assert_eq!(all.len(), KERNELS.len());
    for (name, src, (bindings, fields, size)) in all {
        let module = naga::front::wgsl::parse_str(src)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
        let mut seen = vec![false; bindings.len()];
        for (_, var) in module.global_variables.iter() {
            let (Some(b), Some(var_name)) = (&var.binding, &var.name) else {
                continue;
            };
            assert_eq!(b.group, 0, "{name}: {var_name} in group {}", b.group);
            let i = b.binding as usize;
            assert_eq!(
                bindings.get(i).copied(),
                Some(var_name.as_str()),
                "{name}: the WGSL binds {var_name} at {i}, the Rust table says {:?}",
                bindings.get(i)
            );
            seen[i] = true;
            if var_name == "params" {
                let naga::TypeInner::Struct { members, span } = &module.types[var.ty].inner else {
                    panic!("{name}: params is not a struct");
                };
                let wgsl: Vec<(&str, usize)> = (members.iter())
                    .map(|m| (m.name.as_deref().unwrap_or(""), m.offset as usize))
                    .collect();
                assert_eq!(wgsl, fields.to_vec(), "{name}: uniform members and offsets");
                assert!(
                    *span as usize <= size && size % 16 == 0,
                    "{name}: the WGSL block is {span} bytes, the Rust one {size}"
                );
            }
        }
        for (i, (&want, seen)) in bindings.iter().zip(&seen).enumerate() {
            assert!(
                want.is_empty() || *seen,
                "{name}: the Rust table binds {want} at {i}, the WGSL declares nothing there"
            );
        }
    }
}

/// No kernel compares a switched-on override with a bare number: every `case` and every
/// `ACT`/`MODE`/`OPT` comparison names its code.
#[test]
fn kernels_switch_on_named_codes_only() {
    for (name, src) in Sources::embedded().iter() {
        for (i, line) in src.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let bare_case = code.trim_start().starts_with("case ")
                && code.trim_start()[5..].starts_with(|c: char| c.is_ascii_digit());
            let bare_cmp = ["ACT", "MODE", "OPT"].iter().any(|o| {
                [" == ", " != "].iter().any(|op| {
                    code.split(&format!("{o}{op}"))
                        .skip(1)
                        .any(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
                })
            });
            assert!(
                !bare_case && !bare_cmp,
                "{name}, line {}: a bare code: {line:?}",
                i + 1
            );
        }
    }
}
