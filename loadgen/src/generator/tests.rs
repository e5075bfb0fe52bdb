//! Generators against their analytic laws, with fixed seeds.
//!
//! Two laws matter for the zipfian. Zipf's law gives rank i the probability
//! (i+1)^-theta / zeta(n, theta). Gray et al.'s generator (YCSB's) draws ranks 0 and 1 exactly
//! and the others through a continuous approximation whose exact probabilities
//! [`Zipfian::generator_probability`] computes. The tests check (1) the samples against the
//! generator's exact law within sampling error, and (2) the generator's law against Zipf's law
//! within the approximation's stated error: ranks 0 and 1 exact, ranks 2..10 at most 20% above,
//! the top-100 share within 3.5%.
//!
//! Sampling tolerance: with `DRAWS` samples a frequency p has a standard deviation of
//! sqrt(p(1-p)/DRAWS); the bounds below are at least 5 standard deviations wide.

use std::collections::HashMap;

use rand::{SeedableRng, rngs::SmallRng};

use super::keys::Hotspot;
use super::zipfian::{Latest, SCRAMBLED_ITEM_COUNT, ScrambledZipfian, Zipfian, fnv_hash64, zeta};
use super::*;
use crate::scenario::{Distribution, WorkloadSpec};

const DRAWS: usize = 2_000_000;

fn counts(mut draw: impl FnMut() -> u64) -> HashMap<u64, u64> {
    let mut m = HashMap::new();
    for _ in 0..DRAWS {
        *m.entry(draw()).or_insert(0) += 1;
    }
    m
}

fn freq(m: &HashMap<u64, u64>, k: u64) -> f64 {
    *m.get(&k).unwrap_or(&0) as f64 / DRAWS as f64
}

/// Checks the top ranks' observed frequencies against the generator's exact law (within 4%,
/// at least 5 standard deviations for these ranks), and that law against Zipf's (the
/// approximation's documented error).
fn check_zipf_profile(items: u64, observed: impl Fn(u64) -> f64, law: &Zipfian) {
    for rank in 0..10 {
        let exact = law.generator_probability(rank);
        let got = observed(rank);
        assert!(
            (got - exact).abs() <= 0.04 * exact,
            "items {items}, rank {rank}: frequency {got:.5}, generator law {exact:.5}"
        );
        let zipf = law.probability(rank);
        if rank < 2 {
            assert!((exact - zipf).abs() < 1e-12, "rank {rank} must be exact");
        } else {
            assert!(
                exact >= zipf && exact <= 1.2 * zipf,
                "rank {rank}: {exact} vs Zipf {zipf}"
            );
        }
    }
    let zipf: f64 = (0..100).map(|r| law.probability(r)).sum();
    let exact: f64 = (0..100).map(|r| law.generator_probability(r)).sum();
    let got: f64 = (0..100).map(&observed).sum();
    assert!(
        (got - exact).abs() <= 0.01 * exact,
        "items {items}: top-100 share {got:.4} vs {exact:.4}"
    );
    assert!(
        (exact - zipf).abs() <= 0.035 * zipf,
        "items {items}: top-100 {exact:.4} vs Zipf {zipf:.4}"
    );
}

#[test]
fn zipfian_follows_the_law_for_1000_and_1000000_items() {
    for items in [1_000u64, 1_000_000] {
        let z = Zipfian::new(items, 0.99);
        let mut rng = SmallRng::seed_from_u64(7);
        let c = counts(|| z.next(&mut rng));
        assert!(c.keys().all(|&k| k < items));
        check_zipf_profile(items, |r| freq(&c, r), &z);
    }
    // The hottest item's analytic share, as a reader would check by hand: 1 / zeta(n, 0.99).
    assert!((Zipfian::new(1_000, 0.99).probability(0) - 1.0 / zeta(1_000, 0.99)).abs() < 1e-15);
}

#[test]
fn scrambled_zipfian_keeps_the_profile_and_scatters_hot_keys() {
    // As YCSB: ranks follow the zipfian law over 10^10 items and are hashed into the records, so
    // record r's probability is the sum of the probabilities of the ranks hashed onto it. The
    // first 10^6 ranks are summed exactly; the remaining mass (ranks hashed near-uniformly) is
    // spread evenly over the records.
    let records = 1_000u64;
    let s = ScrambledZipfian::new(records, 0.99);
    let law = s.law();
    assert_eq!(law.items(), SCRAMBLED_ITEM_COUNT);
    let exact_ranks = 1_000_000u64;
    let mut expected = vec![0.0f64; records as usize];
    let mut head = 0.0;
    for rank in 0..exact_ranks {
        let p = law.generator_probability(rank);
        expected[(fnv_hash64(rank) % records) as usize] += p;
        head += p;
    }
    for e in &mut expected {
        *e += (1.0 - head) / records as f64;
    }

    let mut rng = SmallRng::seed_from_u64(11);
    let c = counts(|| s.next(&mut rng));
    assert!(c.keys().all(|&k| k < records));

    let mut by_expected: Vec<u64> = (0..records).collect();
    by_expected.sort_by(|a, b| expected[*b as usize].total_cmp(&expected[*a as usize]));
    for &r in &by_expected[..10] {
        let (got, want) = (freq(&c, r), expected[r as usize]);
        assert!(
            (got - want).abs() <= 0.03 * want,
            "record {r}: {got:.5} vs law {want:.5}"
        );
    }
    // The hottest record is where rank 0 lands, and holds rank 0's share of the law.
    let hottest = by_expected[0];
    assert_eq!(hottest, s.item_of_rank(0));
    assert!(freq(&c, hottest) >= 0.97 * law.probability(0));
    // Scattered: the ten hottest records are not clustered at the start of the key space.
    let mut top: Vec<u64> = by_expected[..10].to_vec();
    top.sort_unstable();
    assert!(
        top[9] - top[0] > records / 2,
        "hot records {top:?} are clustered"
    );
}

