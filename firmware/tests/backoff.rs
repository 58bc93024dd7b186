//! Reconnect backoff: bounds, growth, cap, reset and jitter.

use tether_firmware::backoff::{Backoff, BackoffConfig};

const CONFIG: BackoffConfig = BackoffConfig {
    initial_ms: 500,
    max_ms: 60_000,
};

#[test]
fn every_delay_lies_between_half_the_ceiling_and_the_ceiling() {
    for seed in [0, 1, 42, 0xDEAD_BEEF, u32::MAX] {
        let mut b = Backoff::new(CONFIG, seed);
        for _ in 0..40 {
            let ceiling = b.ceiling();
            let d = b.next_delay();
            assert!(
                (ceiling / 2..=ceiling).contains(&d),
                "seed {seed}: {d} outside [{}, {ceiling}]",
                ceiling / 2
            );
            assert!(d <= CONFIG.max_ms);
        }
    }
}

#[test]
fn ceiling_doubles_then_stays_at_the_maximum() {
    let mut b = Backoff::new(CONFIG, 7);
    let mut ceilings = Vec::new();
    for _ in 0..10 {
        ceilings.push(b.ceiling());
        b.next_delay();
    }
    assert_eq!(
        ceilings,
        [
            500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000
        ]
    );
}

#[test]
fn extreme_random_words_hit_the_bounds_exactly() {
    let mut b = Backoff::new(CONFIG, 1);
    assert_eq!(
        b.next_delay_with(0),
        250,
        "smallest: half the first ceiling"
    );
    let mut b = Backoff::new(CONFIG, 1);
    assert_eq!(b.next_delay_with(250), 500, "largest: the first ceiling");
}

#[test]
fn hundreds_of_failures_never_overflow() {
    let mut b = Backoff::new(
        BackoffConfig {
            initial_ms: u32::MAX,
            max_ms: u32::MAX,
        },
        3,
    );
    for _ in 0..300 {
        let d = b.next_delay_with(u32::MAX);
        assert!(d >= u32::MAX / 2);
    }
    assert_eq!(b.failures(), u8::MAX, "the counter saturates");
}

#[test]
fn reset_starts_over() {
    let mut b = Backoff::new(CONFIG, 9);
    for _ in 0..5 {
        b.next_delay();
    }
    b.reset();
    assert_eq!(b.failures(), 0);
    assert_eq!(b.ceiling(), 500);
}

#[test]
fn same_seed_same_delays_different_seeds_spread_out() {
    let run = |seed| {
        let mut b = Backoff::new(CONFIG, seed);
        (0..8).map(|_| b.next_delay()).collect::<Vec<_>>()
    };
    assert_eq!(run(1234), run(1234));
    assert_ne!(run(1234), run(4321));
    // A fleet reconnecting after the same outage does not come back together.
    let firsts: std::collections::BTreeSet<u32> = (1..=50)
        .map(|seed| Backoff::new(CONFIG, seed).next_delay())
        .collect();
    assert!(
        firsts.len() > 25,
        "only {} distinct first delays",
        firsts.len()
    );
}
