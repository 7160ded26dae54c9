//! Multi-shard behaviour that does not depend on timing:
//! * `lagging_partition_holds_the_shard_watermark_at_the_minimum` — the watermark a keyed function
//!   sees on any shard is the minimum over all source partitions (docs/semantics.md A2.4), however far ahead
//!   the other partition is.
//! * `slow_sink_bounds_how_far_the_source_runs_ahead` — bounded rings and channels are
//!   backpressure: with a slow consumer the source is never more than a fixed number of records
//!   ahead of it (so memory stays bounded), and the pipeline completes.
//! * `user_errors_name_operator_and_shard` — an error in a user function stops every shard and
//!   reaches the caller with the operator and shard named.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pinwheel_operators::pipeline::{BATCH, BuildContext, Pipeline, Stage, StagePlan, Status, Turn};
use pinwheel_operators::{
    Collector, Context, FnError, PipelineError, SinkError, StreamElement, Timestamp, process_fn,
};

/// Partition 0 races ahead (watermark 1000); partition 1 stays at watermark 10 until released.
struct Lagging {
    release: Arc<AtomicBool>,
}

struct LaggingPartition {
    shard: usize,
    step: u32,
    release: Arc<AtomicBool>,
}

impl StagePlan for Lagging {
    type Item = (u64, Timestamp);
    type Stage = LaggingPartition;
    fn build(&self, cx: &BuildContext) -> Result<LaggingPartition, PipelineError> {
        Ok(LaggingPartition { shard: cx.shard().index, step: 0, release: self.release.clone() })
    }
}

impl Stage for LaggingPartition {
    type Item = (u64, Timestamp);
    fn pull(
        &mut self,
        _: &mut Turn,
        out: &mut Vec<StreamElement<(u64, Timestamp)>>,
    ) -> Result<Status, PipelineError> {
        for _ in 0..BATCH {
            self.step += 1;
            let e = match (self.shard, self.step) {
                (0, 1) => StreamElement::Watermark(1000),
                (0, s @ 2..=41) => StreamElement::record((u64::from(s), 2000), 2000),
                (1, 1) => StreamElement::Watermark(10),
                (1, s @ 2..=41) => StreamElement::record((u64::from(s) + 100, 20), 20),
                (1, 42) if !self.release.load(Ordering::Acquire) => {
                    self.step -= 1;
                    return Ok(Status::Idle);
                }
                (_, s) if s <= 42 => return Ok(Status::Busy),
                (_, 43) => StreamElement::Watermark(i64::MAX),
                _ => return Ok(Status::Done),
            };
            out.push(e);
        }
        Ok(Status::Busy)
    }
}

#[test]
fn lagging_partition_holds_the_shard_watermark_at_the_minimum() {
    let release = Arc::new(AtomicBool::new(false));
    let running = Pipeline::new()
        .shards(2)
        // Without alignment partition 0 runs ahead freely; the minimum still holds.
        .watermark_alignment(None)
        .from_source(Lagging { release: release.clone() })
        .key_by(|e: &(u64, Timestamp)| e.0)
        .process(|| {
            process_fn(
                |e: (u64, Timestamp),
                 ctx: &mut Context<'_, u64>,
                 out: &mut Collector<'_, (u64, Timestamp)>| {
                    out.collect((e.0, ctx.current_watermark()));
                    Ok::<(), FnError>(())
                },
            )
        })
        .into_channel(1024)
        .unwrap();
    // All 80 records arrive while partition 1 is held at watermark 10.
    let seen: Vec<(u64, Timestamp)> = (0..80).map(|_| running.recv().unwrap()).collect();
    assert!(
        seen.iter().all(|&(_, wm)| wm <= 10),
        "a shard ran ahead of the slowest partition: {seen:?}"
    );
    assert!(seen.iter().any(|&(_, wm)| wm == 10), "the minimum should have reached 10: {seen:?}");
    release.store(true, Ordering::Release);
    assert_eq!(running.recv(), None);
    running.join().unwrap();
}

