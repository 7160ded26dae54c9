//! Unit tests for the timer stores: the edge cases by name. The random differential tests against
//! [`ReferenceTimers`] are in `engine/tests/timer_props.rs`.

use super::*;

const EDGES: [Timestamp; 6] = [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX];

/// Polls until nothing is due at `now`; checks the invariants after every step.
fn drain(w: &mut TimerWheel, now: Timestamp) -> Vec<(KeyId, Timestamp)> {
    let mut out = Vec::new();
    while let Some(t) = w.poll(now) {
        w.assert_invariants();
        out.push((t.key, t.timestamp));
    }
    w.assert_invariants();
    out
}

/// A deterministic pseudo-random sequence (splitmix64).
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn extreme_timestamps_fire_in_order() {
    let mut w = TimerWheel::new();
    assert_eq!(w.current_time(), i64::MIN);
    assert_eq!(w.peek_timestamp(), None);
    for (key, &ts) in EDGES.iter().enumerate().rev() {
        assert_eq!(w.register(key as KeyId, ts), Ok(true));
        w.assert_invariants();
    }
    assert_eq!(w.len(), 6);
    assert_eq!(w.peek_timestamp(), Some(i64::MIN));
    // MIN is due at MIN, nothing else is.
    assert_eq!(drain(&mut w, i64::MIN), [(0, i64::MIN)]);
    assert_eq!(w.peek_timestamp(), Some(i64::MIN + 1));
    assert_eq!(drain(&mut w, -2), [(1, i64::MIN + 1)]);
    assert_eq!(drain(&mut w, 0), [(2, -1), (3, 0)]);
    assert_eq!(w.peek_timestamp(), Some(i64::MAX - 1));
    assert_eq!(drain(&mut w, i64::MAX - 2), []);
    assert_eq!(drain(&mut w, i64::MAX), [(4, i64::MAX - 1), (5, i64::MAX)]);
    assert_eq!(w.current_time(), i64::MAX);
    assert!(w.is_empty());
    // At the end of time, everything registered is overdue or at MAX, and still fires.
    for (key, &ts) in EDGES.iter().enumerate() {
        w.register(key as KeyId, ts).unwrap();
    }
    let all: Vec<_> = EDGES.iter().enumerate().map(|(k, &ts)| (k as KeyId, ts)).collect();
    assert_eq!(drain(&mut w, i64::MAX), all);
}

#[test]
fn duplicates_contains_and_counts() {
    let mut w = TimerWheel::new();
    assert_eq!(w.register(1, 10), Ok(true));
    assert_eq!(w.register(1, 10), Ok(false));
    assert_eq!(w.register(2, 10), Ok(true));
    assert_eq!(w.register(1, 11), Ok(true));
    assert!(w.contains(1, 10) && w.contains(2, 10) && w.contains(1, 11));
    assert!(!w.contains(2, 11) && !w.contains(3, 10));
    assert_eq!((w.len(), w.count_for_key(1), w.count_for_key(2), w.count_for_key(9)), (3, 2, 1, 0));
    assert_eq!(w.timers_for_key(1), [10, 11]);
    assert!(!w.delete(2, 11), "deleting a timer that does not exist is a no-op");
    assert!(w.delete(1, 10));
    assert!(!w.delete(1, 10));
    assert!(!w.contains(1, 10));
    w.assert_invariants();
    assert_eq!(drain(&mut w, 20), [(2, 10), (1, 11)]);
    assert!(!w.delete(2, 10), "deleting a fired timer is a no-op");
    // Registering after it fired creates it again.
    assert_eq!(w.register(2, 10), Ok(true));
    assert_eq!(drain(&mut w, 20), [(2, 10)]);
}

