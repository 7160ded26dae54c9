//! Unbounded pipelines fed by the embedding program through a push source. Nothing here depends
//! on timing: every wait is for an output or for the end of the pipeline.
//! * `pushes_from_two_threads_give_exact_per_key_counts` — two threads push concurrently through
//!   clones of one handle into a small queue (backpressure); per-handle order is kept per key, the
//!   final per-key counts are exact on 1 and 2 shards, and dropping the handles drains the
//!   pipeline (the final watermark fires the end-of-input timers) and returns.
//! * `pushed_watermarks_fire_event_time_timers` — watermarks pushed by the program fire event-time
//!   timers while the input is still open; finishing the handle fires the rest.
//! * `try_push_hands_the_value_back` — a full queue and a stopped pipeline give the value back.
//! * `cancel_stops_at_once` — `cancel` on a pipeline whose input is open returns `Stopped`, and
//!   pushing afterwards fails with the value handed back; `drain` after the input ends returns
//!   every output.
//! * `user_errors_surface_with_operator_and_shard` — an error in a user function reaches the
//!   embedding program as `PipelineError::Function`, naming the operator and the shard that owns
//!   the poisoned key.

use std::collections::BTreeMap;

use pinwheel_engine::keygroup::KeyGroups;
use pinwheel_operators::pipeline::{Pipeline, PushHandle, TryPushError};
use pinwheel_operators::{
    Collector, Context, FnError, KeyedProcessFunction, MAX_WATERMARK, OnTimerContext, OpenContext,
    Phase, PipelineError, Timestamp, ValueState, ValueStateDescriptor, process_fn,
};

/// A pushed record: (producer, sequence number, key).
type Pushed = (u64, u64, u64);

/// Counts records per key; reports the count when the input ends. Fails if a producer's records
/// of one key arrive out of order.
#[derive(Default)]
struct CountInOrder {
    count: ValueState<u64>,
    last_seq: [ValueState<u64>; 2],
}

impl KeyedProcessFunction for CountInOrder {
    type Key = u64;
    type In = Pushed;
    type Out = (u64, u64);

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        self.count = ctx.value_state(ValueStateDescriptor::new("count"))?;
        self.last_seq = [
            ctx.value_state(ValueStateDescriptor::new("seq0"))?,
            ctx.value_state(ValueStateDescriptor::new("seq1"))?,
        ];
        Ok(())
    }

    fn process_element(
        &mut self,
        (producer, seq, _key): Pushed,
        ctx: &mut Context<'_, u64>,
        _: &mut Collector<'_, (u64, u64)>,
    ) -> Result<(), FnError> {
        let last = &self.last_seq[producer as usize];
        if let Some(prev) = last.value(ctx)? {
            if prev >= seq {
                return Err(format!("producer {producer}: {seq} after {prev}").into());
            }
        }
        last.update(ctx, seq)?;
        let n = self.count.value(ctx)?.unwrap_or(0);
        self.count.update(ctx, n + 1)?;
        // Fires with the final watermark, when the input ends.
        ctx.timer_service().register_event_time_timer(MAX_WATERMARK)?;
        Ok(())
    }

    fn on_timer(
        &mut self,
        _: Timestamp,
        ctx: &mut OnTimerContext<'_, u64>,
        out: &mut Collector<'_, (u64, u64)>,
    ) -> Result<(), FnError> {
        out.collect((*ctx.current_key(), self.count.value(ctx)?.unwrap_or(0)));
        Ok(())
    }
}

#[test]
fn pushes_from_two_threads_give_exact_per_key_counts() {
    const PER_PRODUCER: u64 = 10_000;
    const KEYS: u64 = 97;
    for shards in [1, 2] {
        let (input, stream) = Pipeline::new().shards(shards).push_source::<Pushed>(64);
        let producers: Vec<_> = (0..2u64)
            .map(|producer| {
                let input = input.clone();
                std::thread::spawn(move || {
                    for seq in 0..PER_PRODUCER {
                        let key = (seq * 7 + producer) % KEYS;
                        input.push((producer, seq, key)).expect("the pipeline is running");
                    }
                })
            })
            .collect();
        // The original handle is not needed: the input ends when the producers' clones are gone.
        input.finish();
        let counts = stream
            .key_by(|p: &Pushed| p.2)
            .process(CountInOrder::default)
            .name("count")
            .collect()
            .unwrap();
        for p in producers {
            p.join().unwrap();
        }
        let mut expected: BTreeMap<u64, u64> = BTreeMap::new();
        for producer in 0..2 {
            for seq in 0..PER_PRODUCER {
                *expected.entry((seq * 7 + producer) % KEYS).or_default() += 1;
            }
        }
        let got: BTreeMap<u64, u64> = counts.iter().copied().collect();
        assert_eq!(counts.len(), got.len(), "one count per key, on {shards} shards");
        assert_eq!(got, expected, "on {shards} shards");
    }
}

