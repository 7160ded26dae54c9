//! Snapshot and restore through the test harness, as a user tests a function's recovery
//! (Flink's harness `snapshot` / `initializeState`):
//!
//! * a run interrupted by a snapshot and restored into a new harness emits, from there on, exactly
//!   what the uninterrupted run emits (random streams, proptest), with the function's value, list
//!   and map state and its event- and processing-time timers;
//! * restoring on 1, 2 and 4 shards from a snapshot taken on 2 gives identical per-key results,
//!   every key on its owner only;
//! * restored timers fire exactly once: processing-time timers that came due while "down" fire as
//!   the restored harness starts, event-time timers only when new watermarks reach them
//!   (docs/reliability.md test 4);
//! * the same through real checkpoint files: two shards' snapshots written as a checkpoint
//!   (shard files and manifest), read back validated and restored on 1, 2 and 4 shards.

use std::collections::BTreeMap;

use proptest::prelude::*;

use pinwheel_operators::harness::{
    BackendSnapshot, HarnessBuilder, KeyedHarness, WatermarkOnRestore,
};
use pinwheel_operators::{
    Collector, Context, FnError, KeyedProcessFunction, ListState, ListStateDescriptor, MapState,
    MapStateDescriptor, OnTimerContext, OpenContext, StreamElement, TimeDomain, Timestamp,
    ValueState, ValueStateDescriptor,
};

/// Counts per key, remembers the last three timestamps and a tag per `ts % 3`; arms an event-time
/// timer `ts + 10` and a processing-time timer `now + 5` per element and reports both on firing.
#[derive(Default)]
struct Tracker {
    count: ValueState<u64>,
    recent: ListState<Timestamp>,
    tags: MapState<u8, String>,
}

impl KeyedProcessFunction for Tracker {
    type Key = u32;
    type In = (u32, Timestamp);
    type Out = String;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        self.count = ctx.value_state(ValueStateDescriptor::new("count"))?;
        self.recent = ctx.list_state(ListStateDescriptor::new("recent"))?;
        self.tags = ctx.map_state(MapStateDescriptor::new("tags"))?;
        Ok(())
    }

    fn process_element(
        &mut self,
        (_, ts): (u32, Timestamp),
        ctx: &mut Context<'_, u32>,
        _out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        let n = self.count.value(ctx)?.unwrap_or(0) + 1;
        self.count.update(ctx, n)?;
        let mut recent = self.recent.get(ctx)?;
        recent.push(ts);
        if recent.len() > 3 {
            recent.remove(0);
        }
        self.recent.update(ctx, recent)?;
        self.tags.put(ctx, (ts % 3) as u8, format!("t{ts}"))?;
        let timers = ctx.timer_service();
        timers.register_event_time_timer(ts + 10)?;
        let now = timers.current_processing_time();
        timers.register_processing_time_timer(now + 5)?;
        Ok(())
    }

    fn on_timer(
        &mut self,
        t: Timestamp,
        ctx: &mut OnTimerContext<'_, u32>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        let domain = match ctx.time_domain() {
            TimeDomain::EventTime => "e",
            TimeDomain::ProcessingTime => "p",
        };
        let key = *ctx.current_key();
        out.collect(format!(
            "{domain} {key}@{t} n={:?} recent={:?} tags={:?}",
            self.count.value(ctx)?,
            self.recent.get(ctx)?,
            self.tags.entries(ctx)?
        ));
        Ok(())
    }
}

/// The harness of the tests: `Tracker`, keyed by the element's first field.
type Tested = KeyedHarness<Tracker, fn(&(u32, Timestamp)) -> u32>;

/// One input of a test stream.
#[derive(Debug, Clone, Copy)]
enum Input {
    Element(u32, Timestamp),
    Watermark(Timestamp),
    Clock(Timestamp),
}

fn harness(shard: usize, shards: usize, from: Vec<BackendSnapshot>) -> Tested {
    let key: fn(&(u32, Timestamp)) -> u32 = |v| v.0;
    HarnessBuilder::default()
        .shard(shard, shards)
        .restore_from(from)
        .keyed(Tracker::default(), key)
        .unwrap()
}

/// Feeds `inputs` (elements only to the harness owning their key, when `owner` says so).
fn feed(h: &mut Tested, inputs: &[Input], mine: impl Fn(u32) -> bool) {
    for &input in inputs {
        match input {
            Input::Element(k, ts) if mine(k) => h.process_element((k, ts), ts).unwrap(),
            Input::Element(..) => {}
            Input::Watermark(w) => h.process_watermark(w).unwrap(),
            Input::Clock(t) => h.set_processing_time(t).unwrap(),
        }
    }
}

