//! Side outputs read as streams, run with the main output in one job. Nothing here depends on
//! timing.
//! * `side_output_streams_are_keyed_and_processed_further` — a keyed stage splits events into its
//!   main output, a side output read as a stream and a side output read by a callback. The side
//!   stream is mapped, filtered, keyed again and summed in event-time windows (its timers fire
//!   because the side output carries every watermark); the main output is keyed again and counted.
//!   Per-key results are exact and the same on 1, 2 and 4 shards.
//! * `a_non_keyed_stage_shares_its_outputs` — the same for a non-keyed process stage, with the
//!   side records' timestamps checked.
//! * `a_slow_branch_keeps_memory_bounded` — a branch whose sink is slow holds the shared stage
//!   back: the branch buffers never hold more than their bound (counted by the tee), and the job
//!   completes with every result, whichever branch is slow.
//! * `a_side_output_alone_and_two_consumers_of_one_tag` — a side stream can run without its main
//!   branch; a tag read by two consumers is a configuration error.
//! * `a_running_job_drains_or_stops` — a spawned job fed by a push source: ending the input drains
//!   every root; `cancel` stops at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pinwheel_operators::pipeline::{
    Job, Pipeline, Sink, WatermarkStrategy, defaults::DEFAULT_BRANCH_BUFFER,
};
use pinwheel_operators::{
    Collector, ConfigError, Context, FnError, KeyedProcessFunction, MAX_WATERMARK, MapState,
    MapStateDescriptor, OnTimerContext, OpenContext, OutputTag, PipelineError, ProcessContext,
    ProcessFunction, Semantics, ShardInfo, SinkError, StreamElement, Timestamp, ValueState,
    ValueStateDescriptor, process_fn,
};

/// (key, timestamp, value).
type Event = (u64, Timestamp, u64);

fn events(n: u64) -> Vec<Event> {
    (0..n).map(|i| (splitmix64(i) % 50, (i / 4) as Timestamp, i % 100)).collect()
}

fn alerts() -> OutputTag<(u64, u64)> {
    OutputTag::new("alerts")
}

fn nines() -> OutputTag<u64> {
    OutputTag::new("nines")
}

const WINDOW: Timestamp = 100;

fn window_end(ts: Timestamp) -> Timestamp {
    (ts / WINDOW + 1) * WINDOW - 1
}

/// Sums values per key in tumbling event-time windows; emits (key, window end, sum) when the
/// watermark passes the window.
#[derive(Default)]
struct WindowSum {
    sums: MapState<Timestamp, u64>,
}

impl KeyedProcessFunction for WindowSum {
    type Key = u64;
    type In = (u64, u64);
    type Out = (u64, Timestamp, u64);

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        self.sums = ctx.map_state(MapStateDescriptor::new("sums"))?;
        Ok(())
    }

    fn process_element(
        &mut self,
        (_, v): (u64, u64),
        ctx: &mut Context<'_, u64>,
        _: &mut Collector<'_, Self::Out>,
    ) -> Result<(), FnError> {
        let ts = ctx.timestamp().ok_or("side records carry their timestamps")?;
        if ts <= ctx.current_watermark() {
            return Err(format!("late side record at {ts}").into());
        }
        let end = window_end(ts);
        let sum = self.sums.get(ctx, &end)?.unwrap_or(0);
        self.sums.put(ctx, end, sum + v)?;
        ctx.timer_service().register_event_time_timer(end)?;
        Ok(())
    }

    fn on_timer(
        &mut self,
        t: Timestamp,
        ctx: &mut OnTimerContext<'_, u64>,
        out: &mut Collector<'_, Self::Out>,
    ) -> Result<(), FnError> {
        // Windows close on watermarks pushed through the side output, not only at the end.
        if ctx.current_watermark() == MAX_WATERMARK && t < 1_000 {
            return Err(format!("window {t} closed only at the end of input").into());
        }
        out.collect((*ctx.current_key(), t, self.sums.get(ctx, &t)?.unwrap_or(0)));
        self.sums.remove(ctx, &t)?;
        Ok(())
    }
}

/// Counts and sums values per key; reports when the input ends.
#[derive(Default)]
struct CountSum {
    acc: ValueState<(u64, u64)>,
}

