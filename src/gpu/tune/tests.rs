use super::*;
use crate::wait::block_on;

/// The candidates of these tests.
const THREE: [Block; 3] = [Block::B4x4, Block::B8x8, Block::B16x16];

fn parity(passed: bool) -> Parity {
    Parity {
        error: if passed { 0.0 } else { 1.0 },
        tolerance: 1e-6,
        passed,
    }
}

/// [`search`] of [`THREE`] with plain closures.
fn search_with(
    default: Block,
    check: impl Fn(Block) -> Parity,
    time: impl Fn(Block) -> Vec<f64>,
) -> Result<(Block, Vec<Measured>)> {
    block_on(search(
        &THREE,
        default,
        async |b| Ok(check(b)),
        async |b| Ok(time(b)),
    ))
}

#[test]
fn search_never_chooses_a_variant_that_failed_its_check() {
    // 4x4 is the fastest but wrong: 16x16, the fastest correct one, is chosen.
    let (best, measured) = search_with(
        Block::B8x8,
        |b| parity(b != Block::B4x4),
        |b| match b {
            Block::B4x4 => vec![0.1; 3],
            Block::B8x8 => vec![3.0; 3],
            Block::B16x16 => vec![2.0; 3],
            _ => unreachable!("not a candidate"),
        },
    )
    .unwrap();
    assert_eq!(best, Block::B16x16);
    assert_eq!(
        measured[0].seconds, None,
        "a failed variant is not even timed"
    );
    let none = search_with(Block::B8x8, |_| parity(false), |_| vec![1.0]);
    assert!(none.is_err());
}

#[test]
fn search_keeps_the_default_unless_another_variant_wins_beyond_the_noise() {
    // 8x8 is 7% faster by the medians, but the default's samples spread 10%: kept.
    let times = |b: Block| match b {
        Block::B4x4 => vec![5.0, 5.0, 5.0],
        Block::B8x8 => vec![1.85, 1.86, 1.87],
        Block::B16x16 => vec![1.9, 2.0, 2.1],
        _ => unreachable!("not a candidate"),
    };
    let pass = |_| parity(true);
    let (b, _) = search_with(Block::B16x16, pass, times).unwrap();
    assert_eq!(b, Block::B16x16);
    // Twice as fast, well beyond the spread: chosen.
    let faster = |b: Block| match b {
        Block::B8x8 => vec![0.95, 1.0, 1.05],
        other => times(other),
    };
    let (b, _) = search_with(Block::B16x16, pass, faster).unwrap();
    assert_eq!(b, Block::B8x8);
    // A default that fails its check gives way to the fastest correct variant.
    let (b, _) = search_with(Block::B16x16, |b| parity(b != Block::B16x16), times).unwrap();
    assert_eq!(b, Block::B8x8);
}

#[test]
fn layout_choice_keeps_the_rule_unless_another_layout_wins_beyond_the_noise() {
    let (t, b) = (Layout::Texels, Layout::Buffer);
    // Buffer 5% faster, but the samples spread 10%: the rule's texels stay.
    let close = [(t, vec![1.0, 1.05, 1.1]), (b, vec![0.95, 1.0, 1.0])];
    assert_eq!(choose_layout(t, &close).0, t);
    // Buffer twice as fast: chosen, with both timed.
    let far = [(t, vec![2.0, 2.1, 2.2]), (b, vec![1.0, 1.0, 1.05])];
    let (choice, measured) = choose_layout(t, &far);
    assert_eq!(choice, b);
    assert_eq!(measured.len(), 2);
    assert_eq!(measured[0].seconds, 2.1);
    // Only one layout measured: that one.
    assert_eq!(choose_layout(t, &[(b, vec![1.0])]).0, b);
}

#[test]
fn parity_catches_nan_and_wrong_values() {
    let want = [1.0f32, 2.0, 3.0];
    let scale = [1.0f32, 2.0, 3.0];
    assert!(Parity::of(&want, &want, &scale, 10).passed);
    assert!(!Parity::of(&[1.0, f32::NAN, 3.0], &want, &scale, 10).passed);
    assert!(!Parity::of(&[1.0, 2.001, 3.0], &want, &scale, 10).passed);
    let close = [1.0, 2.0 + 2.0 * f32::EPSILON, 3.0];
    assert!(Parity::of(&close, &want, &scale, 10).passed);
}

fn id() -> AdapterId {
    AdapterId {
        name: "A".into(),
        vendor: 1,
        device: 2,
        backend: "vulkan".into(),
        driver: "d".into(),
        driver_info: "1.0".into(),
    }
}