#[test]
fn pushed_watermarks_fire_event_time_timers() {
    for shards in [1, 2] {
        let (input, stream) = Pipeline::new().shards(shards).push_source::<u64>(64);
        let running = stream
            .key_by(|k: &u64| *k)
            .process(|| {
                process_fn(|_: u64, ctx: &mut Context<'_, u64>, _: &mut Collector<'_, _>| {
                    let ts = ctx.timestamp().unwrap_or(0);
                    ctx.timer_service().register_event_time_timer(ts + 10)?;
                    Ok::<(), FnError>(())
                })
                .on_timer(
                    |t: Timestamp,
                     ctx: &mut OnTimerContext<'_, u64>,
                     out: &mut Collector<'_, (u64, Timestamp, Timestamp)>| {
                        out.collect((*ctx.current_key(), t, ctx.current_watermark()));
                        Ok(())
                    },
                )
            })
            .into_channel(1024)
            .unwrap();
        for key in 0..5u64 {
            input.push_at(key, 100 + key as Timestamp).unwrap();
            input.push_at(key, 300 + key as Timestamp).unwrap();
        }
        input.push_watermark(200).unwrap();
        // The input is still open: only the timers <= 200 can have fired, and all of them do.
        let mut fired: Vec<_> = (0..5).map(|_| running.recv().unwrap()).collect();
        fired.sort_unstable();
        let expected: Vec<_> = (0..5u64).map(|k| (k, 110 + k as Timestamp, 200)).collect();
        assert_eq!(fired, expected, "on {shards} shards");
        // Ending the input fires the rest with the final watermark.
        input.finish();
        let mut rest = running.drain().unwrap();
        rest.sort_unstable();
        let expected: Vec<_> =
            (0..5u64).map(|k| (k, 310 + k as Timestamp, MAX_WATERMARK)).collect();
        assert_eq!(rest, expected, "on {shards} shards");
    }
}

#[test]
fn the_handle_is_shared_between_threads() {
    fn clone_send_sync<T: Clone + Send + Sync + 'static>() {}
    clone_send_sync::<PushHandle<String>>();
}

#[test]
fn try_push_hands_the_value_back() {
    let (input, stream) = Pipeline::new().shards(1).push_source::<String>(2);
    input.try_push("a".to_string()).unwrap();
    input.try_push_at("b".to_string(), 5).unwrap();
    assert_eq!(input.queued(), 2);
    match input.try_push("c".to_string()) {
        Err(TryPushError::Full(v)) => assert_eq!(v, "c"),
        other => panic!("expected Full, got {other:?}"),
    }
    // Dropped before it ran: the pipeline will never read, pushing hands the value back.
    drop(stream);
    match input.try_push("d".to_string()) {
        Err(TryPushError::Stopped(v)) => assert_eq!(v, "d"),
        other => panic!("expected Stopped, got {other:?}"),
    }
    assert_eq!(input.push("e".to_string()).unwrap_err().into_inner(), "e");
    assert_eq!(input.push_watermark(9).unwrap_err().into_inner(), 9);
    assert!(input.mark_idle().is_err());
}

#[test]
fn cancel_stops_at_once() {
    for shards in [1, 2] {
        let (input, stream) = Pipeline::new().shards(shards).push_source::<u64>(8);
        let running = stream.map(|v| v + 1).into_channel(8).unwrap();
        input.push(1).unwrap();
        assert_eq!(running.recv(), Some(2), "the pipeline runs");
        // The input is still open, so the pipeline cannot have finished: it is cut short.
        assert!(matches!(running.cancel(), Err(PipelineError::Stopped)), "on {shards} shards");
        assert_eq!(input.push(3).unwrap_err().into_inner(), 3, "a stopped pipeline takes nothing");

        // The graceful way: end the input, then drain every output.
        let (input, stream) = Pipeline::new().shards(shards).push_source::<u64>(8);
        let running = stream.map(|v| v * 10).into_channel(4).unwrap();
        let pusher = std::thread::spawn(move || {
            for v in 0..100 {
                input.push(v).unwrap();
            }
        });
        let mut out = running.drain().unwrap();
        pusher.join().unwrap();
        out.sort_unstable();
        assert_eq!(out, (0..100).map(|v| v * 10).collect::<Vec<_>>(), "on {shards} shards");
    }
}

#[test]
fn user_errors_surface_with_operator_and_shard() {
    const POISON: u64 = 13;
    for shards in [1, 2] {
        let (input, stream) = Pipeline::new().shards(shards).push_source::<u64>(16);
        let running = stream
            .key_by(|k: &u64| *k)
            .process(|| {
                // No outputs: nothing can wait on the output channel.
                process_fn(|k: u64, _: &mut Context<'_, u64>, _: &mut Collector<'_, u64>| {
                    if k == POISON {
                        return Err::<(), FnError>("poison key".into());
                    }
                    Ok(())
                })
            })
            .name("validate")
            .into_channel(1024)
            .unwrap();
        // Push until the pipeline has stopped: the poisoned record stops it, and from then on
        // pushing fails (at the latest once the queue is full).
        let mut pushed = 0u64;
        while input.push(pushed % 20).is_ok() {
            pushed += 1;
        }
        assert!(pushed > POISON);
        match running.join() {
            Err(PipelineError::Function { operator, shard, phase, source }) => {
                assert_eq!(&*operator, "validate");
                assert_eq!(shard, KeyGroups::for_shards(shards).shard_for_key(&POISON, shards));
                assert_eq!(phase, Phase::ProcessElement);
                assert_eq!(source.to_string(), "poison key");
            }
            other => panic!("expected a function error, got {other:?}"),
        }
    }
}