#[test]
fn watermark_alignment_holds_back_a_partition_that_runs_ahead() {
    // Partition 0 is at watermark 1000, partition 1 held at 10: with at most 100 ms of drift,
    // shard 0 must not read partition 0's records until partition 1 catches up.
    let release = Arc::new(AtomicBool::new(false));
    let running = Pipeline::new()
        .shards(2)
        .watermark_alignment(Some(100))
        .from_source(Lagging { release: release.clone() })
        .key_by(|e: &(u64, Timestamp)| e.0)
        .process(|| {
            process_fn(
                |e: (u64, Timestamp),
                 ctx: &mut Context<'_, u64>,
                 out: &mut Collector<'_, (u64, Timestamp)>| {
                    out.collect((e.0, ctx.timestamp().unwrap_or(0)));
                    Ok::<(), FnError>(())
                },
            )
        })
        .into_channel(1024)
        .unwrap();
    // Partition 1's 40 records (ts 20) arrive; partition 0's (ts 2000) are held back.
    let first: Vec<(u64, Timestamp)> = (0..40).map(|_| running.recv().unwrap()).collect();
    assert!(first.iter().all(|&(_, ts)| ts == 20), "partition 0 ran ahead: {first:?}");
    assert!(
        running.recv_timeout(std::time::Duration::from_millis(200)).is_err(),
        "a record of the partition that is ahead came through"
    );
    release.store(true, Ordering::Release);
    // Partition 1 ends (its watermark goes to MAX), which releases partition 0.
    let rest: Vec<(u64, Timestamp)> = running.iter().collect();
    assert_eq!(rest.len(), 40);
    assert!(rest.iter().all(|&(_, ts)| ts == 2000));
    running.join().unwrap();
}

/// Counts the records it has emitted, so the test can see how far ahead of the sink it is.
struct Counting {
    events: u64,
    emitted: Arc<AtomicU64>,
}

struct CountingPartition {
    next: u64,
    step: u64,
    end: u64,
    emitted: Arc<AtomicU64>,
    done: bool,
}

impl StagePlan for Counting {
    type Item = u64;
    type Stage = CountingPartition;
    fn build(&self, cx: &BuildContext) -> Result<CountingPartition, PipelineError> {
        Ok(CountingPartition {
            next: cx.shard().index as u64,
            step: cx.shard().count as u64,
            end: self.events,
            emitted: self.emitted.clone(),
            done: false,
        })
    }
}

impl Stage for CountingPartition {
    type Item = u64;
    fn pull(
        &mut self,
        _: &mut Turn,
        out: &mut Vec<StreamElement<u64>>,
    ) -> Result<Status, PipelineError> {
        for _ in 0..BATCH {
            if self.next >= self.end {
                if !self.done {
                    self.done = true;
                    out.push(StreamElement::Watermark(i64::MAX));
                }
                return Ok(Status::Done);
            }
            let i = self.next;
            self.next += self.step;
            self.emitted.fetch_add(1, Ordering::Relaxed);
            out.push(StreamElement::record(i, i as i64));
        }
        Ok(Status::Busy)
    }
}