#[test]
fn cache_is_ignored_when_corrupt_stale_or_foreign() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.json");
    assert_eq!(
        read_cache(&path, &id()),
        Ok(None),
        "no file: nothing, no error"
    );
    std::fs::write(&path, "{ not json").unwrap();
    assert!(read_cache(&path, &id()).unwrap_err().contains("corrupt"));
    let good = CacheFile {
        format: CACHE_FORMAT.into(),
        version: CACHE_VERSION,
        tool_version: "0".into(),
        kernels: kernels_hash(),
        adapter: id(),
        layout: None,
        entries: vec![Entry {
            layout: Layout::Texels,
            trans_a: true,
            trans_b: false,
            m: 1000,
            n: 100,
            k: 64,
            block: Block::B8x8,
            measured: vec![],
        }],
    };
    let write = |f: &CacheFile| std::fs::write(&path, serde_json::to_string(f).unwrap()).unwrap();
    write(&good);
    let read = read_cache(&path, &id()).unwrap().unwrap();
    assert_eq!(read, good);
    let table = Table::from_entries(&read.entries);
    let texels = Layout::Texels;
    let got = table.get(texels, (true, false), (1000, 100, 64));
    assert_eq!(got, Some(Block::B8x8));
    assert_eq!(
        table.get(texels, (true, false), (999, 99, 63)),
        Some(Block::B8x8),
        "padded shapes"
    );
    assert_eq!(table.get(texels, (false, false), (1000, 100, 64)), None);
    assert_eq!(
        table.get(Layout::Buffer, (true, false), (1000, 100, 64)),
        None,
        "a choice for another layout"
    );
    write(&CacheFile {
        kernels: "0".into(),
        ..good.clone()
    });
    assert!(read_cache(&path, &id())
        .unwrap_err()
        .contains("other kernels"));
    write(&CacheFile {
        version: CACHE_VERSION + 1,
        ..good.clone()
    });
    assert!(read_cache(&path, &id()).unwrap_err().contains("version"));
    write(&good);
    let other = AdapterId {
        driver_info: "2.0".into(),
        ..id()
    };
    assert!(read_cache(&path, &other)
        .unwrap_err()
        .contains("driver d 1.0"));
}

#[test]
fn merge_replaces_the_same_shapes_and_keeps_the_measured_layout() {
    let entry = |layout, m, block| Entry {
        layout,
        trans_a: false,
        trans_b: false,
        m,
        n: 100,
        k: 1000,
        block,
        measured: vec![],
    };
    let choice = |layout| LayoutChoice {
        layout,
        job: "[1000, 100, 10] batch 64".into(),
        measured: vec![],
    };
    let old = merge(
        id(),
        None,
        &[
            entry(Layout::Buffer, 64, Block::B4x4),
            entry(Layout::Texels, 64, Block::B8x8),
        ],
        Some(choice(Layout::Buffer)),
    );
    let text = serde_json::to_string(&old).unwrap();
    let old = parse_cache(&text, &id()).expect("a merged tuning is a current cache file");
    // 63 pads to 64: the same shape, replaced; another shape is added; no layout given keeps
    // the old choice.
    let new = merge(
        id(),
        Some(old),
        &[
            entry(Layout::Buffer, 63, Block::B16x16),
            entry(Layout::Buffer, 32, Block::B8x8),
        ],
        None,
    );
    assert_eq!(new.entries.len(), 3, "{:?}", new.entries);
    let table = Table::of_file(&new);
    let dims = |m| (m, 100, 1000);
    assert_eq!(
        table.get(Layout::Buffer, (false, false), dims(64)),
        Some(Block::B16x16)
    );
    assert_eq!(
        table.get(Layout::Texels, (false, false), dims(64)),
        Some(Block::B8x8)
    );
    assert_eq!(
        table.get(Layout::Buffer, (false, false), dims(32)),
        Some(Block::B8x8)
    );
    assert_eq!(table.layout, Some(Layout::Buffer));
    let newer = merge(id(), Some(new), &[], Some(choice(Layout::Texels)));
    assert_eq!(Table::of_file(&newer).layout, Some(Layout::Texels));
}

/// A failed check's infinite error is written as JSON's null and read back infinite (a cache or
/// a bench result holding one stays readable).
#[test]
fn an_infinite_parity_round_trips_through_json() {
    let p = Parity::of_ratio(f64::INFINITY, 10);
    let text = serde_json::to_string(&p).unwrap();
    assert!(text.contains("null"), "{text}");
    let back: Parity = serde_json::from_str(&text).unwrap();
    assert_eq!(back.error, f64::INFINITY);
    assert!(!back.passed);
}