#[test]
fn registering_below_the_current_time_fires_at_the_next_poll() {
    let mut w = TimerWheel::new();
    assert_eq!(drain(&mut w, 100), []);
    assert_eq!(w.current_time(), 100);
    w.register(1, 101).unwrap();
    w.register(2, 50).unwrap(); // below the watermark: overdue
    w.register(3, 100).unwrap(); // at the watermark
    w.register(4, 50).unwrap();
    w.register(5, i64::MIN).unwrap();
    w.assert_invariants();
    assert_eq!(w.peek_timestamp(), Some(i64::MIN));
    // Registering never fires; the next poll fires everything <= now, smallest first.
    assert_eq!(drain(&mut w, 100), [(5, i64::MIN), (2, 50), (4, 50), (3, 100)]);
    assert_eq!(drain(&mut w, 101), [(1, 101)]);
}

#[test]
fn a_clock_going_back_fires_only_what_is_due() {
    let mut w = TimerWheel::new();
    drain(&mut w, 1_000);
    w.register(1, 900).unwrap();
    w.register(2, 950).unwrap();
    w.register(3, 1_500).unwrap();
    assert_eq!(drain(&mut w, 800), []);
    assert_eq!(w.current_time(), 1_000, "the store's time never goes back");
    assert_eq!(drain(&mut w, 920), [(1, 900)]);
    assert_eq!(drain(&mut w, 2_000), [(2, 950), (3, 1_500)]);
}

#[test]
fn re_registering_the_firing_timestamp_fires_it_again_in_the_same_loop() {
    // docs/semantics.md S09, with other timers at the same instant: the re-registration goes to the back.
    let mut w = TimerWheel::new();
    for key in [1, 2, 3] {
        w.register(key, 10).unwrap();
    }
    let mut fired = Vec::new();
    let mut again = true;
    while let Some(t) = w.poll(10) {
        fired.push((t.key, t.timestamp));
        if t.key == 1 && std::mem::take(&mut again) {
            assert_eq!(w.register(1, 10), Ok(true), "it fired, so this is a new timer");
        }
        w.assert_invariants();
    }
    assert_eq!(fired, [(1, 10), (2, 10), (3, 10), (1, 10)]);

    // Alone in its slot, and far away (the first timer after a jump): the same.
    for ts in [10_000, i64::MAX - 1] {
        let mut w = TimerWheel::new();
        w.register(7, ts).unwrap();
        let mut n = 0;
        while let Some(t) = w.poll(ts) {
            n += 1;
            if n < 3 {
                w.register(t.key, t.timestamp).unwrap();
            }
        }
        assert_eq!(n, 3);
        w.assert_invariants();
    }
}

#[test]
fn timers_registered_while_firing_follow_timestamp_order() {
    // S07: t+1 registered in on_timer fires within the same advance; a smaller timestamp
    // registered while firing fires next.
    let mut w = TimerWheel::new();
    w.register(1, 10).unwrap();
    w.register(2, 70).unwrap();
    let mut fired = Vec::new();
    while let Some(t) = w.poll(100) {
        fired.push((t.key, t.timestamp));
        match (t.key, t.timestamp) {
            (1, 10) => {
                w.register(1, 11).unwrap();
                w.register(1, 5_000).unwrap(); // beyond now: waits
            }
            (1, 11) => {
                w.register(1, 12).unwrap();
            }
            (2, 70) => {
                w.register(3, 20).unwrap(); // smaller than the one just fired
                w.register(3, 70).unwrap(); // the same instant, another key
                w.register(3, 71).unwrap();
            }
            _ => {}
        }
        w.assert_invariants();
    }
    assert_eq!(fired, [(1, 10), (1, 11), (1, 12), (2, 70), (3, 20), (3, 70), (3, 71)]);
    assert_eq!(w.peek_timestamp(), Some(5_000));
}

#[test]
fn delete_during_firing_of_the_same_slot() {
    let mut w = TimerWheel::new();
    for key in 0..6 {
        w.register(key, 1_000).unwrap();
    }
    w.register(9, 1_001).unwrap();
    let mut fired = Vec::new();
    while let Some(t) = w.poll(2_000) {
        fired.push(t.key);
        if t.key == 0 {
            assert!(w.delete(1, 1_000), "the next one in the slot");
            assert!(w.delete(4, 1_000));
            assert!(w.delete(5, 1_000), "the last one in the slot");
            assert!(!w.delete(0, 1_000), "the one firing is no longer pending");
            assert!(w.delete(9, 1_001));
        }
        w.assert_invariants();
    }
    assert_eq!(fired, [0, 2, 3]);
    assert!(w.is_empty());
}