fn records(out: Vec<StreamElement<String>>) -> Vec<String> {
    out.into_iter()
        .filter_map(|e| match e {
            StreamElement::Record { value, .. } => Some(value),
            _ => None,
        })
        .collect()
}

/// Per key, its outputs in order.
fn per_key(lines: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in lines {
        let key = l.split(['@', ' ']).nth(1).unwrap_or_default().to_string();
        m.entry(key).or_default().push(l.clone());
    }
    m
}

fn inputs() -> impl Strategy<Value = Vec<Input>> {
    prop::collection::vec(
        prop_oneof![
            6 => (0u32..30, 0i64..20).prop_map(|(k, d)| Input::Element(k, d)),
            1 => (0i64..20).prop_map(Input::Watermark),
            1 => (0i64..20).prop_map(Input::Clock),
        ],
        0..120,
    )
    .prop_map(|mut v| {
        // Time moves forward: element timestamps, watermarks and the clock grow with the position.
        for (i, input) in v.iter_mut().enumerate() {
            let base = i as i64 * 2;
            match input {
                Input::Element(_, ts) => *ts += base,
                Input::Watermark(w) => *w += base,
                Input::Clock(t) => *t += base,
            }
        }
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn a_restored_harness_continues_as_the_uninterrupted_run(
        stream in inputs(),
        cut in any::<prop::sample::Index>(),
    ) {
        let cut = cut.index(stream.len() + 1);
        let (before, after) = stream.split_at(cut);
        let mut whole = harness(0, 1, Vec::new());
        feed(&mut whole, before, |_| true);
        let snapshot = whole.snapshot().unwrap();
        let now = whole.current_processing_time();
        let watermark = whole.current_watermark();
        whole.take_output();
        feed(&mut whole, after, |_| true);
        whole.end_input().unwrap();
        let want = records(whole.take_output());

        let key: fn(&(u32, Timestamp)) -> u32 = |v| v.0;
        let bytes = snapshot.to_bytes();
        let mut restored = HarnessBuilder::default()
            .processing_time(now)
            .restore_from([BackendSnapshot::from_bytes(&bytes).unwrap()])
            .watermark_on_restore(WatermarkOnRestore::Checkpointed)
            .keyed(Tracker::default(), key)
            .unwrap();
        prop_assert_eq!(restored.current_watermark(), watermark);
        feed(&mut restored, after, |_| true);
        restored.end_input().unwrap();
        prop_assert_eq!(records(restored.take_output()), want);
    }

    #[test]
    fn restore_on_1_2_and_4_shards_from_2_gives_identical_per_key_results(
        stream in inputs(),
        cut in any::<prop::sample::Index>(),
    ) {
        let cut = cut.index(stream.len() + 1);
        let (before, after) = stream.split_at(cut);
        let groups = pinwheel_engine::keygroup::KeyGroups::new(128).unwrap();
        let owner = |k: u32, shards: usize| groups.shard_for_key(&k, shards);
        // Two shards up to the cut, then a snapshot of each.
        let mut snapshots = Vec::new();
        for shard in 0..2 {
            let mut h = harness(shard, 2, Vec::new());
            feed(&mut h, before, |k| owner(k, 2) == shard);
            snapshots.push(h.snapshot().unwrap());
        }
        let mut results = Vec::new();
        for shards in [1, 2, 4] {
            let mut lines = Vec::new();
            for shard in 0..shards {
                let mut h = harness(shard, shards, snapshots.clone());
                feed(&mut h, after, |k| owner(k, shards) == shard);
                h.end_input().unwrap();
                lines.extend(records(h.take_output()));
            }
            results.push(per_key(&lines));
        }
        prop_assert_eq!(&results[0], &results[1]);
        prop_assert_eq!(&results[0], &results[2]);
    }
}

#[test]
fn restored_timers_fire_exactly_once() {
    let mut h = harness(0, 1, Vec::new());
    // 1,000 keys, each with a duplicate registration (same element twice: one timer per (key, ts)).
    for k in 0..1_000u32 {
        h.process_element((k, 100), 100).unwrap();
        h.process_element((k, 100), 100).unwrap();
    }
    assert_eq!(h.num_event_time_timers(), 1_000);
    assert_eq!(h.num_processing_time_timers(), 1_000);
    let snapshot = h.snapshot().unwrap();

    // "Down" until processing time 50: the processing-time timers (at 5) are overdue and fire
    // as the restored harness starts; the event-time timers (at 110) wait for a watermark.
    let key: fn(&(u32, Timestamp)) -> u32 = |v| v.0;
    let mut r = HarnessBuilder::default()
        .processing_time(50)
        .restore_from([snapshot])
        .keyed(Tracker::default(), key)
        .unwrap();
    let started = records(r.take_output());
    assert_eq!(started.len(), 1_000);
    assert!(started.iter().all(|l| l.starts_with("p ") && l.contains("@5 n=Some(2)")));
    assert_eq!(r.num_processing_time_timers(), 0);
    r.process_watermark(109).unwrap();
    assert!(records(r.take_output()).is_empty(), "no event-time timer fires before its time");
    r.process_watermark(110).unwrap();
    let fired = records(r.take_output());
    assert_eq!(fired.len(), 1_000);
    let mut keys: Vec<&str> = fired.iter().map(|l| l.split(['@', ' ']).nth(1).unwrap()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 1_000, "each key's timer once");
    r.end_input().unwrap();
    assert!(records(r.take_output()).is_empty(), "nothing fires twice");
    assert_eq!(r.num_event_time_timers(), 0);
}

/// A fresh directory under Cargo's target temporary directory (never the system one).
fn fresh_dir(name: &str) -> std::path::PathBuf {
    let root = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("harness-checkpoints");
    let path = root.join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&root).unwrap();
    path
}

#[test]
fn a_checkpoint_written_to_files_on_2_shards_restores_on_1_2_and_4() {
    use pinwheel_engine::checkpoint::{
        CheckpointDir, CheckpointKind, Manifest, ManifestShard, RestorePolicy, ShardFileMeta,
        WriteOptions, keyed_section, keyed_snapshots, shard_file_name, write_manifest,
        write_shard_file,
    };
    let groups = pinwheel_engine::keygroup::KeyGroups::new(128).unwrap();
    let owner = |k: u32, shards: usize| groups.shard_for_key(&k, shards);
    let before: Vec<Input> = (0..400u32).map(|i| Input::Element(i % 37, i64::from(i))).collect();
    let after: Vec<Input> = (400..600u32)
        .map(|i| {
            if i % 50 == 0 {
                Input::Watermark(i64::from(i) - 20)
            } else {
                Input::Element(i % 41, i64::from(i))
            }
        })
        .collect();

    // The run on two shards, up to the checkpoint.
    let path = fresh_dir("two-shards");
    let dir = CheckpointDir::open_or_create(&path).unwrap();
    let mut shards = Vec::new();
    for shard in 0..2 {
        let mut h = harness(shard, 2, Vec::new());
        feed(&mut h, &before, |k| owner(k, 2) == shard);
        let section = keyed_section("tracker", &h.snapshot().unwrap()).unwrap();
        let range = groups.range_for_shard(shard, 2).unwrap();
        let meta = ShardFileMeta::new(1, shard as u32, 2, range);
        let written = write_shard_file(
            &dir,
            &meta,
            &[(pinwheel_engine::checkpoint::KEYED_SECTION, &section)],
            &WriteOptions::default(),
        )
        .unwrap();
        shards.push(ManifestShard::new(shard as u32, range, &written, i64::MIN));
    }
    let manifest = Manifest::new(1, CheckpointKind::Checkpoint, 128, shards, vec![], 0).unwrap();
    write_manifest(&dir, &manifest, &WriteOptions::default()).unwrap();

    // "Restart": the newest complete checkpoint, validated, decoded.
    let dir = CheckpointDir::open_or_create(&path).unwrap();
    let restored = dir.newest_complete(RestorePolicy::Strict).unwrap().expect("checkpoint 1");
    assert_eq!(restored.manifest.checkpoint, 1);
    let mut snapshots = Vec::new();
    for (i, file) in restored.files.iter().enumerate() {
        let name = path.join(shard_file_name(1, i as u32));
        let mut ops = keyed_snapshots(&name, file).unwrap();
        assert_eq!(ops.len(), 1);
        let (op, snapshot) = ops.remove(0);
        assert_eq!(op, "tracker");
        snapshots.push(snapshot);
    }
    assert!(snapshots.iter().map(BackendSnapshot::num_keys).sum::<usize>() == 37);

    let mut results = Vec::new();
    for shards in [1, 2, 4] {
        let mut lines = Vec::new();
        for shard in 0..shards {
            let mut h = harness(shard, shards, snapshots.clone());
            feed(&mut h, &after, |k| owner(k, shards) == shard);
            h.end_input().unwrap();
            lines.extend(records(h.take_output()));
        }
        results.push(per_key(&lines));
    }
    assert!(!results[0].is_empty());
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
    let _ = std::fs::remove_dir_all(&path);
}
