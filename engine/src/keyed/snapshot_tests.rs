//! Snapshots of the keyed backend against the backend they were taken from:
//!
//! * a restored backend behaves as the original: the same state of every kind (with TTL
//!   timestamps), the same timers firing in the same order, equal timestamps in registration
//!   order (random scripts, proptest);
//! * a snapshot taken on one shard, restored on 2 and 4 by key-group range and merged back, gives
//!   every key its state and timers on its owner, each timer once;
//! * rows of a state not registered yet wait for its registration and stay in later snapshots;
//! * a frozen backend encodes exactly the snapshot's bytes, whatever happens to the backend after
//!   the freeze;
//! * what cannot be restored is a typed error: another state kind, a key in the wrong group, a
//!   key twice, an unknown format version, a non-empty backend; arbitrary bytes never panic.

use proptest::prelude::*;

use super::*;
use crate::keygroup::{KeyGroupRange, KeyGroups};
use crate::state::{
    ListStateDescriptor, MapStateDescriptor, StateError, StateTtlConfig, ValueStateDescriptor,
};
use crate::time::MAX_WATERMARK;

fn kg() -> KeyGroups {
    KeyGroups::new(64).unwrap()
}

/// The states of the test function: a value with TTL, a list and a map.
struct States {
    count: crate::state::ValueState<u64>,
    seen: crate::state::ListState<i64>,
    tags: crate::state::MapState<u8, String>,
}

fn register(b: &mut KeyedBackend<u64>) -> States {
    let r = b.state_registry();
    States {
        count: r
            .value_state(
                ValueStateDescriptor::new("count").with_ttl(StateTtlConfig::new(1_000_000)),
            )
            .unwrap(),
        seen: r.list_state(ListStateDescriptor::new("seen")).unwrap(),
        tags: r.map_state(MapStateDescriptor::new("tags")).unwrap(),
    }
}

/// One step of a script: a record of `key` at `ts` that updates all three states and registers
/// an event-time timer at `ts + delay` and a processing-time timer at `delay`, or deletes them.
#[derive(Debug, Clone)]
struct Step {
    key: u64,
    ts: i64,
    delay: i64,
    delete: bool,
}

fn apply(b: &mut KeyedBackend<u64>, s: &States, step: &Step) {
    let r = KeyedRecord::new(step.key, (), Some(step.ts), &kg());
    b.enter(r.key, r.hash, r.key_group, r.timestamp, |mut cx| {
        if step.delete {
            cx.timers.delete_all(TimeDomain::EventTime);
            cx.timers.delete(TimeDomain::ProcessingTime, step.delay);
            s.tags.clear(&cx.scope).unwrap();
            return;
        }
        let n = s.count.value(&cx.scope).unwrap().unwrap_or(0) + 1;
        s.count.update(&cx.scope, n).unwrap();
        s.seen.add(&cx.scope, step.ts).unwrap();
        s.tags.put(&cx.scope, (step.ts % 7) as u8, format!("t{}", step.ts)).unwrap();
        cx.timers.register(TimeDomain::EventTime, step.ts + step.delay).unwrap();
        cx.timers.register(TimeDomain::ProcessingTime, step.delay).unwrap();
    })
    .unwrap();
}

/// Everything observable: each key's state, then every timer firing (both domains, to the end of
/// time) with the state the key had when it fired.
fn observe(b: &mut KeyedBackend<u64>, s: &States) -> (Vec<String>, Vec<String>) {
    let mut keys: Vec<u64> = b.keys().map(|(_, &k)| k).collect();
    keys.sort_unstable();
    let mut state = Vec::new();
    for &k in &keys {
        let r = KeyedRecord::new(k, (), None, &kg());
        b.enter(r.key, r.hash, r.key_group, None, |mut cx| {
            state.push(format!(
                "{k}: {:?} {:?} {:?} e{:?} p{:?}",
                s.count.value(&cx.scope).unwrap(),
                s.seen.get(&cx.scope).unwrap(),
                s.tags.entries(&cx.scope).unwrap(),
                cx.timers.timers(TimeDomain::EventTime),
                cx.timers.timers(TimeDomain::ProcessingTime),
            ));
        })
        .unwrap();
    }
    // A key with nothing is not in a snapshot: leave it out here too.
    state.retain(|line| !line.ends_with(": None [] [] e[] p[]"));
    let mut fired = Vec::new();
    let mut fire = |cx: KeyContext<'_, u64>, t: crate::timer::Timer, d: TimeDomain| {
        fired.push(format!("{d:?} {} {} {:?}", cx.key(), t.timestamp, s.count.value(&cx.scope)));
        Ok::<_, ()>(())
    };
    if b.begin_watermark(MAX_WATERMARK) {
        while !matches!(
            b.continue_advance(usize::MAX, &mut fire).unwrap(),
            AdvanceStep::Complete { .. }
        ) {}
    }
    b.begin_processing_time(i64::MAX);
    while !matches!(
        b.continue_advance(usize::MAX, &mut fire).unwrap(),
        AdvanceStep::Complete { .. }
    ) {}
    (state, fired)
}