impl KeyedProcessFunction for CountSum {
    type Key = u64;
    type In = (u64, u64);
    type Out = (u64, u64, u64);

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        self.acc = ctx.value_state(ValueStateDescriptor::new("acc"))?;
        Ok(())
    }

    fn process_element(
        &mut self,
        (_, v): (u64, u64),
        ctx: &mut Context<'_, u64>,
        _: &mut Collector<'_, Self::Out>,
    ) -> Result<(), FnError> {
        let (n, s) = self.acc.value(ctx)?.unwrap_or((0, 0));
        self.acc.update(ctx, (n + 1, s + v))?;
        ctx.timer_service().register_event_time_timer(MAX_WATERMARK)?;
        Ok(())
    }

    fn on_timer(
        &mut self,
        _: Timestamp,
        ctx: &mut OnTimerContext<'_, u64>,
        out: &mut Collector<'_, Self::Out>,
    ) -> Result<(), FnError> {
        let (n, s) = self.acc.value(ctx)?.unwrap_or((0, 0));
        out.collect((*ctx.current_key(), n, s));
        Ok(())
    }
}

/// The first stage: values divisible by 3 are alerts (side output, regrouped by value % 7), 99s
/// are also counted through a callback, everything else is the main output.
fn classify() -> impl KeyedProcessFunction<Key = u64, In = Event, Out = (u64, u64)> {
    process_fn(|e: Event, ctx: &mut Context<'_, u64>, out: &mut Collector<'_, (u64, u64)>| {
        if e.2 == 99 {
            ctx.output(&nines(), e.0);
        }
        if e.2 % 3 == 0 {
            ctx.output(&alerts(), (e.2 % 7, e.2));
        } else {
            out.collect((e.0, e.2));
        }
        Ok::<(), FnError>(())
    })
}

struct Expected {
    main: BTreeMap<u64, (u64, u64)>,
    side: BTreeMap<(u64, Timestamp), u64>,
    nines: u64,
}

fn model(events: &[Event]) -> Expected {
    let mut x = Expected { main: BTreeMap::new(), side: BTreeMap::new(), nines: 0 };
    for &(key, ts, v) in events {
        if v == 99 {
            x.nines += 1;
        }
        if v % 3 == 0 {
            if v % 2 == 0 {
                // The side branch keeps even values only, doubled.
                *x.side.entry((v % 7, window_end(ts))).or_default() += v * 2;
            }
        } else {
            let e = x.main.entry(key).or_default();
            e.0 += 1;
            e.1 += v;
        }
    }
    x
}

#[test]
fn side_output_streams_are_keyed_and_processed_further() {
    let input = events(40_000);
    let expected = model(&input);
    for shards in [1, 2, 4] {
        let pipeline = Pipeline::new().shards(shards);
        let nine_count = Arc::new(AtomicU64::new(0));
        let nines2 = nine_count.clone();
        let classified = pipeline
            .from_iter(input.clone())
            .assign_timestamps_and_watermarks(
                WatermarkStrategy::for_monotonous_timestamps()
                    .with_timestamp_assigner(|e: &Event, _| e.1),
            )
            .key_by(|e: &Event| e.0)
            .process(classify)
            .name("classify")
            .side_output(&nines(), move |_, _| {
                nines2.fetch_add(1, Ordering::Relaxed);
            })
            .with_side_outputs();
        let windows = classified
            .side_output_stream(&alerts())
            .filter(|a: &(u64, u64)| a.1 % 2 == 0)
            .map(|(g, v)| (g, v * 2))
            .key_by(|a: &(u64, u64)| a.0)
            .process(WindowSum::default)
            .name("window-sum");
        let counts =
            classified.key_by(|m: &(u64, u64)| m.0).process(CountSum::default).name("count");

        let mut job = Job::new(&pipeline);
        let windows = job.collect(windows);
        let counts = job.collect(counts);
        let mut run = job.run().unwrap();

        let side: BTreeMap<(u64, Timestamp), u64> =
            run.take_values(windows).into_iter().map(|(g, end, s)| ((g, end), s)).collect();
        assert_eq!(side, expected.side, "side branch on {shards} shards");
        let main: BTreeMap<u64, (u64, u64)> =
            run.take_values(counts).into_iter().map(|(k, n, s)| (k, (n, s))).collect();
        assert_eq!(main, expected.main, "main branch on {shards} shards");
        assert_eq!(
            nine_count.load(Ordering::Relaxed),
            expected.nines,
            "callback on {shards} shards"
        );
    }
}

/// Even values to the main output, odd ones to a side output.
struct Parity;

fn odd() -> OutputTag<u64> {
    OutputTag::new("odd")
}

impl ProcessFunction for Parity {
    type In = u64;
    type Out = u64;

    fn process_element(
        &mut self,
        v: u64,
        ctx: &mut ProcessContext<'_>,
        out: &mut Collector<'_, u64>,
    ) -> Result<(), FnError> {
        if v % 2 == 1 {
            ctx.output(&odd(), v);
        } else {
            out.collect(v);
        }
        Ok(())
    }
}

/// Keeps every element, with timestamps and watermarks.
#[derive(Debug)]
struct Elements<T>(Vec<StreamElement<T>>);

