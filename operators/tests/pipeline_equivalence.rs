//! The batched path a pipeline runs (records go through the keyed operator's prefetch pipeline,
//! 16 records deep, flushed at every watermark and pause) gives exactly the output of the one-by-one
//! path the test harness runs, on random element sequences: many keys (so the key table and the
//! state columns grow, and move, mid-stream), repeated keys inside one pipeline window, timers set,
//! deleted and fired, watermarks between records.

use pinwheel_operators::pipeline::Pipeline;
use pinwheel_operators::{
    Collector, Context, FnError, KeyedProcessFunction, OnTimerContext, OpenContext, StreamElement,
    Timestamp, ValueState, ValueStateDescriptor, harness::KeyedHarness,
};
use proptest::prelude::*;

/// Counts per key, sets a timer `delay` after the record, deletes the previous one on odd values,
/// and reports `(key, count, timer)` from `on_timer`.
#[derive(Default)]
struct Counter {
    count: ValueState<u64>,
    last_timer: ValueState<Timestamp>,
}

impl KeyedProcessFunction for Counter {
    type Key = u32;
    type In = (u32, u32);
    type Out = (u32, u64, Timestamp);

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        self.count = ctx.value_state(ValueStateDescriptor::new("count"))?;
        self.last_timer = ctx.value_state(ValueStateDescriptor::new("last"))?;
        Ok(())
    }

    fn process_element(
        &mut self,
        (key, v): (u32, u32),
        ctx: &mut Context<'_, u32>,
        out: &mut Collector<'_, Self::Out>,
    ) -> Result<(), FnError> {
        let n = self.count.value(ctx)?.unwrap_or(0) + 1;
        self.count.update(ctx, n)?;
        let ts = ctx.timestamp().unwrap_or(0);
        if v % 2 == 1 {
            if let Some(t) = self.last_timer.value(ctx)? {
                ctx.timer_service().delete_event_time_timer(t)?;
            }
        }
        let at = ts.saturating_add(i64::from(v % 50));
        ctx.timer_service().register_event_time_timer(at)?;
        self.last_timer.update(ctx, at)?;
        if v % 7 == 0 {
            out.collect((key, n, -1));
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        t: Timestamp,
        ctx: &mut OnTimerContext<'_, u32>,
        out: &mut Collector<'_, Self::Out>,
    ) -> Result<(), FnError> {
        let n = self.count.value(ctx)?.unwrap_or(0);
        out.collect((*ctx.current_key(), n, t));
        Ok(())
    }
}

fn elements() -> impl Strategy<Value = Vec<StreamElement<(u32, u32)>>> {
    let element = prop_oneof![
        12 => (0u32..400, any::<u32>(), 0i64..2_000)
            .prop_map(|(k, v, ts)| StreamElement::record((k, v), ts)),
        1 => (0u32..400, any::<u32>()).prop_map(|(k, v)| StreamElement::untimed((k, v))),
        1 => (0i64..2_000).prop_map(StreamElement::Watermark),
    ];
    prop::collection::vec(element, 0..600)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn pipeline_matches_harness(input in elements()) {
        let expected = {
            let mut h = KeyedHarness::new(Counter::default(), |e: &(u32, u32)| e.0).unwrap();
            for e in input.clone() {
                match e {
                    StreamElement::Record { value, timestamp } => {
                        h.process_element(value, timestamp).unwrap()
                    }
                    StreamElement::Watermark(w) => h.process_watermark(w).unwrap(),
                    StreamElement::Idle => h.mark_idle(),
                    // The generated input holds no barriers (checkpoints are off).
                    StreamElement::Barrier(_) => {}
                }
            }
            h.end_input().unwrap();
            h.take_output()
        };
        let got = Pipeline::new()
            .shards(1)
            .from_elements(input)
            .key_by(|e: &(u32, u32)| e.0)
            .process(Counter::default)
            .collect_elements()
            .unwrap();
        prop_assert_eq!(got, expected);
    }
}