#[test]
fn deleting_the_earliest_timer_of_a_coarse_slot_keeps_peek_exact() {
    let mut w = TimerWheel::new();
    drain(&mut w, 0);
    // 1000 and 1003 share a level-1 slot; 70_000 is on level 2.
    for (key, ts) in [(1, 1_003), (2, 1_000), (3, 70_000), (4, 1_000)] {
        w.register(key, ts).unwrap();
    }
    assert_eq!(w.peek_timestamp(), Some(1_000));
    assert!(w.delete(2, 1_000));
    assert_eq!(w.peek_timestamp(), Some(1_000), "another timer has the same timestamp");
    assert!(w.delete(4, 1_000));
    w.assert_invariants();
    assert_eq!(w.peek_timestamp(), Some(1_003));
    w.register(5, 1_001).unwrap();
    assert_eq!(w.peek_timestamp(), Some(1_001));
    assert_eq!(w.delete_all_for_key(5), 1);
    assert_eq!(w.peek_timestamp(), Some(1_003));
    assert!(w.delete(1, 1_003));
    assert_eq!(w.peek_timestamp(), Some(70_000));
    w.assert_invariants();
    assert_eq!(drain(&mut w, 100_000), [(3, 70_000)]);
}

#[test]
fn delete_all_for_key_across_tiers() {
    let mut w = TimerWheel::new();
    drain(&mut w, 1_000_000);
    let mine = [5, 999_999, 1_000_000, 1_000_001, 1_070_000, 1 << 40, i64::MAX - 1, i64::MAX];
    for &ts in &mine {
        w.register(3, ts).unwrap();
        w.register(4, ts).unwrap();
    }
    w.register(3, 1_000_001).unwrap();
    w.assert_invariants();
    assert_eq!(w.count_for_key(3), mine.len());
    assert_eq!(w.timers_for_key(3), mine);
    assert_eq!(w.delete_all_for_key(3), mine.len());
    assert_eq!(w.delete_all_for_key(3), 0);
    assert_eq!(w.delete_all_for_key(77), 0);
    w.assert_invariants();
    assert_eq!((w.count_for_key(3), w.timers_for_key(3), w.len()), (0, vec![], mine.len()));
    let fired = drain(&mut w, i64::MAX);
    assert_eq!(fired, mine.iter().map(|&ts| (4, ts)).collect::<Vec<_>>());
}

#[test]
fn a_jump_from_min_to_max_fires_the_whole_axis_in_order() {
    let mut w = TimerWheel::new();
    let mut reference = ReferenceTimers::new();
    let mut state = 7;
    for i in 0..20_000u32 {
        let r = splitmix(&mut state);
        // Uniform over the axis, clustered near 0, clustered near the extremes, or repeated.
        let ts = match i % 4 {
            0 => r as i64,
            1 => (r % 100_000) as i64 - 50_000,
            2 => EDGES[(r % 6) as usize],
            _ => [17, 1 << 37, -(1 << 50)][(r % 3) as usize],
        };
        let key = (r >> 40) as KeyId % 64;
        assert_eq!(w.register(key, ts), reference.register(key, ts));
    }
    w.assert_invariants();
    assert_eq!(w.len(), reference.len());
    let mut expected = Vec::new();
    while let Some(t) = reference.poll(i64::MAX) {
        expected.push((t.key, t.timestamp));
    }
    let mut fired = Vec::new();
    while let Some(t) = w.poll(i64::MAX) {
        fired.push((t.key, t.timestamp));
    }
    w.assert_invariants();
    assert_eq!(fired, expected);
}