impl<T> Sink<T> for Elements<T> {
    fn write(&mut self, e: StreamElement<T>) -> Result<(), SinkError> {
        self.0.push(e);
        Ok(())
    }
}

#[test]
fn a_non_keyed_stage_shares_its_outputs() {
    let pipeline = Pipeline::new().shards(1);
    let split = pipeline
        .from_elements((0..10u64).map(|v| StreamElement::record(v, v as Timestamp * 10)))
        .process(|| Parity)
        .with_side_outputs();
    let odd_stream = split.side_output_stream(&odd());
    let mut job = Job::new(&pipeline);
    let odd_sink = job.sink(odd_stream, |_| Elements(Vec::new()));
    let even_sink = job.sink(split, |_| Elements(Vec::new()));
    let mut run = job.run().unwrap();
    let records = |sinks: Vec<Elements<u64>>| -> Vec<(u64, Option<Timestamp>)> {
        sinks
            .into_iter()
            .flat_map(|s| s.0)
            .filter_map(|e| match e {
                StreamElement::Record { value, timestamp } => Some((value, timestamp)),
                _ => None,
            })
            .collect()
    };
    let odd_elements = run.take(odd_sink);
    assert_eq!(
        odd_elements[0].0.last(),
        Some(&StreamElement::Watermark(MAX_WATERMARK)),
        "the side output receives the final watermark"
    );
    assert_eq!(
        records(odd_elements),
        (0..10u64)
            .filter(|v| v % 2 == 1)
            .map(|v| (v, Some(v as Timestamp * 10)))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        records(run.take(even_sink)),
        (0..10u64)
            .filter(|v| v % 2 == 0)
            .map(|v| (v, Some(v as Timestamp * 10)))
            .collect::<Vec<_>>()
    );

    // Records without a timestamp: none on the side output by default, `i64::MIN` with Flink's
    // rule (docs/semantics.md A1.13).
    for (semantics, expected) in
        [(Semantics::default(), None), (Semantics::flink(), Some(i64::MIN))]
    {
        let pipeline = Pipeline::new().shards(1).semantics(semantics);
        let split = pipeline.from_iter(0..4u64).process(|| Parity).with_side_outputs();
        let mut job = Job::new(&pipeline);
        let odd_sink = job.sink(split.side_output_stream(&odd()), |_| Elements(Vec::new()));
        let mut run = job.run().unwrap();
        assert_eq!(records(run.take(odd_sink)), vec![(1, expected), (3, expected)]);
    }
}

/// A sink that sleeps every `every` records, and counts what it received.
struct Slow {
    every: u64,
    seen: Arc<AtomicU64>,
}