fn built(script: &[Step]) -> (KeyedBackend<u64>, States) {
    let mut b = KeyedBackend::<u64>::new(BackendSettings::default(), 0);
    let s = register(&mut b);
    for step in script {
        apply(&mut b, &s, step);
    }
    (b, s)
}

fn restored<'a>(
    snapshots: impl IntoIterator<Item = &'a BackendSnapshot>,
    owns: impl Fn(KeyGroup) -> bool,
) -> (KeyedBackend<u64>, States, RestoreStats) {
    let mut b = KeyedBackend::<u64>::new(BackendSettings::default(), 0);
    let s = register(&mut b);
    let stats = b.restore(snapshots, &kg(), owns).unwrap();
    (b, s, stats)
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (0u64..40, 0i64..50, 1i64..20, prop::bool::weighted(0.15))
            .prop_map(|(key, ts, delay, delete)| Step { key, ts, delay, delete }),
        0..300,
    )
}

/// Steps at negative and positive times (timestamps are zigzag varints in the encoding).
fn signed_steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (0u64..40, -5_000i64..50, 1i64..20, prop::bool::weighted(0.15))
            .prop_map(|(key, ts, delay, delete)| Step { key, ts, delay, delete }),
        0..300,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn a_restored_backend_behaves_as_the_original(script in steps()) {
        let (mut original, s) = built(&script);
        let snapshot = original.snapshot().unwrap();
        let bytes = snapshot.to_bytes();
        let decoded = BackendSnapshot::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&decoded, &snapshot);
        let (mut copy, cs, stats) = restored([&decoded], |_| true);
        prop_assert_eq!(stats.keys, snapshot.num_keys());
        prop_assert_eq!(stats.timers, snapshot.num_timers());
        // A snapshot of the copy is the same snapshot (but for the watermark, which restarts).
        let again = copy.snapshot().unwrap();
        prop_assert_eq!(again.states(), snapshot.states());
        prop_assert_eq!(again.groups.clone(), snapshot.groups.clone());
        prop_assert_eq!(observe(&mut copy, &cs), observe(&mut original, &s));
    }

    #[test]
    fn rescaled_restores_give_every_key_to_its_owner_once(script in steps(), shards in 2usize..5) {
        let (mut original, s) = built(&script);
        let snapshot = original.snapshot().unwrap();
        let mut parts = Vec::new();
        for shard in 0..shards {
            let range = kg().range_for_shard(shard, shards).unwrap();
            let (mut b, _, _) = restored([&snapshot], |g| range.contains(g));
            for (id, key) in b.keys() {
                prop_assert!(range.contains(kg().key_group_of(key)));
                prop_assert_eq!(b.key_group(id), Some(kg().key_group_of(key)));
            }
            parts.push(b.snapshot().unwrap());
            let _ = &mut b;
        }
        prop_assert_eq!(parts.iter().map(BackendSnapshot::num_keys).sum::<usize>(), snapshot.num_keys());
        let (mut merged, ms, _) = restored(&parts, |_| true);
        let (state, mut fired) = observe(&mut merged, &ms);
        let (want_state, mut want_fired) = observe(&mut original, &s);
        prop_assert_eq!(state, want_state);
        // Equal timestamps of keys from different parts may fire in another order; each key's
        // own timers keep theirs, and every timer fires once.
        fired.sort();
        want_fired.sort();
        prop_assert_eq!(fired, want_fired);
    }

    #[test]
    fn a_frozen_backend_encodes_the_snapshots_bytes_and_ignores_later_changes(
        script in signed_steps(),
        later in signed_steps(),
        pending_rows in prop::bool::ANY,
    ) {
        let (mut b, s) = built(&script);
        if pending_rows {
            // Rows of a state not registered (yet) are part of the snapshot too.
            let snapshot = b.snapshot().unwrap();
            b = KeyedBackend::<u64>::new(BackendSettings::default(), 0);
            b.restore([&snapshot], &kg(), |_| true).unwrap();
        }
        let want = b.snapshot().unwrap().to_bytes();
        let frozen = b.freeze().unwrap();
        if !pending_rows {
            for step in &later {
                apply(&mut b, &s, step);
            }
        }
        let mut bytes = vec![0xAA];
        frozen.encode(&mut bytes).unwrap();
        prop_assert_eq!(&bytes[1..], &want[..]);
        prop_assert_eq!(frozen.snapshot().unwrap().to_bytes(), want);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = BackendSnapshot::from_bytes(&bytes);
        let mut b = KeyedBackend::<u64>::new(BackendSettings::default(), 0);
        let _ = register(&mut b);
        let _ = b.restore_encoded([&bytes[..]], &kg(), |_| true, WatermarkOnRestore::Minimum);
    }

    #[test]
    fn every_truncation_and_byte_flip_of_a_snapshot_is_an_error_or_a_snapshot(
        script in steps(),
        at in any::<prop::sample::Index>(),
    ) {
        let (mut original, _) = built(&script);
        let bytes = original.snapshot().unwrap().to_bytes();
        let i = at.index(bytes.len());
        // Truncated: never the same snapshot, never a panic. (Checksums are the file layer's.)
        prop_assert!(BackendSnapshot::from_bytes(&bytes[..i]).is_err());
        let mut b = KeyedBackend::<u64>::new(BackendSettings::default(), 0);
        let _ = register(&mut b);
        let restored = b.restore_encoded([&bytes[..i]], &kg(), |_| true, WatermarkOnRestore::Minimum);
        prop_assert!(restored.is_err(), "a truncated snapshot restores as a whole one");
        let mut flipped = bytes.clone();
        flipped[i] ^= 0xff;
        let mut b = KeyedBackend::<u64>::new(BackendSettings::default(), 0);
        let _ = register(&mut b);
        let _ = b.restore_encoded([&flipped[..]], &kg(), |_| true, WatermarkOnRestore::Minimum);
        if let Ok(snapshot) = BackendSnapshot::from_bytes(&flipped) {
            // Restoring damaged content is an error or some backend, never a panic.
            let mut b = KeyedBackend::<u64>::new(BackendSettings::default(), 0);
            let _ = register(&mut b);
            let _ = b.restore([&snapshot], &kg(), |_| true);
        }
    }
}