#[test]
fn a_million_coalesced_timers_fire_in_registration_order() {
    const N: u32 = if cfg!(miri) { 1_000 } else { 1_000_000 };
    // At the current instant (level 0), an hour ahead (a coarse slot, cascaded) and at the end of
    // time (the far tier, spliced).
    for ts in [0, 3_600_000, i64::MAX - 1] {
        let mut w = TimerWheel::new();
        drain(&mut w, 0);
        // A permutation of 0..N: the multiplier is coprime with N.
        let key_of = |i: u32| (u64::from(i) * 2_654_435_761 % u64::from(N)) as KeyId;
        for i in 0..N {
            assert_eq!(w.register(key_of(i), ts), Ok(true));
        }
        assert_eq!(w.register(key_of(N / 2), ts), Ok(false));
        assert_eq!((w.len(), w.peek_timestamp()), (N as usize, Some(ts)));
        // 28 B per node + the dedup table + 8 B per key id, at their capacities (Vec and table
        // growth leave up to half unused): a regression guard against per-timer allocations.
        let bytes = w.memory_bytes() as f64 / f64::from(N);
        assert!(bytes < 80.0, "{bytes} bytes per timer");
        assert_eq!(w.poll(ts - 1), None);
        for i in 0..N {
            let t = w.poll(i64::MAX).expect("pending");
            assert_eq!((t.key, t.timestamp), (key_of(i), ts));
        }
        assert_eq!(w.poll(i64::MAX), None);
        assert!(w.is_empty());
        w.assert_invariants();
    }
}

#[test]
fn equal_timestamps_stay_fifo_through_cascades_and_migration() {
    // The same timestamp registered at different wheel times: first far away (far tier), then
    // from inside its block (a coarse slot), then from close by (level 0), then after a delete.
    let t: Timestamp = (1 << 40) + 12_345;
    let mut w = TimerWheel::new();
    drain(&mut w, 0);
    w.register(1, t).unwrap();
    w.register(2, t).unwrap();
    drain(&mut w, (1 << 40) - 5); // enters the block: the far list is spliced in
    w.register(3, t).unwrap();
    w.register(4, t - 1).unwrap();
    drain(&mut w, t - 70); // cascades
    w.register(5, t).unwrap();
    assert!(w.delete(1, t));
    w.register(1, t).unwrap(); // a new registration: at the back
    drain(&mut w, t - 1);
    w.register(6, t).unwrap();
    assert_eq!(drain(&mut w, t), [(2, t), (3, t), (5, t), (1, t), (6, t)]);
}

#[test]
fn an_idle_jump_keeps_registrations_near_the_clock_on_the_wheel() {
    // Processing time: the first poll moves from MIN to "now"; timers a minute ahead must not
    // end up in the far tier, and firing them must not depend on the jump.
    let now = 1_700_000_000_000;
    let mut w = TimerWheel::new();
    assert_eq!(w.poll(now), None);
    for key in 0..100 {
        w.register(key, now + 60_000 + i64::from(key % 7)).unwrap();
    }
    w.assert_invariants();
    assert!(format!("{w:?}").contains("far_lists: 0"), "{w:?}");
    let fired = drain(&mut w, now + 60_010);
    assert_eq!(fired.len(), 100);
    assert!(fired.windows(2).all(|p| p[0].1 <= p[1].1));
}

#[test]
fn capacity_exceeded_is_an_error_and_leaves_the_store_unchanged() {
    let mut w = TimerWheel::with_limit(3);
    assert_eq!(w.poll(0), None); // so that 10 is on the wheel, not in the far tier
    for key in 0..3 {
        assert_eq!(w.register(key, 10), Ok(true));
    }
    assert_eq!(w.register(0, 10), Ok(false), "a duplicate needs no room");
    let err = w.register(3, 10).unwrap_err();
    assert_eq!(err, TimerError::CapacityExceeded { limit: 3 });
    assert!(err.to_string().contains("at most 3"));
    assert!(!w.contains(3, 10));
    w.assert_invariants();
    assert!(w.delete(0, 10));
    // The deleted timer's room is free again at once (its stale entry does not count).
    assert_eq!(w.register(3, i64::MAX), Ok(true));
    assert!(matches!(w.register(3, 11), Err(TimerError::CapacityExceeded { .. })));
    w.assert_invariants();
    assert!(w.delete(3, i64::MAX));
    assert_eq!(w.register(3, 11), Ok(true));
    assert_eq!(drain(&mut w, 20), [(1, 10), (2, 10), (3, 11)]);
    assert_eq!(w.register(3, i64::MAX), Ok(true));
    w.assert_invariants();
}

