//! The keyed backend on its own, without a user trait: the batch pipeline against one-by-one
//! processing, key groups, chunked firing, the re-fire guard, and the end of time.

use std::collections::VecDeque;
use std::ops::ControlFlow;

use super::*;
use crate::keygroup::KeyGroups;
use crate::state::ValueStateDescriptor;
use crate::time::MAX_WATERMARK;

fn kg() -> KeyGroups {
    KeyGroups::new(128).unwrap()
}

/// Counts per key with a value state, and registers a timer at `ts + 10` per record; returns the
/// (key, count) pairs seen, in order.
fn run(batch: usize, keys: &[u64]) -> (Vec<(u64, u64)>, KeyedBackend<u64>) {
    let mut b = KeyedBackend::<u64>::new(BackendSettings::default(), 0);
    let count = b.state_registry().value_state(ValueStateDescriptor::<u64>::new("n")).unwrap();
    let mut seen = Vec::new();
    for chunk in keys.chunks(batch) {
        let mut input: VecDeque<KeyedRecord<u64, ()>> = chunk
            .iter()
            .enumerate()
            .map(|(i, &k)| KeyedRecord::new(k, (), Some(i as i64), &kg()))
            .collect();
        let flow = b
            .drive(
                &mut input,
                |r| Some(r.hash),
                |b, r| {
                    let n = b
                        .enter(r.key, r.hash, r.key_group, r.timestamp, |mut cx| {
                            let n = count.value(&cx.scope).unwrap().unwrap_or(0) + 1;
                            count.update(&cx.scope, n).unwrap();
                            let at = r.timestamp.unwrap_or(0) + 10;
                            cx.timers.register(TimeDomain::EventTime, at).unwrap();
                            n
                        })
                        .unwrap();
                    seen.push((r.key, n));
                    Ok::<_, ()>(ControlFlow::Continue(()))
                },
            )
            .unwrap();
        assert_eq!(flow, ControlFlow::Continue(()));
        assert!(input.is_empty());
    }
    (seen, b)
}

#[test]
fn the_batch_pipeline_equals_one_by_one_processing() {
    let keys: Vec<u64> = (0..5_000u64).map(|i| (i * 7919) % 613).collect();
    let (one, b1) = run(1, &keys);
    let (batched, b2) = run(256, &keys);
    assert_eq!(one, batched);
    assert_eq!(b1.num_keys(), 613);
    assert_eq!(b2.num_state_entries(), 613);
    assert_eq!(b2.metrics().records_in, 5_000);
    // Every key id knows its key group.
    for (id, key) in b2.keys() {
        assert_eq!(b2.key_group(id), Some(kg().key_group_of(key)));
    }
}

#[test]
fn an_advance_fires_in_chunks_and_forwards_its_watermark_last() {
    let keys: Vec<u64> = (0..100).collect();
    let (_, mut b) = run(64, &keys);
    assert!(b.begin_watermark(1_000));
    let mut fired = Vec::new();
    let mut steps = 0;
    loop {
        steps += 1;
        let step = b
            .continue_advance(30, |cx, t, d| {
                assert_eq!(d, TimeDomain::EventTime);
                assert_eq!(cx.timers.watermark(), 1_000);
                fired.push((*cx.key(), t.timestamp));
                Ok::<_, ()>(())
            })
            .unwrap();
        if let AdvanceStep::Complete { watermark } = step {
            assert_eq!(watermark, Some(1_000));
            break;
        }
    }
    assert_eq!(steps, 4, "100 timers in chunks of 30");
    assert_eq!(fired.len(), 100);
    assert!(fired.windows(2).all(|w| w[0].1 <= w[1].1), "timestamp order");
    assert!(!b.begin_watermark(1_000), "a watermark that does not advance is dropped");
    assert_eq!(b.metrics().watermarks_dropped, 1);
}

#[test]
fn a_timer_re_registering_itself_stops_the_advance() {
    let mut b = KeyedBackend::<u64>::new(BackendSettings::default().max_timer_refires(Some(5)), 0);
    let r = KeyedRecord::new(1u64, (), Some(5), &kg());
    b.enter(r.key, r.hash, r.key_group, r.timestamp, |mut cx| {
        cx.timers.register(TimeDomain::EventTime, 5).unwrap();
    })
    .unwrap();
    assert!(b.begin_watermark(5));
    let e = b
        .continue_advance(usize::MAX, |mut cx, t, d| {
            cx.timers.register(d, t.timestamp).unwrap();
            Ok::<_, ()>(())
        })
        .unwrap_err();
    match e {
        FireError::TimerLoop { timestamp: 5, refires: 6, key, .. } => assert_eq!(key, "1"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn at_the_end_of_time_a_timer_re_arming_max_is_dropped_and_counted() {
    let mut b = KeyedBackend::<u64>::new(BackendSettings::default(), 0);
    let r = KeyedRecord::new(1u64, (), Some(5), &kg());
    b.enter(r.key, r.hash, r.key_group, r.timestamp, |mut cx| {
        cx.timers.register(TimeDomain::EventTime, MAX_WATERMARK - 1).unwrap();
    })
    .unwrap();
    assert!(b.begin_watermark(MAX_WATERMARK));
    let mut fired = Vec::new();
    let step = b
        .continue_advance(usize::MAX, |mut cx, t, _| {
            fired.push(t.timestamp);
            cx.timers.register(TimeDomain::EventTime, t.timestamp.saturating_add(1)).unwrap();
            Ok::<_, ()>(())
        })
        .unwrap();
    assert_eq!(step, AdvanceStep::Complete { watermark: Some(MAX_WATERMARK) });
    assert_eq!(fired, [MAX_WATERMARK - 1, MAX_WATERMARK]);
    assert_eq!(b.metrics().timers_dropped_at_end_of_time, 1);
    b.finish(false, |_, _, _| Ok::<_, ()>(())).unwrap();
    assert!(b.is_finished());
}