#[test]
fn equal_timestamps_fire_in_registration_order_after_a_restore() {
    // Keys registered in the order 5, 3, 9, 1 at one timestamp, key 3 re-registered last.
    let mut b = KeyedBackend::<u64>::new(BackendSettings::default(), 0);
    let s = register(&mut b);
    for key in [5, 3, 9, 1] {
        apply(&mut b, &s, &Step { key, ts: 10, delay: 5, delete: false });
    }
    apply(&mut b, &s, &Step { key: 3, ts: 0, delay: 0, delete: true });
    apply(&mut b, &s, &Step { key: 3, ts: 10, delay: 5, delete: false });
    let snapshot = b.snapshot().unwrap();
    let (mut copy, cs, _) = restored([&snapshot], |_| true);
    let (_, fired) = observe(&mut copy, &cs);
    let event: Vec<&str> =
        fired.iter().filter(|f| f.starts_with("EventTime")).map(String::as_str).collect();
    assert_eq!(
        event,
        [
            "EventTime 5 15 Ok(Some(1))",
            "EventTime 9 15 Ok(Some(1))",
            "EventTime 1 15 Ok(Some(1))",
            "EventTime 3 15 Ok(Some(2))"
        ]
    );
}

#[test]
fn an_old_timer_among_many_later_registrations_and_long_rows_encode_as_the_snapshot() {
    // Key 1's timers are registered first; key 2 then registers and deletes thousands, so the
    // pending timers' orders are spread thin (the encoder's sparse ranks) and key 2's list row
    // grows past 127 bytes (a length prefix of two bytes and more).
    let mut b = KeyedBackend::<u64>::new(BackendSettings::default(), 0);
    let s = register(&mut b);
    apply(&mut b, &s, &Step { key: 1, ts: 0, delay: 7, delete: false });
    for ts in 0..5_000 {
        apply(&mut b, &s, &Step { key: 2, ts, delay: 1_000, delete: false });
        apply(&mut b, &s, &Step { key: 2, ts, delay: 1_000, delete: true });
    }
    apply(&mut b, &s, &Step { key: 2, ts: 5_000, delay: 3, delete: false });
    apply(&mut b, &s, &Step { key: 3, ts: 5_001, delay: 3, delete: false });
    let want = b.snapshot().unwrap().to_bytes();
    let frozen = b.freeze().unwrap();
    let mut bytes = Vec::new();
    frozen.encode(&mut bytes).unwrap();
    assert_eq!(bytes, want);
    assert_eq!(frozen.encoded().unwrap().encoded_len(), want.len());
    let snapshot = BackendSnapshot::from_bytes(&bytes).unwrap();
    assert_eq!(snapshot.num_timers(), 6);
    let (mut copy, cs, _) = restored([&snapshot], |_| true);
    assert_eq!(observe(&mut copy, &cs), observe(&mut b, &s));
}