#[test]
fn clear_keeps_the_time_and_reuses_memory() {
    let mut w = TimerWheel::new();
    drain(&mut w, 500);
    for key in 0..1_000 {
        w.register(key, i64::from(key) * 1_000).unwrap();
    }
    w.register(1, i64::MAX).unwrap();
    let bytes = w.memory_bytes();
    w.clear();
    w.assert_invariants();
    assert_eq!((w.len(), w.peek_timestamp(), w.current_time()), (0, None, 500));
    assert_eq!(w.count_for_key(1), 0);
    assert!(!w.contains(1, i64::MAX));
    assert!(w.memory_bytes() <= bytes);
    w.register(1, 600).unwrap();
    assert_eq!(drain(&mut w, 600), [(1, 600)]);
}

#[test]
fn for_each_visits_every_pending_timer_and_debug_is_a_summary() {
    let mut w = TimerWheel::new();
    drain(&mut w, 0);
    let mut expected = Vec::new();
    for (i, &ts) in EDGES.iter().chain(&[5, 100_000, 1 << 45]).enumerate() {
        w.register(i as KeyId, ts).unwrap();
        expected.push(Timer { key: i as KeyId, timestamp: ts });
    }
    let mut seen = Vec::new();
    w.for_each(|t| seen.push(t));
    seen.sort_by_key(|t| t.key);
    assert_eq!(seen, expected);
    let debug = format!("{w:?}");
    assert!(debug.starts_with("TimerWheel {") && debug.contains("len: 9"), "{debug}");
    assert!(debug.len() < 300, "a summary, not the contents: {debug}");
    assert_eq!(format!("{:?}", TimerWheel::default().peek_timestamp()), "None");
}

#[test]
fn reference_store_basics() {
    let mut r = ReferenceTimers::default();
    assert_eq!(r.register(1, 5), Ok(true));
    assert_eq!(r.register(1, 5), Ok(false));
    assert_eq!(r.register(0, 5), Ok(true));
    assert_eq!(r.register(0, 1), Ok(true));
    assert_eq!((r.len(), r.count_for_key(0), r.timers_for_key(0)), (3, 2, vec![1, 5]));
    assert_eq!(r.peek_timestamp(), Some(1));
    assert_eq!(r.poll(0), None);
    assert_eq!(r.poll(5), Some(Timer { key: 0, timestamp: 1 }));
    assert_eq!(r.poll(5), Some(Timer { key: 1, timestamp: 5 }));
    assert_eq!(r.delete_all_for_key(0), 1);
    assert!(r.is_empty() && r.current_time() == 5);
}

