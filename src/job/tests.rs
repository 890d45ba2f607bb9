use super::*;

#[test]
fn default_job_is_valid_and_counts_flops() {
    let j = Job::default();
    j.validate().unwrap();
    // 4*64*1000*100 + 6*64*100*10
    assert_eq!(j.flops_per_epoch(), 25_600_000.0 + 384_000.0);
}

#[test]
fn bad_values_name_their_flag() {
    let j = Job {
        layers: vec![1000, 0, 10],
        ..Job::default()
    };
    assert!(j.validate().unwrap_err().to_string().contains("--layers"));
    let j = Job {
        lr: f32::NAN,
        ..Job::default()
    };
    assert!(j.validate().unwrap_err().to_string().contains("--lr"));
}

#[test]
fn names_parse_and_list_the_valid_choices() {
    assert_eq!(Loss::parse("Half-SSE").unwrap(), Loss::HalfSse);
    assert_eq!(Loss::HalfSse.name(), "half-sse");
    assert_eq!(Activation::parse("none").unwrap(), Activation::None);
    let e = Loss::parse("huber").unwrap_err().to_string();
    assert!(
        e.contains("--loss") && e.contains("sse, mse, half-sse, l1"),
        "{e}"
    );
    assert_eq!(
        InitScheme::parse("constant:0.5").unwrap(),
        InitScheme::Constant(0.5)
    );
    assert_eq!(InitScheme::Constant(0.5).to_string(), "constant:0.5");
    for bad in ["constant:", "constant:x", "constant:inf", "uniform"] {
        let e = InitScheme::parse(bad).unwrap_err().to_string();
        assert!(e.contains("--init-scheme"), "{bad}: {e}");
    }
}

#[test]
fn every_preset_is_valid_and_unknown_ones_list_the_names() {
    for p in PRESETS {
        (p.job)()
            .validate()
            .unwrap_or_else(|e| panic!("{}: {e}", p.name));
    }
    assert_eq!(preset("tutorial").unwrap(), Job::default());
    let e = preset("nope").unwrap_err().to_string();
    assert!(e.contains("--preset") && e.contains("linear-delta"), "{e}");
    // A fixed-data preset refuses sizes its data does not fit.
    let j = Job {
        batch: 2,
        ..preset("linear-delta").unwrap()
    };
    assert!(j.validate().unwrap_err().to_string().contains("--preset"));
}

fn dynamic(layers: &[usize], max: usize) -> Job {
    Job {
        layers: layers.to_vec(),
        dynamic: Some(DynamicDepth {
            max,
            schedule: Vec::new(),
        }),
        ..Job::default()
    }
}

#[test]
fn dynamic_depth_draws_are_seeded_uniform_and_need_a_shared_layer() {
    let j = dynamic(&[6, 4, 4, 2], 3);
    j.validate().unwrap();
    assert_eq!(j.shared_layer(), Some(1));
    assert_eq!(j.applications(0), vec![0, 2]);
    assert_eq!(j.applications(3), vec![0, 1, 1, 1, 2]);
    let draws: Vec<usize> = (0..4000).map(|e| j.uses(e)).collect();
    assert_eq!(draws, (0..4000).map(|e| j.uses(e)).collect::<Vec<_>>());
    for k in 0..=3 {
        let n = draws.iter().filter(|&&u| u == k).count();
        assert!((900..1100).contains(&n), "{k} drawn {n} times of 4000");
    }
    let other = Job {
        seed: 1,
        ..j.clone()
    };
    assert_ne!(
        draws[..64],
        (0..64).map(|e| other.uses(e)).collect::<Vec<_>>()[..]
    );
    // Flops count each use; the mean is over the uniform draw.
    let per_use = 6.0 * 64.0 * 16.0;
    assert_eq!(j.flops_with_uses(2) - j.flops_with_uses(0), 2.0 * per_use);
    assert_eq!(j.flops_per_epoch(), j.flops_with_uses(0) + 1.5 * per_use);
    // A schedule replaces the draws, cycled.
    let s = Job {
        dynamic: Some(DynamicDepth {
            max: 3,
            schedule: vec![2, 0],
        }),
        ..j.clone()
    };
    assert_eq!((0..4).map(|e| s.uses(e)).collect::<Vec<_>>(), [2, 0, 2, 0]);
    for (layers, max) in [
        (&[6, 4, 2][..], 3),
        (&[6, 2][..], 3),
        (&[6, 4, 5, 2][..], 3),
    ] {
        let e = dynamic(layers, max).validate().unwrap_err().to_string();
        assert!(e.contains("--dynamic-depth") && e.contains("hidden"), "{e}");
    }
    for max in [0, MAX_DYNAMIC_DEPTH + 1] {
        let e = dynamic(&[6, 4, 4, 2], max)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--dynamic-depth"), "{e}");
    }
    // A static net applies every layer once.
    assert_eq!(Job::default().applications(0), vec![0, 1]);
    assert_eq!(Job::default().uses(7), 0);
}

#[test]
fn each_epoch_visits_every_row_once_in_a_seeded_order() {
    let j = Job {
        rows: Some(1001),
        batch: 64,
        ..Job::default()
    };
    assert_eq!(j.steps_per_epoch(), 16);
    assert_eq!((j.batch_rows(0), j.last_batch_rows()), (64, 1001 - 15 * 64));
    let (a, b) = (j.order(0), j.order(1));
    for o in [&a, &b] {
        let mut sorted = o.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1001).collect::<Vec<u32>>());
    }
    assert_ne!(a, b, "a new order every epoch");
    assert_ne!(a, (0..1001).collect::<Vec<u32>>(), "shuffled");
    assert_eq!(a, j.order(0), "seeded");
    assert_ne!(
        a,
        Job {
            seed: 1,
            ..j.clone()
        }
        .order(0)
    );
    let plain = Job {
        shuffle: false,
        ..j.clone()
    };
    assert_eq!(plain.order(3), (0..1001).collect::<Vec<u32>>());
    // One batch: the order is the rows' own (it cannot change the math).
    assert_eq!(Job::default().order(5), (0..64).collect::<Vec<u32>>());
    // The epoch's loss: summed for sse, weighted by rows for the means.
    let steps: Vec<f32> = (0..16).map(|i| i as f32).collect();
    assert_eq!(j.epoch_loss(&steps), 120.0);
    let mse = Job {
        loss: Loss::Mse,
        ..j.clone()
    };
    let want = (0..15).map(|i| i as f32 * 64.0).sum::<f32>() + 15.0 * 41.0;
    assert_eq!(mse.epoch_loss(&steps), want / 1001.0);
    assert_eq!(mse.epoch_loss(&[2.5]), 2.5);
}

#[test]
fn loss_scales_and_gradient_coefficients() {
    let sg = |l: Loss| (l.scale(2, 4), l.grad_coef(2, 4));
    assert_eq!(sg(Loss::Sse), (1.0, 2.0));
    assert_eq!(sg(Loss::HalfSse), (0.5, 1.0));
    assert_eq!(sg(Loss::Mse), (0.125, 0.25));
    assert_eq!(sg(Loss::L1), (0.125, 0.125));
    // Cross-entropy is a mean over rows.
    assert_eq!(sg(Loss::CrossEntropy), (0.5, 0.5));
}