#[test]
fn rows_of_a_state_registered_later_wait_for_it() {
    let (mut original, _) = built(&[Step { key: 7, ts: 3, delay: 1, delete: false }]);
    let snapshot = original.snapshot().unwrap();
    let mut b = KeyedBackend::<u64>::new(BackendSettings::default(), 0);
    b.restore([&snapshot], &kg(), |_| true).unwrap();
    // Nothing registered yet: a snapshot still holds every row.
    let pending = b.snapshot().unwrap();
    assert_eq!(pending.groups, snapshot.groups);
    let s = register(&mut b);
    let r = KeyedRecord::new(7u64, (), None, &kg());
    b.enter(r.key, r.hash, r.key_group, None, |cx| {
        assert_eq!(s.count.value(&cx.scope).unwrap(), Some(1));
        assert_eq!(s.seen.get(&cx.scope).unwrap(), [3]);
        assert_eq!(s.tags.get(&cx.scope, &3).unwrap().as_deref(), Some("t3"));
    })
    .unwrap();
}

#[test]
fn what_cannot_be_restored_is_a_typed_error() {
    let (mut original, _) = built(&[Step { key: 7, ts: 3, delay: 1, delete: false }]);
    let snapshot = original.snapshot().unwrap();

    // Another kind under the same name.
    let mut b = KeyedBackend::<u64>::new(BackendSettings::default(), 0);
    b.state_registry().list_state(ListStateDescriptor::<u64>::new("count")).unwrap();
    assert!(matches!(
        b.restore([&snapshot], &kg(), |_| true),
        Err(SnapshotError::State(StateError::Restore { ref name, .. })) if name == "count"
    ));

    // A key-group count that puts the key elsewhere.
    let other = KeyGroups::new(1024).unwrap();
    let group = snapshot.key_groups().next().unwrap();
    if other.key_group_of(&7u64) != group {
        let mut b = KeyedBackend::<u64>::new(BackendSettings::default(), 0);
        assert!(matches!(
            b.restore([&snapshot], &other, |_| true),
            Err(SnapshotError::WrongKeyGroup { .. })
        ));
    }

    // The same key twice (two copies of one shard's snapshot).
    let mut b = KeyedBackend::<u64>::new(BackendSettings::default(), 0);
    assert!(matches!(
        b.restore([&snapshot, &snapshot], &kg(), |_| true),
        Err(SnapshotError::DuplicateKey { .. })
    ));

    // Into a backend that has keys.
    let (mut busy, _) = built(&[Step { key: 1, ts: 0, delay: 1, delete: false }]);
    assert!(matches!(
        busy.restore([&snapshot], &kg(), |_| true),
        Err(SnapshotError::NotEmpty { keys: 1 })
    ));

    // Another format version.
    let mut bytes = snapshot.to_bytes();
    bytes[0] = 9;
    assert!(matches!(
        BackendSnapshot::from_bytes(&bytes),
        Err(SnapshotError::UnsupportedVersion { found: 9, supported: 1 })
    ));

    // A key type without a decoder.
    let mut b = KeyedBackend::<&'static str>::new(BackendSettings::default(), 0);
    let r = KeyedRecord::new("a", (), None, &kg());
    b.enter(r.key, r.hash, r.key_group, None, |mut cx| {
        cx.timers.register(TimeDomain::EventTime, 1).unwrap();
    })
    .unwrap();
    let s = b.snapshot().unwrap();
    let mut c = KeyedBackend::<&'static str>::new(BackendSettings::default(), 0);
    assert!(matches!(c.restore([&s], &kg(), |_| true), Err(SnapshotError::Key(_))));
    let _ = KeyGroupRange::new(KeyGroup(0), KeyGroup(1));
}

/// The freeze is copy-on-write by pages of rows (`cow_vec.rs`): writes after it, to keys on many
/// pages, removals that free ids for reuse, and new keys that make every row vector reallocate,
/// leave the frozen snapshot as the freeze found it, and a second freeze while the first is
/// still being read sees the writes between them.
#[test]
fn a_freeze_survives_writes_on_every_page_removals_and_growth() {
    let step =
        |key: u64, ts: i64, delete: bool| Step { key, ts, delay: 10 + key as i64 % 5, delete };
    let script: Vec<Step> = (0..3_000).map(|k| step(k, k as i64, false)).collect();
    let (mut b, s) = built(&script);
    let want = b.snapshot().unwrap().to_bytes();
    let frozen = b.freeze().unwrap();
    for k in (0..3_000).step_by(7) {
        apply(&mut b, &s, &step(k, 5_000 + k as i64, k % 2 == 0));
    }
    let between = b.snapshot().unwrap().to_bytes();
    let second = b.freeze().unwrap();
    for k in 0..20_000 {
        apply(&mut b, &s, &step(k, 9_000 + k as i64, false));
    }
    assert_eq!(frozen.snapshot().unwrap().to_bytes(), want);
    assert_eq!(second.snapshot().unwrap().to_bytes(), between);
    assert_ne!(want, between);
    assert_ne!(b.snapshot().unwrap().to_bytes(), between);
}