#[test]
fn heartbeat_deletes_keep_stale_entries_bounded_and_results_exact() {
    // The heartbeat job: every event deletes its key's timer and registers one a minute ahead.
    // Deleted timers leave stale entries behind; compaction must keep them within about the live
    // timers, and nothing may change what fires.
    const KEYS: u64 = 20_000;
    const EVENTS: u64 = 400_000;
    let mut w = TimerWheel::new();
    let mut r = ReferenceTimers::new();
    let mut rng = 7u64;
    let mut last: Vec<Option<Timestamp>> = vec![None; KEYS as usize];
    let mut fired_w = Vec::new();
    let mut fired_r = Vec::new();
    let mut peak_entries_ratio = 0.0f64;
    for i in 0..EVENTS {
        let now = (i / 10) as Timestamp; // 10 events per ms
        let key = (splitmix(&mut rng) % KEYS) as KeyId;
        if let Some(t) = last[key as usize].take() {
            assert_eq!(w.delete(key, t), r.delete(key, t));
        }
        let at = now + 60_000;
        assert_eq!(w.register(key, at), r.register(key, at));
        last[key as usize] = Some(at);
        if i % 256 == 255 {
            while let Some(t) = w.poll(now) {
                fired_w.push(t);
                last[t.key as usize] = None;
            }
            while let Some(t) = r.poll(now) {
                fired_r.push(t);
            }
            if i > EVENTS / 4 {
                // Every key has a timer by now (about 20,000 live timers).
                let bytes_per_live = w.memory_bytes() as f64 / w.len() as f64;
                peak_entries_ratio = peak_entries_ratio.max(bytes_per_live);
            }
        }
    }
    w.assert_invariants();
    assert_eq!(fired_w, fired_r);
    assert_eq!(w.len(), r.len());
    assert_eq!(w.peek_timestamp(), r.peek_timestamp());
    // 16 B per live entry, up to as many stale ones, 16 B per key record, list slack: well under
    // 200 B per live timer. Without compaction the 380,000 stale entries would make it ~300 B.
    assert!(peak_entries_ratio < 200.0, "{peak_entries_ratio} bytes per live timer: {w:?}");
    let mut rest_w = Vec::new();
    while let Some(t) = w.poll(i64::MAX) {
        rest_w.push(t);
    }
    let mut rest_r = Vec::new();
    while let Some(t) = r.poll(i64::MAX) {
        rest_r.push(t);
    }
    assert_eq!(rest_w, rest_r);
    assert!(w.is_empty());
    w.assert_invariants();
}

#[test]
fn sequence_numbers_wrap_safely() {
    // A stale entry must never come back to life when sequence numbers wrap.
    let mut w = TimerWheel::new();
    drain(&mut w, 0);
    w.register(1, 100).unwrap();
    assert!(w.delete(1, 100)); // a stale entry (1, 100, seq 0) stays in the wheel
    w.force_next_seq(u32::MAX - 3);
    w.register(2, 50).unwrap(); // seq MAX - 3
    w.register(3, 50).unwrap(); // seq MAX - 2, the last one; the next wraps
    w.register(1, 100).unwrap(); // compacts the stale entry away, then seq 0 again
    w.assert_invariants();
    assert_eq!(drain(&mut w, 1_000), [(2, 50), (3, 50), (1, 100)]);
}

#[test]
fn a_key_with_many_timers_spills_and_unspills() {
    // One key with up to 100 pending timers goes through every shape of its record: inline, two
    // inline, an in-place spill set, a hash-map spill set, and back.
    let mut w = TimerWheel::new();
    let mut r = ReferenceTimers::new();
    let mut rng = 11u64;
    drain(&mut w, 0);
    r.poll(0);
    for round in 0..20 {
        for _ in 0..100 {
            let ts = (splitmix(&mut rng) % 5_000) as Timestamp + round * 1_000;
            assert_eq!(w.register(1, ts), r.register(1, ts));
            if splitmix(&mut rng) % 3 == 0 {
                let victim = (splitmix(&mut rng) % 5_000) as Timestamp + round * 1_000;
                assert_eq!(w.delete(1, victim), r.delete(1, victim));
            }
        }
        w.assert_invariants();
        assert_eq!(w.count_for_key(1), r.count_for_key(1));
        assert_eq!(w.timers_for_key(1), r.timers_for_key(1));
        let now = round * 1_000 + 500;
        let mut fired = Vec::new();
        while let Some(t) = w.poll(now) {
            fired.push(t);
        }
        let mut expected = Vec::new();
        while let Some(t) = r.poll(now) {
            expected.push(t);
        }
        assert_eq!(fired, expected);
        w.assert_invariants();
    }
    assert_eq!(w.delete_all_for_key(1), r.delete_all_for_key(1));
    assert_eq!(w.count_for_key(1), 0);
    w.assert_invariants();
}