impl<T> Sink<T> for Slow {
    fn write(&mut self, e: StreamElement<T>) -> Result<(), SinkError> {
        if let StreamElement::Record { .. } = e {
            let n = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
            if n % self.every == 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        Ok(())
    }
}

#[test]
fn a_slow_branch_keeps_memory_bounded() {
    const EVENTS: u64 = 100_000;
    const BUFFER: usize = 64;
    // What the tee can hold at once: a full main buffer, plus a side buffer that was just below
    // its bound when the stage emitted one batch into it (a batch is 512 input elements, one side
    // record each here).
    const BOUND: usize = BUFFER + (BUFFER - 1) + 512;
    // (shards, which branch is slow, whether the side branch is keyed again: then the slow sink
    // is on shard 0 only, and the other shards feel it through the exchange rings).
    for (shards, slow_side, keyed) in
        [(1, true, false), (2, true, false), (2, false, false), (2, true, true)]
    {
        let pipeline = Pipeline::new().shards(shards).ring_capacity(64);
        let split = pipeline
            .from_iter(0..EVENTS)
            .key_by(|v: &u64| *v % 1000)
            .process(|| {
                process_fn(|v: u64, ctx: &mut Context<'_, u64>, out: &mut Collector<'_, u64>| {
                    ctx.output(&odd(), v);
                    out.collect(v);
                    Ok::<(), FnError>(())
                })
            })
            .with_side_outputs()
            .branch_buffer(BUFFER);
        let stats = split.branch_stats();
        let (side_seen, main_seen) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let slow = move |shard: usize, branch_is_side: bool| -> u64 {
            let slow_branch = branch_is_side == slow_side;
            if slow_branch && (!keyed || shard == 0) { 2_000 } else { u64::MAX }
        };
        let mut job = Job::new(&pipeline);
        let s = side_seen.clone();
        let side_sink =
            move |shard: ShardInfo| Slow { every: slow(shard.index, true), seen: s.clone() };
        if keyed {
            let side = split.side_output_stream(&odd()).key_by(|v: &u64| *v % 7).process(|| {
                process_fn(|v: u64, _: &mut Context<'_, u64>, out: &mut Collector<'_, u64>| {
                    out.collect(v);
                    Ok::<(), FnError>(())
                })
            });
            job.sink(side, side_sink);
        } else {
            job.sink(split.side_output_stream(&odd()), side_sink);
        }
        let m = main_seen.clone();
        job.sink(split, move |shard: ShardInfo| Slow {
            every: slow(shard.index, false),
            seen: m.clone(),
        });
        job.run().unwrap();
        let case = format!("{shards} shards, slow side {slow_side}, keyed {keyed}");
        assert_eq!(side_seen.load(Ordering::Relaxed), EVENTS, "{case}");
        assert_eq!(main_seen.load(Ordering::Relaxed), EVENTS, "{case}");
        let peak = stats.peak_buffered();
        assert!(peak <= BOUND, "{case}: the tee held {peak} elements (bound {BOUND})");
        assert!(peak > 0, "{case}: the side records pass through the tee");
    }
    const { assert!(BUFFER < DEFAULT_BRANCH_BUFFER) };
}

#[test]
fn a_side_output_alone_and_two_consumers_of_one_tag() {
    let pipeline = Pipeline::new().shards(2);
    let split = pipeline
        .from_iter(0..1000u64)
        .key_by(|v: &u64| *v)
        .process(|| {
            process_fn(|v: u64, ctx: &mut Context<'_, u64>, out: &mut Collector<'_, u64>| {
                if v % 2 == 1 {
                    ctx.output(&odd(), v);
                }
                out.collect(v);
                Ok::<(), FnError>(())
            })
        })
        .with_side_outputs();
    // Only the side output is run: the main output is discarded.
    let mut odd_values = split.side_output_stream(&odd()).collect().unwrap();
    odd_values.sort_unstable();
    assert_eq!(odd_values, (0..1000).filter(|v| v % 2 == 1).collect::<Vec<u64>>());

    let split = pipeline
        .from_iter(0..10u64)
        .key_by(|v: &u64| *v)
        .process(|| {
            process_fn(|v: u64, ctx: &mut Context<'_, u64>, _: &mut Collector<'_, u64>| {
                ctx.output(&odd(), v);
                Ok::<(), FnError>(())
            })
        })
        .side_output(&odd(), |_, _| {})
        .with_side_outputs();
    let mut job = Job::new(&pipeline);
    job.collect(split.side_output_stream(&odd()));
    match job.run() {
        Err(PipelineError::Config(e)) => {
            assert!(matches!(e, ConfigError::SideOutputConsumedTwice { .. }), "{e}");
            assert!(e.to_string().contains("two consumers"), "{e}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn a_running_job_drains_or_stops() {
    for shards in [1, 2] {
        let pipeline = Pipeline::new().shards(shards);
        let (input, stream) = pipeline.push_source::<u64>(32);
        let split = stream
            .key_by(|v: &u64| *v % 10)
            .process(|| {
                process_fn(|v: u64, ctx: &mut Context<'_, u64>, out: &mut Collector<'_, u64>| {
                    if v % 2 == 1 {
                        ctx.output(&odd(), v);
                    } else {
                        out.collect(v);
                    }
                    Ok::<(), FnError>(())
                })
            })
            .with_side_outputs();
        let side = split.side_output_stream(&odd());
        let mut job = Job::new(&pipeline);
        let odd_rx = job.channel(side, 16);
        let even = job.collect(split);
        let running = job.spawn().unwrap();
        let reader = std::thread::spawn(move || odd_rx.iter().collect::<Vec<u64>>());
        for v in 0..1000 {
            input.push(v).unwrap();
        }
        input.finish();
        let mut run = running.join().unwrap();
        let mut odd_values = reader.join().unwrap();
        odd_values.sort_unstable();
        assert_eq!(odd_values, (0..1000).filter(|v| v % 2 == 1).collect::<Vec<u64>>());
        let mut even_values = run.take_values(even);
        even_values.sort_unstable();
        assert_eq!(even_values, (0..1000).filter(|v| v % 2 == 0).collect::<Vec<u64>>());

        // Stop at once: the input stays open, so the job is cut short.
        let (input, stream) = pipeline.push_source::<u64>(32);
        let mut job = Job::new(&pipeline);
        let rx = job.channel(stream.map(|v| v + 1), 16);
        let running = job.spawn().unwrap();
        input.push(1).unwrap();
        assert_eq!(rx.recv(), Ok(2));
        assert!(matches!(running.cancel(), Err(PipelineError::Stopped)));
        assert!(input.push(5).is_err());
    }
}

/// splitmix64 (wrapping arithmetic): a fixed-seed mix for test data.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