#[test]
fn latest_makes_the_newest_records_hottest() {
    let records = 10_000u64;
    let mut l = Latest::new(records, 0.99);
    let mut rng = SmallRng::seed_from_u64(5);
    let c = counts(|| l.next(&mut rng, records));
    let law = Zipfian::new(records, 0.99);
    check_zipf_profile(records, |k| freq(&c, records - 1 - k), &law);

    // After inserts, the newest record is the hottest one.
    let grown = records + 500;
    let mut rng = SmallRng::seed_from_u64(6);
    let c = counts(|| l.next(&mut rng, grown));
    let law = Zipfian::new(grown, 0.99);
    let got = freq(&c, grown - 1);
    let want = law.generator_probability(0);
    assert!((got - want).abs() <= 0.02 * want, "newest: {got} vs {want}");
}

#[test]
fn hotspot_sends_the_op_fraction_to_the_hot_set() {
    let h = Hotspot::new(10_000, 0.2, 0.8);
    assert_eq!(h.hot_records(), 2_000);
    let mut rng = SmallRng::seed_from_u64(9);
    let c = counts(|| h.next(&mut rng));
    let hot: u64 = c.iter().filter(|(k, _)| **k < 2_000).map(|(_, n)| n).sum();
    let share = hot as f64 / DRAWS as f64;
    assert!((share - 0.8).abs() < 0.003, "hot share {share}");
    // Uniform inside each set: per-record frequency 0.8/2000 hot, 0.2/8000 cold (within 15%,
    // about 6 standard deviations at 800 and 50 expected draws per record... taken over
    // averages of 100 records to keep the bound tight).
    let avg = |lo: u64, hi: u64| (lo..hi).map(|k| freq(&c, k)).sum::<f64>() / (hi - lo) as f64;
    assert!((avg(0, 100) - 0.8 / 2000.0).abs() < 0.05 * 0.8 / 2000.0);
    assert!((avg(5_000, 5_100) - 0.2 / 8000.0).abs() < 0.1 * 0.2 / 8000.0);
}

fn spec(distribution: Distribution) -> WorkloadSpec {
    WorkloadSpec {
        record_count: 1000,
        read: 0.5,
        update: 0.2,
        insert: 0.1,
        delete: 0.1,
        read_modify_write: 0.1,
        distribution,
        ..WorkloadSpec::default()
    }
}

#[test]
fn same_seed_same_sequence() {
    for d in [
        Distribution::Uniform,
        Distribution::Zipfian,
        Distribution::Latest,
        Distribution::Hotspot,
    ] {
        let w = spec(d);
        let run = |seed: u64, worker: u64| {
            let space = Arc::new(KeySpace::new(w.record_count, &w.key_prefix));
            let mut g = OpGenerator::new(&w, seed, worker, ValuePool::new(2048, seed), space);
            (0..2_000)
                .map(|_| {
                    let op = g.next_op();
                    (op.kind, op.key, op.value.map(|v| v.len()))
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42, 0), run(42, 0), "{d:?}: same seed, same worker");
        assert_ne!(run(42, 0), run(43, 0), "{d:?}: another seed");
        assert_ne!(run(42, 0), run(42, 1), "{d:?}: another worker");
    }
}

#[test]
fn op_mix_follows_the_shares() {
    let w = spec(Distribution::Uniform);
    let mix = OpMix::new(&w);
    let mut rng = SmallRng::seed_from_u64(1);
    let mut n = [0u64; 5];
    for _ in 0..DRAWS {
        n[mix.next(&mut rng).index()] += 1;
    }
    for (k, want) in [(0, 0.5), (1, 0.2), (2, 0.1), (3, 0.1), (4, 0.1)] {
        let got = n[k] as f64 / DRAWS as f64;
        assert!((got - want).abs() < 0.002, "kind {k}: {got} vs {want}");
    }
    assert_eq!(mix.kinds().len(), 5);
    let reads_only = WorkloadSpec {
        read: 1.0,
        update: 0.0,
        insert: 0.0,
        delete: 0.0,
        read_modify_write: 0.0,
        ..w
    };
    assert_eq!(OpMix::new(&reads_only).kinds(), vec![OpKind::Read]);
}

#[test]
fn inserts_extend_the_key_space() {
    let w = WorkloadSpec {
        read: 0.0,
        update: 0.0,
        insert: 1.0,
        record_count: 10,
        ..WorkloadSpec::default()
    };
    let space = Arc::new(KeySpace::new(10, "user"));
    let mut g = OpGenerator::new(&w, 1, 0, ValuePool::new(1024, 1), space.clone());
    let keys: Vec<String> = (0..3).map(|_| g.next_op().key).collect();
    assert_eq!(keys, ["user10", "user11", "user12"]);
    assert_eq!(space.count(), 13);
}
