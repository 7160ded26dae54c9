//! Memory follows the live keys, not every key ever seen (docs/reliability.md, "memory bounds"):
//!
//! * 10 M ever-new keys (session ids, UUIDs), each holding state and a timer until its timer fires
//!   and clears it: the operator's memory stays at the size of the keys live at once, and the
//!   removed keys' ids are given out again;
//! * a key limit per shard gives a typed error naming the operator instead of memory running out,
//!   and counts live keys only.

use pinwheel_operators::harness::{HarnessBuilder, KeyedHarness};
use pinwheel_operators::{
    Collector, Context, FnError, KeyedProcessFunction, OnTimerContext, OpenContext, PipelineError,
    Timestamp, ValueState, ValueStateDescriptor,
};

/// Keeps each key's last value until an event-time timer 1 ms later, then emits and clears it.
#[derive(Default)]
struct Session {
    last: ValueState<u64>,
}

impl KeyedProcessFunction for Session {
    type Key = u64;
    type In = u64;
    type Out = u64;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        self.last = ctx.value_state(ValueStateDescriptor::new("last"))?;
        Ok(())
    }

    fn process_element(
        &mut self,
        v: u64,
        ctx: &mut Context<'_, u64>,
        _out: &mut Collector<'_, u64>,
    ) -> Result<(), FnError> {
        self.last.update(ctx, v)?;
        let ts = ctx.timestamp().unwrap_or(0);
        ctx.timer_service().register_event_time_timer(ts + 1)?;
        Ok(())
    }

    fn on_timer(
        &mut self,
        _t: Timestamp,
        ctx: &mut OnTimerContext<'_, u64>,
        out: &mut Collector<'_, u64>,
    ) -> Result<(), FnError> {
        if let Some(v) = self.last.value(ctx)? {
            out.collect(v);
        }
        self.last.clear(ctx)?;
        Ok(())
    }
}

#[test]
fn ten_million_ever_new_keys_whose_state_is_cleared_keep_memory_at_the_live_keys() {
    const KEYS: u64 = 10_000_000;
    const WATERMARK_EVERY: u64 = 1_000;
    let mut h = KeyedHarness::new(Session::default(), |v: &u64| *v).unwrap();
    let mut emitted = 0usize;
    let mut peak_keys = 0;
    let mut peak_bytes = 0;
    for i in 0..KEYS {
        h.process_element(i, i as i64).unwrap();
        if i % WATERMARK_EVERY == WATERMARK_EVERY - 1 {
            peak_keys = peak_keys.max(h.num_keys());
            peak_bytes = peak_bytes.max(h.memory_bytes());
            h.process_watermark(i as i64).unwrap();
            emitted += h.take_output().len();
        }
    }
    h.end_input().unwrap();
    emitted += h.take_output().iter().filter(|e| e.value().is_some()).count();
    // Every key emitted once, counting the final watermark's records (watermarks are outputs too).
    assert!(emitted as u64 >= KEYS);
    assert!(peak_keys <= WATERMARK_EVERY as usize + 1, "{peak_keys} keys live at once");
    assert_eq!(h.num_keys(), 0, "every key's state was cleared and its timer fired");
    assert_eq!(h.metrics().keys_removed, KEYS);
    // About 1,000 live keys: the key table, the key and group vectors, the timer records and the
    // state rows hold 1,000 entries; the rest is the timer wheel's 16 KiB list chunks, bounded by
    // its 6 x 64 slots and spares, whatever the keys (measured: 1.2 MB after 1 M keys, 1.7 MB
    // after 10 M, as event time reaches more of the wheel's coarse slots). Without removal the
    // 10 M keys' rows, timer records and table took about 600 MB.
    assert!(peak_bytes < 4 << 20, "operator memory {peak_bytes} bytes at 1,000 live keys");
}

#[test]
fn a_key_limit_is_a_typed_error_and_counts_live_keys() {
    let mut h = HarnessBuilder::default()
        .max_keys_per_shard(3)
        .keyed(Session::default(), |v: &u64| *v)
        .unwrap();
    for k in 0..3 {
        h.process_element(k, 0).unwrap();
    }
    let e = h.process_element(3, 0).unwrap_err();
    assert!(matches!(e, PipelineError::Capacity { .. }), "{e:?}");
    assert!(e.to_string().contains("limit is 3"), "{e}");
    // The timers fire and clear the three keys, which are removed: room for three more.
    h.process_watermark(1).unwrap();
    assert_eq!(h.num_keys(), 0);
    for k in 10..13 {
        h.process_element(k, 5).unwrap();
    }
    assert_eq!(h.num_keys(), 3);
    assert_eq!(h.metrics().keys_removed, 3);
    assert!(matches!(h.process_element(13, 5), Err(PipelineError::Capacity { .. })));
}