#[test]
fn slow_sink_bounds_how_far_the_source_runs_ahead() {
    const EVENTS: u64 = 200_000;
    const SHARDS: u64 = 2;
    const RING: u64 = 64;
    const CHANNEL: u64 = 16;
    let emitted = Arc::new(AtomicU64::new(0));
    let running = Pipeline::new()
        .shards(SHARDS as usize)
        .ring_capacity(RING as usize)
        .from_source(Counting { events: EVENTS, emitted: emitted.clone() })
        .key_by(|i: &u64| *i % 1000)
        .process(|| {
            process_fn(|i: u64, _: &mut Context<'_, u64>, out: &mut Collector<'_, u64>| {
                out.collect(i);
                Ok::<(), FnError>(())
            })
        })
        .into_channel(CHANNEL as usize)
        .unwrap();
    // What can be in flight between the source and this thread: per shard, the rings into it, one
    // partial batch per destination, the keyed stage's input batch and output buffer, one sink
    // batch; plus the channel. Anything unbounded would let the source run ~EVENTS ahead.
    let bound = SHARDS * ((SHARDS - 1) * RING + SHARDS * 128 + 2 * 512 + 4096) + CHANNEL;
    let mut received = 0u64;
    let mut max_ahead = 0u64;
    while running.recv().is_some() {
        received += 1;
        max_ahead = max_ahead.max(emitted.load(Ordering::Relaxed) - received);
        if received % 5_000 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    running.join().unwrap();
    assert_eq!(received, EVENTS);
    assert!(max_ahead <= bound, "the source ran {max_ahead} records ahead (bound {bound})");
}

#[test]
fn user_errors_name_operator_and_shard() {
    let err = Pipeline::new()
        .shards(2)
        .from_iter(0..10_000u64)
        .key_by(|i: &u64| *i)
        .process(|| {
            process_fn(|i: u64, _: &mut Context<'_, u64>, _: &mut Collector<'_, u64>| {
                if i == 4321 {
                    return Err::<(), FnError>("poison record".into());
                }
                Ok(())
            })
        })
        .name("validate")
        .collect()
        .unwrap_err();
    match err {
        PipelineError::Function { operator, phase, source, .. } => {
            assert_eq!(&*operator, "validate");
            assert_eq!(phase, pinwheel_operators::Phase::ProcessElement);
            assert_eq!(source.to_string(), "poison record");
        }
        other => panic!("unexpected error: {other}"),
    }
}

#[test]
fn a_panicking_function_is_a_typed_error() {
    let err = Pipeline::new()
        .shards(2)
        .from_iter(0..1000u64)
        .key_by(|i: &u64| *i)
        .process(|| {
            process_fn(|i: u64, _: &mut Context<'_, u64>, _: &mut Collector<'_, u64>| {
                assert!(i != 500, "record 500 is cursed");
                Ok::<(), FnError>(())
            })
        })
        .collect()
        .unwrap_err();
    assert!(
        matches!(err, PipelineError::Panicked { ref message, .. } if message.contains("cursed")),
        "{err}"
    );
}

/// A timer burst streams: the sink sees the first outputs of a burst of 100,000 timers long before
/// the last timer fires (the firing loop runs in chunks), so no buffer holds the whole burst.
#[test]
fn a_timer_burst_streams_its_outputs_in_chunks() {
    use pinwheel_operators::pipeline::Sink;
    use pinwheel_operators::{KeyedProcessFunction, OnTimerContext};

    struct Burst(Arc<AtomicU64>);
    impl KeyedProcessFunction for Burst {
        type Key = u64;
        type In = u64;
        type Out = u64;
        fn process_element(
            &mut self,
            _: u64,
            ctx: &mut Context<'_, u64>,
            _: &mut Collector<'_, u64>,
        ) -> Result<(), FnError> {
            ctx.timer_service().register_event_time_timer(1_000)?;
            Ok(())
        }
        fn on_timer(
            &mut self,
            _: Timestamp,
            ctx: &mut OnTimerContext<'_, u64>,
            out: &mut Collector<'_, u64>,
        ) -> Result<(), FnError> {
            self.0.fetch_add(1, Ordering::Relaxed);
            out.collect(*ctx.current_key());
            Ok(())
        }
    }
    /// Records how many timers had fired when the first output arrived.
    struct FirstSeen {
        fired: Arc<AtomicU64>,
        at_first: Option<u64>,
        outputs: u64,
    }
    impl Sink<u64> for FirstSeen {
        fn write(&mut self, e: StreamElement<u64>) -> Result<(), SinkError> {
            if let StreamElement::Record { .. } = e {
                self.at_first.get_or_insert(self.fired.load(Ordering::Relaxed));
                self.outputs += 1;
            }
            Ok(())
        }
    }

    const KEYS: u64 = 100_000;
    let fired = Arc::new(AtomicU64::new(0));
    let elements =
        (0..KEYS).map(|k| StreamElement::record(k, 10)).chain([StreamElement::Watermark(2_000)]);
    let f = fired.clone();
    let run = Pipeline::new()
        .shards(1)
        .from_elements(elements)
        .key_by(|k: &u64| *k)
        .process(move || Burst(f.clone()))
        .run_sharded(|_| FirstSeen { fired: fired.clone(), at_first: None, outputs: 0 })
        .unwrap();
    let sink = &run.sinks[0];
    assert_eq!(sink.outputs, KEYS);
    let at_first = sink.at_first.unwrap();
    assert!(
        at_first <= 4_096,
        "{at_first} timers had fired before the first output reached the sink"
    );
}

/// A panic names the operator and the phase it happened in, as a returned error does: in
/// `process_element`, in `on_timer`, and in a sink (no operator then).
#[test]
fn a_panic_names_the_operator_shard_and_phase() {
    for shards in [1, 2] {
        let err = Pipeline::new()
            .shards(shards)
            .from_iter(0..1000u64)
            .key_by(|i: &u64| *i)
            .process(|| {
                process_fn(|i: u64, _: &mut Context<'_, u64>, _: &mut Collector<'_, u64>| {
                    assert!(i != 500, "record 500 is cursed");
                    Ok::<(), FnError>(())
                })
            })
            .name("validate")
            .collect()
            .unwrap_err();
        match err {
            PipelineError::Panicked { operator, phase, message, .. } => {
                assert_eq!(operator.as_deref(), Some("validate"));
                assert_eq!(phase, Some(pinwheel_operators::Phase::ProcessElement));
                assert!(message.contains("cursed"), "{message}");
            }
            other => panic!("unexpected error: {other}"),
        }
        let err = Pipeline::new()
            .shards(shards)
            .from_elements((0..100u64).map(|i| StreamElement::record(i, 10)))
            .key_by(|i: &u64| *i)
            .process(|| {
                process_fn(|_: u64, ctx: &mut Context<'_, u64>, _: &mut Collector<'_, u64>| {
                    ctx.timer_service().register_event_time_timer(20)?;
                    Ok::<(), FnError>(())
                })
                .on_timer(|_, _, _| panic!("the timer is cursed"))
            })
            .name("timers")
            .collect()
            .unwrap_err();
        match err {
            PipelineError::Panicked { operator, phase, .. } => {
                assert_eq!(operator.as_deref(), Some("timers"));
                assert_eq!(
                    phase,
                    Some(pinwheel_operators::Phase::OnTimer(
                        pinwheel_operators::TimeDomain::EventTime
                    ))
                );
            }
            other => panic!("unexpected error: {other}"),
        }
        #[derive(Debug)]
        struct Cursed;
        impl pinwheel_operators::pipeline::Sink<u64> for Cursed {
            fn write(&mut self, _: StreamElement<u64>) -> Result<(), SinkError> {
                panic!("the sink is cursed")
            }
        }
        let err =
            Pipeline::new().shards(shards).from_iter(0..10u64).run_sharded(|_| Cursed).unwrap_err();
        match err {
            PipelineError::Panicked { operator, phase, .. } => {
                assert_eq!(operator, None);
                assert_eq!(phase, Some(pinwheel_operators::Phase::Sink));
            }
            other => panic!("unexpected error: {other}"),
        }
    }
}

/// A sink's own error comes back as `PipelineError::Sink`, naming the shard.
#[test]
fn a_sink_error_is_returned_with_its_shard() {
    #[derive(Debug)]
    struct Full;
    impl pinwheel_operators::pipeline::Sink<u64> for Full {
        fn write(&mut self, e: StreamElement<u64>) -> Result<(), SinkError> {
            match e {
                StreamElement::Record { value: 7, .. } => Err("disk full".into()),
                _ => Ok(()),
            }
        }
    }
    let err = Pipeline::new().shards(1).from_iter(0..10u64).run_sharded(|_| Full).unwrap_err();
    match err {
        PipelineError::Sink { shard, source } => {
            assert_eq!(shard, 0);
            assert_eq!(source.to_string(), "disk full");
        }
        other => panic!("unexpected error: {other}"),
    }
}
