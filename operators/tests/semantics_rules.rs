//! docs/semantics.md Part A, rule by rule, for one-input operators and the pipeline; the README's
//! deliberate differences from Flink (each default and its Flink-compatible setting); and bad input.
//!
//! Every test asserts exact outputs — records with their timestamps, watermarks, idle markers, in
//! order — and, where the rule is about counting, the exact operator metrics. Tests are named after
//! the rule they check (`a1_06_...` is docs/semantics.md A1.6). Operator-level rules run through the test
//! harness ([`KeyedHarness`], [`Harness`]) with its manual processing-time clock; rules about
//! watermark generation and the end of input through a source run through the pipeline
//! (`Pipeline::new().shards(1)...collect_elements()`), with a [`ManualClock`] for processing time
//! (`Script` is a source that can move that clock between records).
//!
//! Rules covered: A1.1–A1.3, A1.5–A1.16; A2.1–A2.4, A2.8, A2.9, A2.10; A6.1, A6.3, A6.4; A7.1; the
//! README table "Where Pinwheel deliberately differs from Flink" (`readme_*`, and the rule tests
//! that name the difference they also cover); bad input (`bad_input_*`: the ends of the timestamp
//! axis, saturating timeouts, timers and keyed state where they cannot be used, foreign, unbound
//! and re-entrant state handles, panics, watermarks going backwards).
//!
//! A test marked `#[ignore = "bug: ..."]` states the rule as it should hold and fails against the
//! current implementation; the fix belongs in code this file does not own (run them with
//! `-- --ignored`).
//!
//! Rules that do not apply to Pinwheel, and why:
//! * A1.17 (BATCH execution mode) and A1.18 (async state): Pinwheel has neither.
//! * A1.4, A2.5–A2.7, A6.2, A7.2–A7.4: Pinwheel has no two-input (co-process or broadcast)
//!   operators yet; the multi-channel valve behind A2.4 is tested directly.
//! * A1.11's "the watermark is not checkpointed": Pinwheel has no checkpoints yet.
//! * A1.12's broadcast-side `timestamp()`: no broadcast functions.
//! * A1.15's "`on_timer` never runs concurrently with `process_element`": an operator instance is
//!   driven by one thread (its shard); there is nothing to race, so nothing to observe.
//! * A2.10 in the pipeline: side outputs there are record callbacks (`side_output(tag, f)`), not
//!   streams, so watermarks have nowhere to go; the rule is checked on the operator's side outputs
//!   through the harness.
//! * A7.1's "a null tag throws" (a Rust tag cannot be null) and "across a chain, main and side
//!   records keep the call order" (main and side outputs are separate buffers and callbacks here,
//!   with no common order to observe).
//! * A2.11 (interruptible timers): opt-in in Flink, not implemented.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt::Display;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use pinwheel_engine::state::StateRegistry;
use pinwheel_engine::watermark::WatermarkValve;
use pinwheel_operators::harness::{Harness, HarnessBuilder, KeyedHarness};
use pinwheel_operators::pipeline::{
    BoundedOutOfOrderness, BuildContext, ElementSink, Pipeline, Stage, StagePlan, Status, Turn,
    WatermarkGenerator, WatermarkOutput, WatermarkStrategy,
};
use pinwheel_operators::{
    Collector, Context, EndOfInputTimers, FnError, KeyedProcessFunction, MAX_WATERMARK,
    ManualClock, OnTimerContext, OpenContext, OperatorMetrics, OutputTag, Phase, PipelineError,
    ProcessContext, ProcessFunction, Semantics, SideOutputTimestamps, StateError, StreamElement,
    TimeDomain, TimerService, TimerServiceError, Timestamp, ValueState, ValueStateDescriptor,
    process_fn,
};

const MIN: Timestamp = i64::MIN;
const MAX: Timestamp = i64::MAX;

// --- Rendering ------------------------------------------------------------------------------------

/// A timestamp as docs/semantics.md writes it, with names for the values next to the ends.
fn t(ts: Timestamp) -> String {
    match ts {
        MIN => "MIN".into(),
        MAX => "MAX".into(),
        x if x == MIN + 1 => "MIN+1".into(),
        x if x == MAX - 1 => "MAX-1".into(),
        x => x.to_string(),
    }
}

fn parse_ts(s: &str) -> Result<Timestamp, FnError> {
    Ok(match s {
        "MIN" => MIN,
        "MIN+1" => MIN + 1,
        "MAX-1" => MAX - 1,
        "MAX" => MAX,
        n => n.parse()?,
    })
}

fn opt_ts(ts: Option<Timestamp>) -> String {
    ts.map_or_else(|| "none".to_string(), t)
}

/// `value@ts` (`@none` without a timestamp), `WM(t)`, `IDLE`.
fn show<T: Display>(out: Vec<StreamElement<T>>) -> Vec<String> {
    out.into_iter()
        .map(|e| match e {
            StreamElement::Record { value, timestamp } => format!("{value}@{}", opt_ts(timestamp)),
            StreamElement::Watermark(w) => format!("WM({})", t(w)),
            StreamElement::Idle => "IDLE".to_string(),
            StreamElement::Barrier(b) => format!("BARRIER({})", b.id),
        })
        .collect()
}

fn list(ts: &[Timestamp]) -> String {
    format!("[{}]", ts.iter().map(|&x| t(x)).collect::<Vec<_>>().join(", "))
}

fn domain(d: TimeDomain) -> &'static str {
    match d {
        TimeDomain::EventTime => "et",
        TimeDomain::ProcessingTime => "pt",
    }
}

// --- The scripted keyed function ----------------------------------------------------------------

/// (key, commands).
type In = (&'static str, &'static str);

fn key(e: &In) -> &'static str {
    e.0
}

type KeyFn = fn(&In) -> &'static str;

/// Runs the space-separated timer commands of an element: `et:T`/`pt:T` register an event-time or
/// processing-time timer at `T` (a number, `MIN`, `MIN+1`, `MAX-1` or `MAX`), `det:T`/`dpt:T`
/// delete one, `ls` lists the current key's timers, `clr` deletes them all, `-` does nothing.
/// Returns the lines `ls` and `clr` produce.
fn run_commands(
    key: &str,
    commands: &str,
    timers: &mut TimerService<'_>,
) -> Result<Vec<String>, FnError> {
    let mut lines = Vec::new();
    for c in commands.split_whitespace() {
        match c.split_once(':') {
            Some(("et", n)) => timers.register_event_time_timer(parse_ts(n)?)?,
            Some(("pt", n)) => timers.register_processing_time_timer(parse_ts(n)?)?,
            Some(("det", n)) => timers.delete_event_time_timer(parse_ts(n)?)?,
            Some(("dpt", n)) => timers.delete_processing_time_timer(parse_ts(n)?)?,
            _ => match c {
                "ls" => lines.push(format!(
                    "ls {key} et={} pt={} count={}/{}",
                    list(&timers.timers(TimeDomain::EventTime)?),
                    list(&timers.timers(TimeDomain::ProcessingTime)?),
                    timers.timer_count(TimeDomain::EventTime)?,
                    timers.timer_count(TimeDomain::ProcessingTime)?,
                )),
                "clr" => {
                    let e = timers.delete_all_timers(TimeDomain::EventTime)?;
                    let p = timers.delete_all_timers(TimeDomain::ProcessingTime)?;
                    lines.push(format!("clr {key} et={e} pt={p}"));
                }
                "-" => {}
                other => return Err(format!("unknown command {other:?}").into()),
            },
        }
    }
    Ok(lines)
}

/// The workhorse: `process_element` runs the element's commands ([`run_commands`]), *then* emits
/// `E <key> <commands>` (so a timer fired synchronously inside `register` would show up before
/// it). `on_timer` emits `T <key> <ts> <et|pt> wm=<watermark>`. With `verbose`, both lines end
/// with ` ts=<ctx.timestamp()> wm=<watermark> now=<processing time>` instead. With `side`, every
/// line is also sent to that side output as `side:<line>`. With `log`, timer lines and `close` are
/// also logged there.
#[derive(Default)]
struct Probe {
    verbose: bool,
    side: Option<OutputTag<String>>,
    log: Option<Rc<RefCell<Vec<String>>>>,
}

fn context_values(ctx: &Context<'_, &'static str>) -> String {
    format!(
        " ts={} wm={} now={}",
        opt_ts(ctx.timestamp()),
        t(ctx.current_watermark()),
        t(ctx.current_processing_time())
    )
}

impl Probe {
    fn verbose() -> Self {
        Probe { verbose: true, ..Probe::default() }
    }

    fn with_side(tag: &OutputTag<String>) -> Self {
        Probe { side: Some(tag.clone()), ..Probe::default() }
    }

    fn emit(
        &self,
        ctx: &mut Context<'_, &'static str>,
        out: &mut Collector<'_, String>,
        line: String,
    ) {
        if let Some(tag) = &self.side {
            ctx.output(tag, format!("side:{line}"));
        }
        out.collect(line);
    }
}

impl KeyedProcessFunction for Probe {
    type Key = &'static str;
    type In = In;
    type Out = String;

    fn process_element(
        &mut self,
        (key, commands): In,
        ctx: &mut Context<'_, &'static str>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        for line in run_commands(key, commands, ctx.timer_service())? {
            self.emit(ctx, out, line);
        }
        let mut line = format!("E {key} {commands}");
        if self.verbose {
            line += &context_values(ctx);
        }
        self.emit(ctx, out, line);
        Ok(())
    }

    fn on_timer(
        &mut self,
        timestamp: Timestamp,
        ctx: &mut OnTimerContext<'_, &'static str>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        let mut line =
            format!("T {} {} {}", ctx.current_key(), t(timestamp), domain(ctx.time_domain()));
        if self.verbose {
            line += &context_values(ctx);
        } else {
            line += &format!(" wm={}", t(ctx.current_watermark()));
        }
        if let Some(log) = &self.log {
            log.borrow_mut().push(line.clone());
        }
        self.emit(ctx, out, line);
        Ok(())
    }

    fn close(&mut self) -> Result<(), FnError> {
        if let Some(log) = &self.log {
            log.borrow_mut().push("close".to_string());
        }
        Ok(())
    }
}

type ProbeHarness = KeyedHarness<Probe, KeyFn>;

fn harness_with(probe: Probe, semantics: Semantics, now: Timestamp) -> ProbeHarness {
    HarnessBuilder::default()
        .semantics(semantics)
        .processing_time(now)
        .keyed(probe, key as KeyFn)
        .unwrap()
}

fn probe() -> ProbeHarness {
    harness_with(Probe::default(), Semantics::default(), 0)
}

fn out(h: &mut ProbeHarness) -> Vec<String> {
    show(h.take_output())
}

fn rec(k: &'static str, commands: &'static str, ts: Timestamp) -> StreamElement<In> {
    StreamElement::record((k, commands), ts)
}

/// Runs `elements` through a one-shard pipeline into a keyed [`Probe`] (built by `probe`), with a
/// manual clock standing still at 0.
fn probe_pipeline(
    semantics: Semantics,
    elements: Vec<StreamElement<In>>,
    probe: fn() -> Probe,
) -> Result<Vec<String>, PipelineError> {
    Pipeline::new()
        .shards(1)
        .clock(ManualClock::new(0))
        .semantics(semantics)
        .from_elements(elements)
        .key_by(key)
        .process(probe)
        .collect_elements()
        .map(show)
}

fn metrics(f: impl FnOnce(&mut OperatorMetrics)) -> OperatorMetrics {
    let mut m = OperatorMetrics::default();
    f(&mut m);
    m
}

// --- A source that plays a script and can move a manual clock -------------------------------------

/// One step of a [`Script`].
enum Step<T> {
    /// A record with or without a timestamp.
    Rec(T, Option<Timestamp>),
    /// A watermark.
    Wm(Timestamp),
    /// Sets the manual clock to the time given, and waits until the pipeline has seen it.
    Clock(Timestamp),
    /// Nothing ready this time (the pipeline then probes periodic watermark generators).
    Pending,
}
use Step::{Clock, Pending, Rec, Wm};

/// A source for shard 0 that plays its steps, then the final watermark `MAX`.
struct Script<T> {
    steps: Mutex<Option<Vec<Step<T>>>>,
    clock: ManualClock,
}

impl<T> Script<T> {
    fn new(clock: &ManualClock, steps: Vec<Step<T>>) -> Self {
        Script { steps: Mutex::new(Some(steps)), clock: clock.clone() }
    }
}

struct ScriptStream<T> {
    steps: VecDeque<Step<T>>,
    clock: ManualClock,
    ended: bool,
}

impl<T: Send + 'static> StagePlan for Script<T> {
    type Item = T;
    type Stage = ScriptStream<T>;

    fn build(&self, cx: &BuildContext) -> Result<ScriptStream<T>, PipelineError> {
        let steps = match cx.shard().index {
            0 => self.steps.lock().unwrap().take().unwrap_or_default(),
            _ => Vec::new(),
        };
        Ok(ScriptStream { steps: steps.into(), clock: self.clock.clone(), ended: false })
    }
}

impl<T> Stage for ScriptStream<T> {
    type Item = T;

    fn pull(
        &mut self,
        cx: &mut Turn,
        out: &mut Vec<StreamElement<T>>,
    ) -> Result<Status, PipelineError> {
        while let Some(step) = self.steps.pop_front() {
            match step {
                Step::Rec(value, timestamp) => out.push(StreamElement::Record { value, timestamp }),
                Step::Wm(w) => out.push(StreamElement::Watermark(w)),
                Step::Pending => return Ok(Status::Idle),
                Step::Clock(at) => {
                    if cx.now() >= at {
                        continue;
                    }
                    // Let the loop turn: the next turn reads the clock, and the stages see it.
                    self.clock.set(at);
                    self.steps.push_front(Step::Clock(at));
                    return Ok(Status::Busy);
                }
            }
        }
        if !self.ended {
            self.ended = true;
            out.push(StreamElement::Watermark(MAX_WATERMARK));
        }
        Ok(Status::Done)
    }
}

// =================================================================================================
// A1. Timers
// =================================================================================================

/// A non-keyed function: reads the times, tries every timer method, and with `"register"` returns
/// the timer service's error.
struct NoKeyTimers;

impl ProcessFunction for NoKeyTimers {
    type In = &'static str;
    type Out = String;

    fn process_element(
        &mut self,
        v: &'static str,
        ctx: &mut ProcessContext<'_>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        let timers = ctx.timer_service();
        let (wm, now) = (timers.current_watermark(), timers.current_processing_time());
        let errors = [
            timers.register_event_time_timer(1).err(),
            timers.register_processing_time_timer(1).err(),
            timers.delete_event_time_timer(1).err(),
            timers.delete_processing_time_timer(1).err(),
            timers.timers(TimeDomain::EventTime).err(),
            timers.timer_count(TimeDomain::ProcessingTime).err(),
            timers.delete_all_timers(TimeDomain::EventTime).err(),
        ];
        let not_keyed = errors.iter().filter(|e| **e == Some(TimerServiceError::NotKeyed)).count();
        out.collect(format!("{v} wm={} now={} not-keyed={not_keyed}/7", t(wm), t(now)));
        if v == "register" {
            ctx.timer_service().register_event_time_timer(5)?;
        }
        Ok(())
    }
}

fn assert_not_keyed_error(r: Result<(), PipelineError>, operator: &str) {
    let e = r.expect_err("registering a timer in a non-keyed function must fail");
    assert_eq!(
        e.to_string(),
        format!(
            "operator `{operator}` on shard 0 failed in process_element: Setting timers is only \
             supported on a keyed stream: key the stream with key_by(...) before process(...) to \
             use timers"
        )
    );
    match e {
        PipelineError::Function { operator: op, shard, phase, source } => {
            assert_eq!((&*op, shard, phase), (operator, 0, Phase::ProcessElement));
            assert_eq!(
                source.downcast_ref::<TimerServiceError>(),
                Some(&TimerServiceError::NotKeyed)
            );
        }
        other => panic!("expected PipelineError::Function, got {other:?}"),
    }
}

#[test]
fn a1_01_timers_exist_only_in_keyed_contexts() {
    let mut h: Harness<NoKeyTimers> = HarnessBuilder::default()
        .processing_time(42)
        .name("no-key")
        .non_keyed(NoKeyTimers)
        .unwrap();
    // The times can be read; every timer method answers NotKeyed.
    h.process_element("a", 1).unwrap();
    h.process_watermark(5);
    h.set_processing_time(50);
    h.process_element("b", None).unwrap();
    assert_eq!(
        show(h.take_output()),
        ["a wm=MIN now=42 not-keyed=7/7@1", "WM(5)", "b wm=5 now=50 not-keyed=7/7@none"]
    );
    // Returned with `?`, the error stops the operator, naming it, its shard and the phase.
    assert_not_keyed_error(h.process_element("register", 6), "no-key");
    assert_eq!(show(h.take_output()), ["register wm=5 now=50 not-keyed=7/7@6"]);
}

#[test]
fn a1_02_timer_identity_is_key_and_timestamp_per_domain() {
    let mut h = probe();
    h.process_element(("a", "et:20 et:20 pt:20 pt:20"), 1).unwrap();
    h.process_element(("a", "et:20 pt:20"), 2).unwrap();
    h.process_element(("b", "et:20"), 3).unwrap();
    assert_eq!(h.registered_timers(&"a", TimeDomain::EventTime), [20]);
    assert_eq!(h.registered_timers(&"a", TimeDomain::ProcessingTime), [20]);
    assert_eq!((h.num_event_time_timers(), h.num_processing_time_timers()), (2, 1));
    h.process_watermark(20).unwrap();
    h.set_processing_time(20).unwrap();
    assert_eq!(
        out(&mut h),
        [
            "E a et:20 et:20 pt:20 pt:20@1",
            "E a et:20 pt:20@2",
            "E b et:20@3",
            "T a 20 et wm=20@20",
            "T b 20 et wm=20@20",
            "WM(20)",
            "T a 20 pt wm=20@none",
        ]
    );
    assert_eq!(
        *h.metrics(),
        metrics(|m| {
            // Keys left without state or timers are removed.
            m.keys_removed = 2;
            m.records_in = 3;
            m.event_timers_fired = 2;
            m.processing_timers_fired = 1;
        })
    );
}

#[test]
fn a1_03_event_and_processing_time_timers_are_separate_queues() {
    let mut h = probe();
    h.process_element(("a", "et:10 pt:10"), 1).unwrap();
    // Deleting b's event-time timer leaves its processing-time timer at the same ts.
    h.process_element(("b", "et:10 pt:10 det:10"), 2).unwrap();
    assert!(h.registered_timers(&"b", TimeDomain::EventTime).is_empty());
    assert_eq!(h.registered_timers(&"b", TimeDomain::ProcessingTime), [10]);
    h.set_processing_time(10).unwrap();
    h.process_watermark(10).unwrap();
    assert_eq!(
        out(&mut h),
        [
            "E a et:10 pt:10@1",
            "E b et:10 pt:10 det:10@2",
            "T a 10 pt wm=MIN@none",
            "T b 10 pt wm=MIN@none",
            "T a 10 et wm=10@10",
            "WM(10)",
        ]
    );
}

/// A1.5: `process_element` stores the value per key and registers timers; `on_timer` reports the
/// current key and that key's stored value.
#[derive(Default)]
struct KeyScoped {
    last: ValueState<String>,
}

impl KeyedProcessFunction for KeyScoped {
    type Key = &'static str;
    type In = In;
    type Out = String;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        self.last = ctx.value_state(ValueStateDescriptor::new("last"))?;
        Ok(())
    }

    fn process_element(
        &mut self,
        (_, v): In,
        ctx: &mut Context<'_, &'static str>,
        _: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        self.last.update(ctx, v.to_string())?;
        ctx.timer_service().register_event_time_timer(10)?;
        ctx.timer_service().register_processing_time_timer(10)?;
        Ok(())
    }

    fn on_timer(
        &mut self,
        _: Timestamp,
        ctx: &mut OnTimerContext<'_, &'static str>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        let last = self.last.value(ctx)?.unwrap_or_default();
        out.collect(format!(
            "T {} key={} last={last}",
            domain(ctx.time_domain()),
            ctx.current_key()
        ));
        self.last.clear(ctx)?;
        Ok(())
    }
}

#[test]
fn a1_05_a_timers_key_is_the_current_key_at_registration() {
    let mut h = KeyedHarness::new(KeyScoped::default(), key as KeyFn).unwrap();
    h.process_element(("a", "1"), 1).unwrap();
    h.process_element(("b", "2"), 2).unwrap();
    h.process_element(("a", "3"), 3).unwrap();
    h.process_watermark(10).unwrap();
    h.process_element(("b", "4"), 4).unwrap();
    h.set_processing_time(10).unwrap();
    // Each timer sees its own key and that key's state; clearing in a's timer leaves b's value.
    assert_eq!(
        show(h.take_output()),
        [
            "T et key=a last=3@10",
            "T et key=b last=2@10",
            "WM(10)",
            "T pt key=a last=@none",
            "T pt key=b last=4@none",
        ]
    );
}

#[test]
fn a1_06_timestamps_are_not_validated_and_registering_never_fires() {
    let mut h = harness_with(Probe::default(), Semantics::default(), 100);
    h.process_watermark(50).unwrap();
    // Event-time timers at MIN, MIN+1, a negative time, the watermark itself and MAX; processing-
    // time timers before, at and after the current time (100). Nothing fires inside `register`:
    // the element's own line comes first, then the processing-time timers already due fire as soon
    // as the callback has returned.
    h.process_element(("a", "et:MIN et:MIN+1 et:-5 et:50 et:MAX pt:-7 pt:100 pt:101"), 60).unwrap();
    assert_eq!(
        out(&mut h),
        [
            "WM(50)",
            "E a et:MIN et:MIN+1 et:-5 et:50 et:MAX pt:-7 pt:100 pt:101@60",
            "T a -7 pt wm=50@none",
            "T a 100 pt wm=50@none",
        ]
    );
    assert_eq!(h.registered_timers(&"a", TimeDomain::EventTime), [MIN, MIN + 1, -5, 50, MAX]);
    assert_eq!(h.registered_timers(&"a", TimeDomain::ProcessingTime), [101]);
    // Event-time timers at or below the watermark fire at the next watermark advance.
    h.process_watermark(51).unwrap();
    h.set_processing_time(101).unwrap();
    assert_eq!(
        out(&mut h),
        [
            "T a MIN et wm=51@MIN",
            "T a MIN+1 et wm=51@MIN+1",
            "T a -5 et wm=51@-5",
            "T a 50 et wm=51@50",
            "WM(51)",
            "T a 101 pt wm=51@none",
        ]
    );
    // The timer at MAX fires only at the end of input.
    h.end_input().unwrap();
    assert_eq!(out(&mut h), ["T a MAX et wm=MAX@MAX", "WM(MAX)"]);
    assert_eq!(
        *h.metrics(),
        metrics(|m| {
            // Keys left without state or timers are removed.
            m.keys_removed = 1;
            m.records_in = 1;
            m.event_timers_fired = 5;
            m.processing_timers_fired = 3;
        })
    );
}

#[test]
fn a1_07_deleting_a_timer_is_a_silent_no_op_unless_it_is_pending() {
    let mut h = probe();
    h.process_element(("a", "et:10 pt:10"), 1).unwrap();
    // Deleting pending timers, and timers that never existed: no error.
    h.process_element(("a", "det:10 dpt:10 det:99 dpt:99"), 2).unwrap();
    assert_eq!(h.num_event_time_timers() + h.num_processing_time_timers(), 0);
    // Registering again after a delete creates the timers again.
    h.process_element(("a", "et:10 pt:10"), 3).unwrap();
    // A delete affects only the current key.
    h.process_element(("b", "det:10 dpt:10"), 4).unwrap();
    h.process_watermark(10).unwrap();
    h.set_processing_time(10).unwrap();
    // Deleting timers that already fired: no error, no effect.
    h.process_element(("a", "det:10 dpt:10"), 5).unwrap();
    // Registering a timestamp that already fired creates a new timer: the processing-time one is
    // due at once, the event-time one at the next watermark.
    h.process_element(("a", "et:10 pt:10"), 6).unwrap();
    h.process_watermark(11).unwrap();
    assert_eq!(
        out(&mut h),
        [
            "E a et:10 pt:10@1",
            "E a det:10 dpt:10 det:99 dpt:99@2",
            "E a et:10 pt:10@3",
            "E b det:10 dpt:10@4",
            "T a 10 et wm=10@10",
            "WM(10)",
            "T a 10 pt wm=10@none",
            "E a det:10 dpt:10@5",
            "E a et:10 pt:10@6",
            "T a 10 pt wm=10@none",
            "T a 10 et wm=11@10",
            "WM(11)",
        ]
    );
}

#[test]
fn a1_08_the_firing_test_is_inclusive() {
    let mut h = probe();
    h.process_element(("a", "et:10 et:11 pt:20 pt:21"), 1).unwrap();
    h.process_watermark(9).unwrap();
    h.process_watermark(10).unwrap();
    h.set_processing_time(19).unwrap();
    h.set_processing_time(20).unwrap();
    assert_eq!(
        out(&mut h),
        [
            "E a et:10 et:11 pt:20 pt:21@1",
            "WM(9)",
            "T a 10 et wm=10@10",
            "WM(10)",
            "T a 20 pt wm=10@none",
        ]
    );
    assert_eq!(h.registered_timers(&"a", TimeDomain::EventTime), [11]);
    assert_eq!(h.registered_timers(&"a", TimeDomain::ProcessingTime), [21]);
}

/// Also the README's first difference: equal timestamps fire in registration order (one of the
/// orders Flink allows), across keys, in both domains.
#[test]
fn a1_09_firing_order_is_by_timestamp_then_registration_order() {
    let mut h = probe();
    h.process_element(("c", "et:20 pt:20"), 1).unwrap();
    h.process_element(("a", "et:20 et:15 pt:20 pt:15"), 2).unwrap();
    h.process_element(("b", "et:30 et:20 et:5 pt:30 pt:20 pt:5"), 3).unwrap();
    h.take_output();
    h.process_watermark(30).unwrap();
    h.set_processing_time(30).unwrap();
    assert_eq!(
        out(&mut h),
        [
            "T b 5 et wm=30@5",
            "T a 15 et wm=30@15",
            "T c 20 et wm=30@20",
            "T a 20 et wm=30@20",
            "T b 20 et wm=30@20",
            "T b 30 et wm=30@30",
            "WM(30)",
            "T b 5 pt wm=30@none",
            "T a 15 pt wm=30@none",
            "T c 20 pt wm=30@none",
            "T a 20 pt wm=30@none",
            "T b 20 pt wm=30@none",
            "T b 30 pt wm=30@none",
        ]
    );
}

/// A1.10: the element registers a timer at 10 in the domain it names. When 10 first fires it
/// registers 12 (later, due), 3 (earlier, due), 40 (not due) and 10 itself again.
#[derive(Default)]
struct Chain {
    rearmed: [bool; 2],
}

impl KeyedProcessFunction for Chain {
    type Key = &'static str;
    type In = In;
    type Out = String;

    fn process_element(
        &mut self,
        (_, d): In,
        ctx: &mut Context<'_, &'static str>,
        _: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        match d {
            "et" => ctx.timer_service().register_event_time_timer(10)?,
            _ => ctx.timer_service().register_processing_time_timer(10)?,
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        ts: Timestamp,
        ctx: &mut OnTimerContext<'_, &'static str>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        let d = ctx.time_domain();
        out.collect(format!(
            "T {} {ts} {} wm={}",
            ctx.current_key(),
            domain(d),
            t(ctx.current_watermark())
        ));
        let i = usize::from(d == TimeDomain::ProcessingTime);
        if ts == 10 && !self.rearmed[i] {
            self.rearmed[i] = true;
            for at in [12, 3, 40, 10] {
                match d {
                    TimeDomain::EventTime => ctx.timer_service().register_event_time_timer(at)?,
                    TimeDomain::ProcessingTime => {
                        ctx.timer_service().register_processing_time_timer(at)?
                    }
                }
            }
        }
        Ok(())
    }
}

#[test]
fn a1_10_timers_registered_in_on_timer_fire_within_the_same_advance() {
    let mut h = KeyedHarness::new(Chain::default(), key as KeyFn).unwrap();
    h.process_element(("a", "et"), 1).unwrap();
    h.process_element(("b", "pt"), 1).unwrap();
    // Event time: 3 (earlier: the output timestamp goes backwards), 10 again (the timestamp being
    // fired) and 12 all fire before WM(20) is forwarded; 40 waits.
    h.process_watermark(20).unwrap();
    h.process_watermark(39).unwrap();
    h.process_watermark(40).unwrap();
    // Processing time: the same loop.
    h.set_processing_time(20).unwrap();
    h.set_processing_time(40).unwrap();
    assert_eq!(
        show(h.take_output()),
        [
            "T a 10 et wm=20@10",
            "T a 3 et wm=20@3",
            "T a 10 et wm=20@10",
            "T a 12 et wm=20@12",
            "WM(20)",
            "WM(39)",
            "T a 40 et wm=40@40",
            "WM(40)",
            "T b 10 pt wm=40@none",
            "T b 3 pt wm=40@none",
            "T b 10 pt wm=40@none",
            "T b 12 pt wm=40@none",
            "T b 40 pt wm=40@none",
        ]
    );
}

#[test]
fn a1_11_what_current_watermark_returns() {
    let mut h = harness_with(Probe::verbose(), Semantics::default(), 0);
    h.process_element(("a", "et:5 pt:7"), 1).unwrap();
    h.process_watermark(10).unwrap();
    h.set_processing_time(7).unwrap();
    h.process_element(("a", "et:20"), 2).unwrap();
    h.end_input().unwrap();
    assert_eq!(
        out(&mut h),
        [
            // Before any watermark: MIN.
            "E a et:5 pt:7 ts=1 wm=MIN now=0@1",
            // In an event-time on_timer: the watermark that fired it, not the timer's time.
            "T a 5 et ts=5 wm=10 now=0@5",
            "WM(10)",
            // In a processing-time on_timer: the last watermark.
            "T a 7 pt ts=7 wm=10 now=7@none",
            // In process_element: the last watermark.
            "E a et:20 ts=2 wm=10 now=7@2",
            // At the end of input: MAX.
            "T a 20 et ts=20 wm=MAX now=7@20",
            "WM(MAX)",
        ]
    );
    assert_eq!(h.current_watermark(), MAX);
}

#[test]
fn a1_12_what_ctx_timestamp_returns() {
    let mut h = harness_with(Probe::verbose(), Semantics::default(), 0);
    h.process_element(("a", "et:30 pt:7"), 5).unwrap();
    h.process_element(("a", "-"), None).unwrap();
    h.set_processing_time(10).unwrap();
    h.process_watermark(30).unwrap();
    assert_eq!(
        out(&mut h),
        [
            // The element's timestamp, or none ("no timestamp" is None, not MIN: README).
            "E a et:30 pt:7 ts=5 wm=MIN now=0@5",
            "E a - ts=none wm=MIN now=0@none",
            // A processing-time timer: its registered time (7), not the time it fired at (10).
            "T a 7 pt ts=7 wm=MIN now=10@none",
            // An event-time timer: its timestamp.
            "T a 30 et ts=30 wm=30 now=10@30",
            "WM(30)",
        ]
    );
}

#[test]
fn a1_13_output_timestamps_follow_the_element_or_the_timer() {
    let mut h = probe();
    h.process_watermark(10).unwrap();
    h.process_element(("a", "et:3"), 12).unwrap();
    h.process_element(("a", "pt:0"), None).unwrap();
    h.process_watermark(11).unwrap();
    assert_eq!(
        out(&mut h),
        [
            "WM(10)",
            // process_element: the element's timestamp, or none.
            "E a et:3@12",
            "E a pt:0@none",
            // Processing-time on_timer: no timestamp.
            "T a 0 pt wm=10@none",
            // Event-time on_timer: the timer's timestamp, even below the watermark already sent.
            "T a 3 et wm=11@3",
            "WM(11)",
        ]
    );
    // Side outputs: see a7_01_side_output_timestamps_*.
}

#[test]
fn a1_14_time_domain_names_the_firing_timers_domain() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let mut h =
        harness_with(Probe { log: Some(log.clone()), ..Probe::default() }, Semantics::default(), 0);
    h.process_element(("a", "et:1 pt:1"), 0).unwrap();
    h.process_watermark(1).unwrap();
    h.set_processing_time(1).unwrap();
    assert_eq!(*log.borrow(), ["T a 1 et wm=1", "T a 1 pt wm=1"]);
    assert_eq!(TimeDomain::EventTime.to_string(), "EVENT_TIME");
    assert_eq!(TimeDomain::ProcessingTime.to_string(), "PROCESSING_TIME");
}

#[test]
fn a1_15_processing_time_in_the_harness_is_a_manual_clock_without_offset() {
    let mut h = harness_with(Probe::verbose(), Semantics::default(), 100);
    h.process_element(("a", "pt:150 pt:151"), 1).unwrap();
    // Setting the time fires everything <= it (no +1 offset).
    h.set_processing_time(150).unwrap();
    // Processing time never goes backwards: the operator keeps the largest time it saw.
    h.set_processing_time(50).unwrap();
    assert_eq!(h.current_processing_time(), 150);
    h.process_element(("a", "-"), 2).unwrap();
    h.advance_processing_time(1).unwrap();
    assert_eq!(
        out(&mut h),
        [
            "E a pt:150 pt:151 ts=1 wm=MIN now=100@1",
            "T a 150 pt ts=150 wm=MIN now=150@none",
            "E a - ts=2 wm=MIN now=150@2",
            "T a 151 pt ts=151 wm=MIN now=151@none",
        ]
    );
}

#[test]
fn a1_15_processing_time_in_a_pipeline_follows_its_clock() {
    let clock = ManualClock::new(1000);
    let f = || {
        process_fn(|v: In, ctx: &mut Context<'_, &'static str>, out: &mut Collector<'_, String>| {
            let now = ctx.current_processing_time();
            ctx.timer_service().register_processing_time_timer(now + 10)?;
            out.collect(format!("E {} now={now}", v.0));
            Ok::<(), FnError>(())
        })
        .on_timer(|ts, ctx, out| {
            out.collect(format!(
                "T {} {ts} now={}",
                ctx.current_key(),
                ctx.current_processing_time()
            ));
            Ok(())
        })
    };
    let out = Pipeline::new()
        .shards(1)
        .clock(clock.clone())
        .from_source(Script::new(
            &clock,
            vec![
                Rec(("a", "x"), Some(1)),
                Clock(1005),
                Rec(("b", "y"), Some(2)),
                Clock(1010),
                Clock(1020),
            ],
        ))
        .key_by(key)
        .process(f)
        .collect_elements()
        .unwrap();
    assert_eq!(
        show(out),
        [
            "E a now=1000@1",
            "E b now=1005@2",
            "T a 1010 now=1010@none",
            "T b 1015 now=1020@none",
            "WM(MAX)",
        ]
    );
}

/// A1.6 in the pipeline: a processing-time timer registered at or before the current time fires as
/// soon as the callback has returned, even if the clock does not move.
#[test]
fn a1_06_pipeline_fires_a_due_processing_time_timer_without_a_clock_change() {
    let clock = ManualClock::new(0);
    let out = Pipeline::new()
        .shards(1)
        .clock(clock.clone())
        .from_source(Script::new(
            &clock,
            vec![Rec(("a", "pt:0"), Some(1)), Pending, Rec(("b", "-"), Some(2)), Pending],
        ))
        .key_by(key)
        .process(Probe::default)
        .collect_elements()
        .map(show)
        .unwrap();
    let fired = out.iter().position(|l| l.starts_with("T a 0 pt"));
    let end = out.iter().position(|l| l == "WM(MAX)");
    assert_eq!(out.iter().filter(|l| l.starts_with("T a 0 pt")).count(), 1, "{out:?}");
    assert!(fired < end, "{out:?}");
}

/// Also the README's "listing, counting and deleting a key's pending timers" (FLINK-8322).
#[test]
fn a1_16_pending_timers_can_be_listed_counted_and_deleted_per_key() {
    let mut h = probe();
    h.process_element(("a", "et:30 et:10 et:20 pt:7 ls"), 1).unwrap();
    h.process_element(("b", "et:10 pt:7"), 2).unwrap();
    // Deleting all of a's timers leaves b's.
    h.process_element(("a", "clr ls"), 3).unwrap();
    h.process_element(("a", "clr"), 4).unwrap();
    assert_eq!(h.registered_timers(&"b", TimeDomain::EventTime), [10]);
    h.process_watermark(40).unwrap();
    h.set_processing_time(7).unwrap();
    assert_eq!(
        out(&mut h),
        [
            "ls a et=[10, 20, 30] pt=[7] count=3/1@1",
            "E a et:30 et:10 et:20 pt:7 ls@1",
            "E b et:10 pt:7@2",
            "clr a et=3 pt=1@3",
            "ls a et=[] pt=[] count=0/0@3",
            "E a clr ls@3",
            "clr a et=0 pt=0@4",
            "E a clr@4",
            "T b 10 et wm=40@10",
            "WM(40)",
            "T b 7 pt wm=40@none",
        ]
    );
}

// =================================================================================================
// A2. Watermarks
// =================================================================================================

/// Emits `E <key> ts=<ts> wm=<watermark> late=<ts <= watermark>`.
fn lateness() -> impl KeyedProcessFunction<Key = &'static str, In = In, Out = String> {
    process_fn(|v: In, ctx: &mut Context<'_, &'static str>, out: &mut Collector<'_, String>| {
        let wm = ctx.current_watermark();
        let late = ctx.timestamp().is_some_and(|ts| ts <= wm);
        out.collect(format!("E {} ts={} wm={} late={late}", v.0, opt_ts(ctx.timestamp()), t(wm)));
        Ok::<(), FnError>(())
    })
}

#[test]
fn a2_01_an_element_is_late_iff_its_timestamp_is_at_or_below_the_watermark() {
    let mut h = KeyedHarness::new(lateness(), key as KeyFn).unwrap();
    h.process_element(("a", ""), 5).unwrap();
    h.process_watermark(10).unwrap();
    for ts in [Some(9), Some(10), Some(11), None] {
        h.process_element(("a", ""), ts).unwrap();
    }
    assert_eq!(
        show(h.take_output()),
        [
            "E a ts=5 wm=MIN late=false@5",
            "WM(10)",
            "E a ts=9 wm=10 late=true@9",
            "E a ts=10 wm=10 late=true@10",
            "E a ts=11 wm=10 late=false@11",
            "E a ts=none wm=10 late=false@none",
        ]
    );
    assert_eq!(
        *h.metrics(),
        metrics(|m| {
            // Keys left without state or timers are removed.
            m.keys_removed = 5;
            m.records_in = 5;
            m.late_records = 2;
        })
    );
}

#[test]
fn a2_02_timers_fire_before_the_watermark_is_forwarded() {
    let tag = OutputTag::<String>::new("side");
    let mut h = harness_with(Probe::with_side(&tag), Semantics::default(), 0);
    h.declare_side_output(&tag);
    h.process_element(("a", "et:3 et:10"), 1).unwrap();
    h.process_element(("b", "et:10"), 2).unwrap();
    h.process_watermark(10).unwrap();
    let expected = [
        "E a et:3 et:10@1",
        "E b et:10@2",
        "T a 3 et wm=10@3",
        "T a 10 et wm=10@10",
        "T b 10 et wm=10@10",
        "WM(10)",
    ];
    assert_eq!(out(&mut h), expected);
    let side: Vec<String> = expected
        .iter()
        .map(|l| if l.starts_with("WM") { l.to_string() } else { format!("side:{l}") })
        .collect();
    assert_eq!(show(h.take_side_output(&tag)), side);
    // The same through a pipeline.
    let out = probe_pipeline(
        Semantics::default(),
        vec![rec("a", "et:3 et:10", 1), rec("b", "et:10", 2), StreamElement::Watermark(10)],
        Probe::default,
    )
    .unwrap();
    let mut all = expected.to_vec();
    all.push("WM(MAX)");
    assert_eq!(out, all);
}

#[test]
fn a2_03_watermarks_at_an_operator_are_strictly_increasing() {
    // Keyed operator: W10, W10, W5, W11 forwards WM(10) and WM(11); a timer registered at 10 after
    // WM(10) waits for the strictly larger WM(11).
    let mut h = probe();
    h.process_element(("a", "et:10"), 1).unwrap();
    h.process_watermark(10).unwrap();
    h.process_element(("a", "et:10"), 2).unwrap();
    h.process_watermark(10).unwrap();
    h.process_watermark(5).unwrap();
    h.process_watermark(11).unwrap();
    assert_eq!(
        out(&mut h),
        [
            "E a et:10@1",
            "T a 10 et wm=10@10",
            "WM(10)",
            "E a et:10@2",
            "T a 10 et wm=11@10",
            "WM(11)",
        ]
    );
    assert_eq!(
        *h.metrics(),
        metrics(|m| {
            // Keys left without state or timers are removed.
            m.keys_removed = 2;
            m.records_in = 2;
            m.late_records = 1;
            m.watermarks_dropped = 2;
            m.event_timers_fired = 2;
        })
    );
    // Non-keyed operator: the same.
    let mut h = Harness::new(NoKeyTimers).unwrap();
    for w in [10, 10, 5, 11] {
        h.process_watermark(w);
    }
    assert_eq!(show(h.take_output()), ["WM(10)", "WM(11)"]);
    assert_eq!(h.metrics().watermarks_dropped, 2);
    // Through a pipeline (the operator input enforces it).
    let out = probe_pipeline(
        Semantics::default(),
        [10, 10, 5, 11].into_iter().map(StreamElement::Watermark).collect(),
        Probe::default,
    )
    .unwrap();
    assert_eq!(out, ["WM(10)", "WM(11)", "WM(MAX)"]);
    // The valve of an operator input.
    let mut v = WatermarkValve::new(1);
    let emitted: Vec<Option<Timestamp>> =
        [10, 10, 5, 11].into_iter().map(|w| v.on_watermark(0, w).watermark).collect();
    assert_eq!(emitted, [Some(10), None, None, Some(11)]);
    assert_eq!(v.dropped(), 2);
}

#[test]
fn a2_04_several_channels_combine_into_the_minimum_over_active_aligned_channels() {
    let mut v = WatermarkValve::new(2);
    // Every channel starts at MIN: nothing advances until each has sent a watermark.
    assert_eq!(v.on_watermark(0, 10).watermark, None);
    assert_eq!(v.on_watermark(1, 6).watermark, Some(6));
    assert_eq!(v.on_watermark(1, 20).watermark, Some(10));
    // Channel 0 held the minimum and goes idle: the new minimum is emitted at once.
    let o = v.on_idle(0);
    assert_eq!((o.watermark, o.idle), (Some(20), false));
    // It comes back with a stale watermark (12 < 20): active, but it does not hold progress back.
    let o = v.on_watermark(0, 12);
    assert_eq!((o.watermark, o.active), (None, false));
    assert_eq!(v.on_watermark(1, 30).watermark, Some(30));
    // Once its watermark is >= the last emitted one (here equal), it rejoins the minimum and holds
    // progress back again.
    assert_eq!(v.on_watermark(0, 30).watermark, None);
    assert_eq!(v.on_watermark(1, 40).watermark, None);
    assert_eq!(v.on_watermark(0, 31).watermark, Some(31));
    // All idle: channel 1 goes first (it did not hold the minimum: nothing), then channel 0, which
    // held it: the largest channel watermark is flushed, then the valve reports idle.
    let o = v.on_idle(1);
    assert_eq!((o.watermark, o.idle), (None, false));
    let o = v.on_idle(0);
    assert_eq!((o.watermark, o.idle), (Some(40), true));
    assert!(v.is_idle());
    // A record makes a channel active again.
    assert!(v.on_record(1).active);
    assert!(!v.is_idle());
    assert_eq!(v.on_watermark(1, 35).watermark, None); // below channel 1's 40: dropped
    assert_eq!(v.on_watermark(1, 45).watermark, Some(45)); // channel 0 is still idle
    assert_eq!((v.current(), v.dropped()), (45, 1));
}

/// One call of a generator's periodic emission: what it emitted.
fn periodic(g: &mut impl WatermarkGenerator<()>) -> Option<Timestamp> {
    let mut o = WatermarkOutput::new(0);
    g.on_periodic_emit(&mut o);
    o.watermark()
}

fn event(g: &mut impl WatermarkGenerator<()>, ts: Timestamp) {
    g.on_event(&(), ts, &mut WatermarkOutput::new(0));
}

#[test]
fn a2_08_bounded_out_of_orderness_emits_max_ts_minus_d_minus_1_from_min() {
    let mut g = BoundedOutOfOrderness::new(5);
    assert_eq!(periodic(&mut g), Some(MIN)); // initial maxTs = MIN + d + 1
    event(&mut g, 100);
    assert_eq!(periodic(&mut g), Some(94));
    event(&mut g, 90);
    assert_eq!(periodic(&mut g), Some(94));
    event(&mut g, 200);
    assert_eq!(periodic(&mut g), Some(194));
    // Monotonous timestamps: d = 0, maxTs - 1.
    let mut g = BoundedOutOfOrderness::new(0);
    assert_eq!(periodic(&mut g), Some(MIN));
    event(&mut g, 7);
    assert_eq!(periodic(&mut g), Some(6));
    // Through a pipeline, emitting after every record: the record first, then its watermark; only
    // increases are forwarded; the final periodic emission (19, not an increase) adds nothing.
    let out = Pipeline::new()
        .shards(1)
        .from_elements([100, 90, 200].map(|ts| StreamElement::record(ts, ts)))
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_bounded_out_of_orderness(5).with_emit_interval(1),
        )
        .collect_elements()
        .unwrap();
    assert_eq!(show(out), ["100@100", "WM(94)", "90@90", "200@200", "WM(194)", "WM(MAX)"]);
    let out = Pipeline::new()
        .shards(1)
        .from_elements([7, 3, 9].map(|ts| StreamElement::record(ts, ts)))
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_monotonous_timestamps().with_emit_interval(1),
        )
        .collect_elements()
        .unwrap();
    assert_eq!(show(out), ["7@7", "WM(6)", "3@3", "9@9", "WM(8)", "WM(MAX)"]);
}

/// Emits the watermark written in an event (`"wm:N"`) when it sees the event.
#[derive(Clone)]
struct Punctuated;

impl WatermarkGenerator<String> for Punctuated {
    fn on_event(&mut self, e: &String, _: Timestamp, out: &mut WatermarkOutput) {
        if let Some(w) = e.strip_prefix("wm:") {
            out.emit_watermark(w.parse().unwrap());
        }
    }

    fn on_periodic_emit(&mut self, _: &mut WatermarkOutput) {}
}

#[test]
fn a2_08_a_watermark_follows_the_record_that_caused_it_and_only_increases_pass() {
    let values = ["x", "wm:10", "wm:5", "wm:10", "wm:11", "y"];
    let out = Pipeline::new()
        .shards(1)
        .from_elements(
            values.into_iter().zip(1..).map(|(v, ts)| StreamElement::record(v.to_string(), ts)),
        )
        .assign_timestamps_and_watermarks(WatermarkStrategy::for_generator(Punctuated))
        .collect_elements()
        .unwrap();
    assert_eq!(
        show(out),
        ["x@1", "wm:10@2", "WM(10)", "wm:5@3", "wm:10@4", "wm:11@5", "WM(11)", "y@6", "WM(MAX)"]
    );
}

#[test]
fn a2_08_upstream_watermarks_except_max_and_idle_markers_are_ignored() {
    let elements = vec![
        StreamElement::record("a", 1),
        StreamElement::Watermark(50),
        StreamElement::Idle,
        StreamElement::record("b", 2),
        StreamElement::Watermark(60),
    ];
    let out = Pipeline::new()
        .shards(1)
        .from_elements(elements)
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_monotonous_timestamps().with_emit_interval(1),
        )
        .collect_elements()
        .unwrap();
    // The source's final MAX is forwarded.
    assert_eq!(show(out), ["a@1", "WM(0)", "b@2", "WM(1)", "WM(MAX)"]);
}

#[test]
fn a2_08_the_generator_is_asked_once_more_at_the_end_of_input() {
    // With the default interval (256 records) two records cause no periodic emission; the final
    // one emits maxTs - 1. Pinwheel asks before forwarding MAX (the source has nothing more to
    // give: README, periodic emission); Flink asks in finish(), after MAX, where it emits nothing.
    let out = Pipeline::new()
        .shards(1)
        .from_elements([10, 20].map(|ts| StreamElement::record(ts, ts)))
        .assign_timestamps_and_watermarks(WatermarkStrategy::for_monotonous_timestamps())
        .collect_elements()
        .unwrap();
    assert_eq!(show(out), ["10@10", "20@20", "WM(19)", "WM(MAX)"]);
}

#[test]
fn a2_08_with_idleness_marks_the_stream_idle_after_the_timeout_until_the_next_record() {
    let clock = ManualClock::new(0);
    let steps = vec![
        Rec("a".to_string(), Some(10)),
        Pending, // activity since the last probe: WM(9)
        Pending, // first probe without activity: the idleness timer starts at 0
        Clock(100),
        Pending, // 100 - 0 is not more than the timeout
        Clock(101),
        Pending, // 101 - 0 > 100: idle
        Pending, // still idle: nothing new
        Rec("b".to_string(), Some(20)),
        Pending, // active again: WM(19)
    ];
    let out = Pipeline::new()
        .shards(1)
        .clock(clock.clone())
        .from_source(Script::new(&clock, steps))
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_monotonous_timestamps().with_idleness(100),
        )
        .collect_elements()
        .unwrap();
    assert_eq!(show(out), ["a@10", "WM(9)", "IDLE", "b@20", "WM(19)", "WM(MAX)"]);
}

#[test]
fn a2_09_late_data_still_reaches_the_function() {
    let out = Pipeline::new()
        .shards(1)
        .from_elements([100, 50, 89, 90].map(|ts| StreamElement::record(("a", ""), ts)))
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_bounded_out_of_orderness(10).with_emit_interval(1),
        )
        .key_by(key)
        .process(lateness)
        .collect_elements()
        .unwrap();
    assert_eq!(
        show(out),
        [
            "E a ts=100 wm=MIN late=false@100",
            "WM(89)",
            "E a ts=50 wm=89 late=true@50",
            "E a ts=89 wm=89 late=true@89",
            "E a ts=90 wm=89 late=false@90",
            "WM(MAX)",
        ]
    );
}

#[test]
fn a2_10_every_side_output_receives_every_watermark() {
    let side = OutputTag::<String>::new("side");
    let same_id_other_type = OutputTag::<u64>::new("side");
    let quiet = OutputTag::<String>::new("quiet");
    let mut h = harness_with(Probe::with_side(&side), Semantics::default(), 0);
    h.declare_side_output(&side);
    h.declare_side_output(&same_id_other_type);
    h.declare_side_output(&quiet);
    h.process_watermark(5).unwrap();
    h.process_element(("a", "et:7"), 6).unwrap();
    h.process_watermark(10).unwrap();
    h.mark_idle();
    h.end_input().unwrap();
    assert_eq!(
        out(&mut h),
        ["WM(5)", "E a et:7@6", "T a 7 et wm=10@7", "WM(10)", "IDLE", "WM(MAX)"]
    );
    assert_eq!(
        show(h.take_side_output(&side)),
        ["WM(5)", "side:E a et:7@6", "side:T a 7 et wm=10@7", "WM(10)", "IDLE", "WM(MAX)"]
    );
    // Side outputs without records get the watermarks and idle markers too.
    assert_eq!(show(h.take_side_output(&quiet)), ["WM(5)", "WM(10)", "IDLE", "WM(MAX)"]);
    assert_eq!(
        show(h.take_side_output(&same_id_other_type)),
        ["WM(5)", "WM(10)", "IDLE", "WM(MAX)"]
    );
}

// =================================================================================================
// A6. Bounded input and end of input
// =================================================================================================

#[test]
fn a6_01_a_bounded_source_ends_with_max_which_fires_every_event_time_timer() {
    // The timer at 1001 registers one at MAX-1 while MAX is being processed: it fires too.
    let f = || {
        process_fn(|v: In, ctx: &mut Context<'_, &'static str>, out: &mut Collector<'_, String>| {
            run_commands(v.0, v.1, ctx.timer_service())?;
            out.collect(format!("E {} {}", v.0, v.1));
            Ok::<(), FnError>(())
        })
        .on_timer(|ts, ctx, out| {
            out.collect(format!(
                "T {} {} wm={}",
                ctx.current_key(),
                t(ts),
                t(ctx.current_watermark())
            ));
            if ts == 1001 {
                ctx.timer_service().register_event_time_timer(MAX - 1)?;
            }
            Ok(())
        })
    };
    let out = Pipeline::new()
        .shards(1)
        .from_elements(vec![
            rec("a", "et:1001", 1),
            rec("b", "et:MAX", 2),
            rec("c", "et:5", 3),
            StreamElement::Watermark(500),
        ])
        .key_by(key)
        .process(f)
        .collect_elements()
        .unwrap();
    assert_eq!(
        show(out),
        [
            "E a et:1001@1",
            "E b et:MAX@2",
            "E c et:5@3",
            "T c 5 wm=500@5",
            "WM(500)",
            // In timestamp order, with wm = MAX; output timestamps are the timers'.
            "T a 1001 wm=MAX@1001",
            "T a MAX-1 wm=MAX@MAX-1",
            "T b MAX wm=MAX@MAX",
            "WM(MAX)",
        ]
    );
}

#[test]
fn a6_01_every_shard_receives_max_and_fires_its_timers() {
    // Two shards: shard 1's own partition is empty, shard 0's sends no watermark at all. Each
    // shard's keyed operator gets MAX only once both partitions have ended, then fires its keys'
    // timers in timestamp order.
    let keys = ["a", "b", "c", "d", "e", "f", "g", "h"];
    let elements: Vec<StreamElement<In>> = keys
        .iter()
        .zip(1..)
        .map(|(k, i)| rec(k, ["et:1008", "et:1007", "et:1006", "et:1005"][i % 4], i as Timestamp))
        .collect();
    let run = Pipeline::new()
        .shards(2)
        .from_elements(elements.clone())
        .key_by(key)
        .process(Probe::default)
        .run_sharded(|_| ElementSink(Vec::new()))
        .unwrap();
    let mut all_records = Vec::new();
    for sink in run.sinks {
        let out = show(sink.0);
        let (records, rest): (Vec<String>, Vec<String>) =
            out.into_iter().partition(|l| l.starts_with("E "));
        // This shard's keys, in source order.
        let mine: Vec<&StreamElement<In>> = elements
            .iter()
            .filter(|e| {
                records.iter().any(|r| r.starts_with(&format!("E {} ", e.value().unwrap().0)))
            })
            .collect();
        assert_eq!(
            records,
            show(mine.iter().map(|e| (*e).clone().map(|(k, c)| format!("E {k} {c}"))).collect())
        );
        // Then their timers, by timestamp, then registration order, with wm = MAX; then MAX.
        let mut timers: Vec<(Timestamp, usize, String)> = mine
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let (k, c) = e.value().unwrap();
                let at: Timestamp = c[3..].parse().unwrap();
                (at, i, format!("T {k} {at} et wm=MAX@{at}"))
            })
            .collect();
        timers.sort();
        let mut expected: Vec<String> = timers.into_iter().map(|(_, _, l)| l).collect();
        expected.push("WM(MAX)".to_string());
        assert_eq!(rest, expected);
        assert!(!records.is_empty(), "both shards own some of the keys");
        all_records.extend(records);
    }
    all_records.sort();
    assert_eq!(all_records.len(), keys.len());
}

/// Also the README's "processing-time timers pending at end of input": dropped and counted.
#[test]
fn a6_03_processing_time_timers_are_dropped_at_end_of_input_by_default() {
    let mut h = probe();
    h.process_element(("a", "et:5 pt:60 pt:50"), 1).unwrap();
    h.process_element(("b", "pt:50"), 2).unwrap();
    h.end_input().unwrap();
    assert_eq!(
        out(&mut h),
        ["E a et:5 pt:60 pt:50@1", "E b pt:50@2", "T a 5 et wm=MAX@5", "WM(MAX)"]
    );
    assert_eq!(h.num_processing_time_timers(), 0);
    assert_eq!(
        *h.metrics(),
        metrics(|m| {
            m.records_in = 2;
            m.event_timers_fired = 1;
            m.processing_timers_dropped_at_end = 3;
        })
    );
    // Through a pipeline whose clock stands still at 0.
    let out = probe_pipeline(
        Semantics::default(),
        vec![rec("a", "et:5 pt:60 pt:50", 1), rec("b", "pt:50", 2)],
        Probe::default,
    )
    .unwrap();
    assert_eq!(out, ["E a et:5 pt:60 pt:50@1", "E b pt:50@2", "T a 5 et wm=MAX@5", "WM(MAX)"]);
}

/// Also the README's Flink-incompatible option `EndOfInputTimers::Fire` (FLINK-18647).
#[test]
fn a6_03_end_of_input_timers_fire_fires_them_after_the_final_watermark() {
    let fire = Semantics::default().end_of_input_timers(EndOfInputTimers::Fire);
    let reregister = || {
        process_fn(|v: In, ctx: &mut Context<'_, &'static str>, out: &mut Collector<'_, String>| {
            run_commands(v.0, v.1, ctx.timer_service())?;
            out.collect(format!("E {} {}", v.0, v.1));
            Ok::<(), FnError>(())
        })
        .on_timer(|ts, ctx, out| {
            let d = domain(ctx.time_domain());
            out.collect(format!(
                "T {} {ts} {d} wm={}",
                ctx.current_key(),
                t(ctx.current_watermark())
            ));
            // Registered after the end: ignored (and counted).
            if ctx.time_domain() == TimeDomain::ProcessingTime {
                ctx.timer_service().register_processing_time_timer(ts + 1)?;
                ctx.timer_service().register_event_time_timer(ts + 1)?;
            }
            Ok(())
        })
    };
    let mut h =
        HarnessBuilder::default().semantics(fire).keyed(reregister(), key as KeyFn).unwrap();
    h.process_element(("a", "et:5 pt:60 pt:50"), 1).unwrap();
    h.process_element(("b", "pt:50"), 2).unwrap();
    h.end_input().unwrap();
    let expected = [
        "E a et:5 pt:60 pt:50@1",
        "E b pt:50@2",
        "T a 5 et wm=MAX@5",
        "WM(MAX)",
        "T a 50 pt wm=MAX@none",
        "T b 50 pt wm=MAX@none",
        "T a 60 pt wm=MAX@none",
    ];
    assert_eq!(show(h.take_output()), expected);
    assert_eq!(
        *h.metrics(),
        metrics(|m| {
            // Keys left without state or timers are removed.
            m.keys_removed = 2;
            m.records_in = 2;
            m.event_timers_fired = 1;
            m.processing_timers_fired = 3;
            m.timers_ignored_after_end = 6;
        })
    );
    // Through a pipeline whose clock stands still at 0.
    let out = Pipeline::new()
        .shards(1)
        .clock(ManualClock::new(0))
        .semantics(fire)
        .from_elements(vec![rec("a", "et:5 pt:60 pt:50", 1), rec("b", "pt:50", 2)])
        .key_by(key)
        .process(reregister)
        .collect_elements()
        .unwrap();
    assert_eq!(show(out), expected);
}

#[test]
fn a6_04_order_at_end_of_input_is_timers_watermark_processing_time_close() {
    for (semantics, expected_log, expected_out) in [
        (
            Semantics::default(),
            vec!["T a 5 et wm=MAX", "close"],
            vec!["E a et:5 pt:50@1", "T a 5 et wm=MAX@5", "WM(MAX)"],
        ),
        (
            Semantics::default().end_of_input_timers(EndOfInputTimers::Fire),
            vec!["T a 5 et wm=MAX", "T a 50 pt wm=MAX", "close"],
            vec!["E a et:5 pt:50@1", "T a 5 et wm=MAX@5", "WM(MAX)", "T a 50 pt wm=MAX@none"],
        ),
    ] {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut h =
            harness_with(Probe { log: Some(log.clone()), ..Probe::default() }, semantics, 0);
        h.process_element(("a", "et:5 pt:50"), 1).unwrap();
        h.end_input().unwrap();
        // A second end is a no-op.
        h.end_input().unwrap();
        assert_eq!(out(&mut h), expected_out);
        assert_eq!(*log.borrow(), expected_log);
    }
}

#[test]
fn a6_04_an_event_time_timer_registered_after_max_never_fires() {
    let mut h = probe();
    h.process_watermark(MAX).unwrap();
    h.process_element(("a", "et:5 et:MAX"), 7).unwrap();
    h.end_input().unwrap();
    assert_eq!(out(&mut h), ["WM(MAX)", "E a et:5 et:MAX@7"]);
    assert_eq!(
        *h.metrics(),
        metrics(|m| {
            m.records_in = 1;
            m.late_records = 1;
            m.event_timers_never_fired = 2;
        })
    );
    // After the end, registrations are ignored and counted.
    h.process_element(("a", "et:6 pt:6"), 8).unwrap();
    assert_eq!(out(&mut h), ["E a et:6 pt:6@8"]);
    assert_eq!(h.metrics().timers_ignored_after_end, 2);
    assert_eq!(h.num_event_time_timers() + h.num_processing_time_timers(), 0);
    // Through a pipeline: a source sending MAX before its last record.
    let out = probe_pipeline(
        Semantics::default(),
        vec![StreamElement::Watermark(MAX), rec("a", "et:5", 7)],
        Probe::default,
    )
    .unwrap();
    assert_eq!(out, ["WM(MAX)", "E a et:5@7"]);
}

/// The everyday periodic timer: `on_timer` emits and re-arms `t.saturating_add(period)`, without
/// looking at the watermark. The final watermark `MAX` fires the whole chain (as Flink does,
/// S20); once it saturates, the timer fires at `MAX` and re-arms `MAX` again, which would fire
/// again at once, forever (a `TimerLoop` error after 10,000 re-fires). That one re-registration is
/// dropped and counted, and the job ends.
struct Periodic {
    period: i64,
}

impl KeyedProcessFunction for Periodic {
    type Key = &'static str;
    type In = In;
    type Out = String;

    fn process_element(
        &mut self,
        _: In,
        ctx: &mut Context<'_, &'static str>,
        _: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        let ts = ctx.timestamp().unwrap_or(0);
        ctx.timer_service().register_event_time_timer(ts.saturating_add(self.period))?;
        Ok(())
    }

    fn on_timer(
        &mut self,
        t: Timestamp,
        ctx: &mut OnTimerContext<'_, &'static str>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        out.collect(format!("T {} {}", ctx.current_key(), pinwheel_engine::time::display_ts(t)));
        ctx.timer_service().register_event_time_timer(t.saturating_add(self.period))?;
        Ok(())
    }
}

#[test]
fn end_of_time_a_periodic_timer_re_arming_max_is_dropped_and_counted() {
    let start = MAX - 10_000;
    let expected = vec![
        format!("T a {}", MAX - 7_000),
        format!("T a {}", MAX - 4_000),
        format!("T a {}", MAX - 1_000),
        "T a MAX".to_string(),
    ];
    let mut h = HarnessBuilder::default().keyed(Periodic { period: 3_000 }, key as KeyFn).unwrap();
    h.process_element(("a", ""), start).unwrap();
    h.end_input().unwrap();
    let values: Vec<String> = h.output_values().into_iter().cloned().collect();
    assert_eq!(values, expected);
    assert_eq!(h.metrics().timers_dropped_at_end_of_time, 1);
    assert_eq!(h.metrics().event_timers_fired, 4);
    assert_eq!(h.num_event_time_timers(), 0);
    // The same job through a pipeline, on one and two shards, ends without an error.
    for shards in [1, 2] {
        let got = Pipeline::new()
            .shards(shards)
            .from_elements(vec![StreamElement::record(("a", ""), start)])
            .key_by(key)
            .process(|| Periodic { period: 3_000 })
            .collect()
            .unwrap();
        assert_eq!(got, expected, "{shards} shards");
    }
    // A watermark `MAX` is the end of event time whether or not the input has ended: the same.
    let mut h = HarnessBuilder::default().keyed(Periodic { period: 3_000 }, key as KeyFn).unwrap();
    h.process_element(("a", ""), start).unwrap();
    h.process_watermark(MAX).unwrap();
    assert_eq!(h.metrics().timers_dropped_at_end_of_time, 1);
    assert_eq!(h.output_values().len(), 4);
    // Re-registering a timestamp below MAX from its own timer is still the loop it is.
    let mut h = loop_harness(looping(None), Semantics::default());
    h.process_element(("a", "et"), MAX - 1).unwrap();
    let e = h.process_watermark(MAX).unwrap_err();
    assert!(matches!(e, PipelineError::TimerLoop { timestamp, .. } if timestamp == MAX - 1));
}

// =================================================================================================
// A7.1 Side outputs
// =================================================================================================

#[test]
fn a7_01_side_outputs_are_typed_by_id_and_type_and_reach_only_their_consumers() {
    let text = OutputTag::<String>::new("x");
    let number = OutputTag::<u64>::new("x");
    let other = OutputTag::<String>::new("y");
    let f = {
        let (text, number) = (text.clone(), number.clone());
        move || {
            let (text, number) = (text.clone(), number.clone());
            process_fn(
                move |v: In,
                      ctx: &mut Context<'_, &'static str>,
                      out: &mut Collector<'_, String>| {
                    out.collect(format!("main {}", v.0));
                    ctx.output(&text, format!("text {}", v.0));
                    ctx.output(&number, v.1.len() as u64);
                    Ok::<(), FnError>(())
                },
            )
        }
    };
    let mut h = KeyedHarness::new(f(), key as KeyFn).unwrap();
    h.process_element(("a", "xyz"), 1).unwrap();
    assert_eq!(show(h.take_output()), ["main a@1"]);
    assert_eq!(show(h.take_side_output(&text)), ["text a@1"]);
    assert_eq!(show(h.take_side_output(&number)), ["3@1"]);
    assert!(h.take_side_output(&other).is_empty());
    assert_eq!(text.id(), "x");
    // In a pipeline each consumer receives its own tag's records.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (s1, s2, s3) = (seen.clone(), seen.clone(), seen.clone());
    let out = Pipeline::new()
        .shards(1)
        .from_elements(vec![rec("a", "xyz", 1), rec("b", "", 2)])
        .key_by(key)
        .process(f)
        .side_output(&text, move |v, ts| s1.lock().unwrap().push(format!("{v}@{}", opt_ts(ts))))
        .side_output(&number, move |v, ts| s2.lock().unwrap().push(format!("n={v}@{}", opt_ts(ts))))
        .side_output(&other, move |v, ts| {
            s3.lock().unwrap().push(format!("other {v}@{}", opt_ts(ts)))
        })
        .collect_elements()
        .unwrap();
    assert_eq!(show(out), ["main a@1", "main b@2", "WM(MAX)"]);
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, ["n=0@2", "n=3@1", "text a@1", "text b@2"]);
}

/// Runs the side-output timestamp scenario through the harness and a pipeline; returns the side
/// output of each.
fn side_timestamps(semantics: Semantics) -> (Vec<String>, Vec<String>) {
    let tag = OutputTag::<String>::new("side");
    let mut h = harness_with(Probe::with_side(&tag), semantics, 0);
    h.process_element(("a", "et:30 pt:7"), 5).unwrap();
    h.process_element(("a", "-"), None).unwrap();
    h.set_processing_time(10).unwrap();
    h.process_watermark(30).unwrap();
    // The main output follows A1.13 whatever the setting.
    assert_eq!(
        out(&mut h),
        ["E a et:30 pt:7@5", "E a -@none", "T a 7 pt wm=MIN@none", "T a 30 et wm=30@30", "WM(30)"]
    );
    let harness_side = show(h.take_side_output(&tag));

    let clock = ManualClock::new(0);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let probe_tag = tag.clone();
    let main = Pipeline::new()
        .shards(1)
        .clock(clock.clone())
        .semantics(semantics)
        .from_source(Script::new(
            &clock,
            vec![Rec(("a", "et:30 pt:7"), Some(5)), Rec(("a", "-"), None), Clock(10), Wm(30)],
        ))
        .key_by(key)
        .process(move || Probe::with_side(&probe_tag))
        .side_output(&tag, move |v, ts| sink.lock().unwrap().push(format!("{v}@{}", opt_ts(ts))))
        .collect_elements()
        .unwrap();
    assert_eq!(
        show(main),
        [
            "E a et:30 pt:7@5",
            "E a -@none",
            "T a 7 pt wm=MIN@none",
            "T a 30 et wm=30@30",
            "WM(30)",
            "WM(MAX)",
        ]
    );
    let pipeline_side = seen.lock().unwrap().clone();
    (harness_side, pipeline_side)
}

/// Also the README's "side-output timestamps", Flink-compatible setting.
#[test]
fn a7_01_side_output_timestamps_with_the_flink_setting_follow_a1_13() {
    for semantics in [
        Semantics::flink(),
        Semantics::default().side_output_timestamps(SideOutputTimestamps::Flink),
    ] {
        let (harness, pipeline) = side_timestamps(semantics);
        // Always a timestamp: MIN for an element without one; the registered time of a
        // processing-time timer.
        let records = [
            "side:E a et:30 pt:7@5",
            "side:E a -@MIN",
            "side:T a 7 pt wm=MIN@7",
            "side:T a 30 et wm=30@30",
        ];
        assert_eq!(harness, [&records[..], &["WM(30)"]].concat());
        assert_eq!(pipeline, records);
    }
}

/// Also the README's "side-output timestamps", Pinwheel's default.
#[test]
fn a7_01_side_output_timestamps_by_default_follow_the_main_output_rule() {
    let (harness, pipeline) = side_timestamps(Semantics::default());
    let records = [
        "side:E a et:30 pt:7@5",
        "side:E a -@none",
        "side:T a 7 pt wm=MIN@none",
        "side:T a 30 et wm=30@30",
    ];
    assert_eq!(harness, [&records[..], &["WM(30)"]].concat());
    assert_eq!(pipeline, records);
}

// =================================================================================================
// The README's deliberate differences (those not covered above)
// =================================================================================================

#[test]
fn readme_semantics_flink_selects_every_flink_compatible_setting() {
    let d = Semantics::default();
    assert_eq!(d.end_of_input_timers, EndOfInputTimers::Drop);
    assert_eq!(d.side_output_timestamps, SideOutputTimestamps::SameAsMain);
    assert_eq!(d.max_timer_refires, Some(10_000));
    let f = Semantics::flink();
    assert_eq!(f.end_of_input_timers, EndOfInputTimers::Drop);
    assert_eq!(f.side_output_timestamps, SideOutputTimestamps::Flink);
    assert_eq!(f.max_timer_refires, None);
}

/// Registers a timer at the element's timestamp (in the domain the element names); `on_timer`
/// counts its calls and re-registers its own timestamp `rearms` times (forever if `None`). A
/// safety valve turns a runaway loop into an error after `valve` calls.
struct Loop {
    rearms: Option<u32>,
    calls: u32,
    valve: u32,
}

fn looping(rearms: Option<u32>) -> Loop {
    Loop { rearms, calls: 0, valve: 1_000_000 }
}

impl KeyedProcessFunction for Loop {
    type Key = &'static str;
    type In = In;
    type Out = String;

    fn process_element(
        &mut self,
        (_, d): In,
        ctx: &mut Context<'_, &'static str>,
        _: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        let ts = ctx.timestamp().unwrap_or(0);
        match d {
            "et" => ctx.timer_service().register_event_time_timer(ts)?,
            _ => ctx.timer_service().register_processing_time_timer(ts)?,
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        ts: Timestamp,
        ctx: &mut OnTimerContext<'_, &'static str>,
        _: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        self.calls += 1;
        if self.calls > self.valve {
            return Err("safety valve: the timer loop was not stopped".into());
        }
        if self.rearms.is_none_or(|n| self.calls <= n) {
            match ctx.time_domain() {
                TimeDomain::EventTime => ctx.timer_service().register_event_time_timer(ts)?,
                TimeDomain::ProcessingTime => {
                    ctx.timer_service().register_processing_time_timer(ts)?
                }
            }
        }
        Ok(())
    }
}

fn loop_harness(f: Loop, semantics: Semantics) -> KeyedHarness<Loop, KeyFn> {
    HarnessBuilder::default().semantics(semantics).keyed(f, key as KeyFn).unwrap()
}

#[test]
fn readme_timer_loop_guard_stops_after_10000_refires_by_default() {
    let mut h = loop_harness(looping(None), Semantics::default());
    h.process_element(("a", "et"), 10).unwrap();
    let e = h.process_watermark(10).unwrap_err();
    assert!(
        matches!(
            &e,
            PipelineError::TimerLoop {
                operator,
                shard: 0,
                domain: TimeDomain::EventTime,
                timestamp: 10,
                refires: 10_001,
                ..
            } if &**operator == "process"
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("Semantics::max_timer_refires"), "{e}");
    // The original firing and 10,000 re-fires ran; the next one was refused.
    assert_eq!(h.function().calls, 10_001);
    assert!(h.take_output().is_empty(), "the watermark is not forwarded");
}

/// The error names the looping timer's key, formatted with `Debug` (the documented format).
#[test]
fn readme_timer_loop_error_names_the_key() {
    let mut h = loop_harness(looping(None), Semantics::default().max_timer_refires(Some(1)));
    h.process_element(("a", "et"), 10).unwrap();
    match h.process_watermark(10).unwrap_err() {
        PipelineError::TimerLoop { key, .. } => assert_eq!(key, "\"a\""),
        other => panic!("expected PipelineError::TimerLoop, got {other:?}"),
    }
}

#[test]
fn readme_timer_loop_guard_limit_is_a_setting_and_covers_processing_time() {
    let three = Semantics::default().max_timer_refires(Some(3));
    // Three re-fires are allowed...
    let mut h = loop_harness(looping(Some(3)), three);
    h.process_element(("a", "pt"), 5).unwrap();
    h.set_processing_time(5).unwrap();
    assert_eq!(h.function().calls, 4);
    assert_eq!(h.metrics().processing_timers_fired, 4);
    // ...the fourth is not.
    let mut h = loop_harness(looping(Some(4)), three);
    h.process_element(("a", "pt"), 5).unwrap();
    let e = h.set_processing_time(5).unwrap_err();
    assert!(
        matches!(
            e,
            PipelineError::TimerLoop {
                domain: TimeDomain::ProcessingTime,
                timestamp: 5,
                refires: 4,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(h.function().calls, 4);
}

#[test]
fn readme_timer_loop_guard_none_loops_like_flink() {
    let mut h = loop_harness(looping(Some(20_000)), Semantics::flink());
    h.process_element(("a", "et"), 10).unwrap();
    h.process_watermark(10).unwrap();
    assert_eq!(h.function().calls, 20_001);
    assert_eq!(h.metrics().event_timers_fired, 20_001);
    assert_eq!(show(h.take_output()), ["WM(10)"]);
}

/// Two keys whose timers at the same timestamp each re-register their own timestamp: the firing
/// alternates a, b, a, b, ... and never ends (on Flink too). The README promises
/// `PipelineError::TimerLoop` after 10,000 re-fires of a timer re-registering its own timestamp.
#[test]
fn readme_timer_loop_guard_stops_two_keys_re_registering_in_turn() {
    let mut h = loop_harness(looping(None), Semantics::default());
    h.process_element(("a", "et"), 10).unwrap();
    h.process_element(("b", "et"), 10).unwrap();
    let e = h.process_watermark(10).unwrap_err();
    assert!(matches!(e, PipelineError::TimerLoop { timestamp: 10, .. }), "{e:?}");
}

#[test]
fn readme_watermarks_that_do_not_advance_are_dropped_and_counted() {
    // Keyed and non-keyed operators and the input valve: see a2_03. Here: dropping does not
    // disturb what follows, and the count is exact over a longer sequence.
    let mut h = probe();
    for w in [MIN, 3, 3, 2, MIN, 4, 4, MAX, MAX, 0] {
        h.process_watermark(w).unwrap();
    }
    h.end_input().unwrap();
    assert_eq!(out(&mut h), ["WM(3)", "WM(4)", "WM(MAX)"]);
    assert_eq!(h.metrics().watermarks_dropped, 7);
}

#[test]
fn readme_periodic_watermarks_every_256_records_or_with_emit_interval() {
    let run = |interval: Option<u32>| {
        let strategy = WatermarkStrategy::for_monotonous_timestamps();
        let strategy = match interval {
            Some(n) => strategy.with_emit_interval(n),
            None => strategy,
        };
        let out = Pipeline::new()
            .shards(1)
            .from_elements((1..=300).map(|ts| StreamElement::record(ts, ts)))
            .assign_timestamps_and_watermarks(strategy)
            .collect_elements()
            .unwrap();
        // Where each watermark came: (records before it, its value).
        let mut records = 0;
        let mut marks = Vec::new();
        for e in out {
            match e {
                StreamElement::Record { .. } => records += 1,
                StreamElement::Watermark(w) => marks.push((records, t(w))),
                StreamElement::Idle => marks.push((records, "IDLE".to_string())),
                StreamElement::Barrier(b) => marks.push((records, format!("BARRIER({})", b.id))),
            }
        }
        assert_eq!(records, 300);
        marks
    };
    let s = |v: &str| v.to_string();
    assert_eq!(run(None), [(256, s("255")), (300, s("299")), (300, s("MAX"))]);
    assert_eq!(run(Some(100)), [(100, s("99")), (200, s("199")), (300, s("299")), (300, s("MAX"))]);
}

// =================================================================================================
// Bad input
// =================================================================================================

#[test]
fn bad_input_element_timestamps_at_the_ends_of_the_axis() {
    let stamps = [MIN, MIN + 1, MAX - 1, MAX];
    let mut h = probe();
    for ts in stamps {
        h.process_element(("a", "-"), ts).unwrap();
    }
    assert_eq!(out(&mut h), ["E a -@MIN", "E a -@MIN+1", "E a -@MAX-1", "E a -@MAX"]);
    // MIN is at or below the initial watermark MIN: late (A2.1).
    assert_eq!(
        *h.metrics(),
        metrics(|m| {
            // Keys left without state or timers are removed.
            m.keys_removed = 4;
            m.records_in = 4;
            m.late_records = 1;
        })
    );
    // Through a pipeline, with watermarks generated from them (no overflow).
    let out = Pipeline::new()
        .shards(1)
        .from_elements(stamps.map(|ts| StreamElement::record(("a", "-"), ts)))
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_bounded_out_of_orderness(5).with_emit_interval(1),
        )
        .key_by(key)
        .process(Probe::default)
        .collect_elements()
        .unwrap();
    assert_eq!(
        show(out),
        [
            "E a -@MIN",
            "E a -@MIN+1",
            "E a -@MAX-1",
            "WM(9223372036854775800)",
            "E a -@MAX",
            "WM(9223372036854775801)",
            "WM(MAX)",
        ]
    );
    // A delay at the end of the axis: the first emission is still MIN, then maxTs - d - 1.
    let mut g = BoundedOutOfOrderness::new(MAX);
    assert_eq!(periodic(&mut g), Some(MIN));
    event(&mut g, MAX);
    assert_eq!(periodic(&mut g), Some(-1));
}

#[test]
fn bad_input_watermarks_and_timers_at_the_ends_of_the_axis() {
    let mut h = probe();
    h.process_element(("a", "et:MIN et:MIN+1 et:MAX-1 et:MAX pt:MIN pt:MIN+1 pt:MAX-1 pt:MAX"), 0)
        .unwrap();
    // Processing-time timers at MIN and MIN+1 are already due (now = 0).
    assert_eq!(
        out(&mut h),
        [
            "E a et:MIN et:MIN+1 et:MAX-1 et:MAX pt:MIN pt:MIN+1 pt:MAX-1 pt:MAX@0",
            "T a MIN pt wm=MIN@none",
            "T a MIN+1 pt wm=MIN@none",
        ]
    );
    // A watermark at MIN does not advance: dropped and counted.
    h.process_watermark(MIN).unwrap();
    h.process_watermark(MIN + 1).unwrap();
    h.process_watermark(MAX - 1).unwrap();
    h.set_processing_time(MAX - 1).unwrap();
    h.set_processing_time(MAX).unwrap();
    h.process_watermark(MAX).unwrap();
    h.process_watermark(MAX).unwrap();
    h.end_input().unwrap();
    assert_eq!(
        out(&mut h),
        [
            "T a MIN et wm=MIN+1@MIN",
            "T a MIN+1 et wm=MIN+1@MIN+1",
            "WM(MIN+1)",
            "T a MAX-1 et wm=MAX-1@MAX-1",
            "WM(MAX-1)",
            "T a MAX-1 pt wm=MAX-1@none",
            "T a MAX pt wm=MAX-1@none",
            "T a MAX et wm=MAX@MAX",
            "WM(MAX)",
        ]
    );
    assert_eq!(
        *h.metrics(),
        metrics(|m| {
            // Keys left without state or timers are removed.
            m.keys_removed = 1;
            m.records_in = 1;
            m.watermarks_dropped = 2;
            m.event_timers_fired = 4;
            m.processing_timers_fired = 4;
        })
    );
}

#[test]
fn bad_input_a_timeout_past_max_saturates_and_fires_only_at_end_of_input() {
    const TIMEOUT: i64 = 60_000;
    let f = process_fn(
        |_: In, ctx: &mut Context<'_, &'static str>, out: &mut Collector<'_, String>| {
            let ts = ctx.timestamp().unwrap_or(0);
            // `ts + TIMEOUT` would overflow (a panic with overflow checks, a timer in the far past
            // without): saturating puts the timer at MAX.
            ctx.timer_service().register_event_time_timer(ts.saturating_add(TIMEOUT))?;
            out.collect(format!(
                "E timeout at {}",
                t(pinwheel_engine::time::saturating_add(ts, TIMEOUT))
            ));
            Ok::<(), FnError>(())
        },
    )
    .on_timer(|ts, ctx, out| {
        out.collect(format!("T {} wm={}", t(ts), t(ctx.current_watermark())));
        Ok(())
    });
    let mut h = KeyedHarness::new(f, key as KeyFn).unwrap();
    h.process_element(("a", ""), MAX - 1).unwrap();
    assert_eq!(h.registered_timers(&"a", TimeDomain::EventTime), [MAX]);
    h.process_watermark(MAX - 1).unwrap();
    assert_eq!(show(h.take_output()), ["E timeout at MAX@MAX-1", "WM(MAX-1)"]);
    h.end_input().unwrap();
    assert_eq!(show(h.take_output()), ["T MAX wm=MAX@MAX", "WM(MAX)"]);
}

#[test]
fn bad_input_timers_in_a_non_keyed_function_are_a_typed_error() {
    let r = Pipeline::new()
        .shards(1)
        .from_iter(["a", "register", "b"])
        .process(|| NoKeyTimers)
        .name("no-key")
        .collect()
        .map(drop);
    assert_not_keyed_error(r, "no-key");
}

/// Declares keyed state in a non-keyed function.
struct NonKeyedState;

impl ProcessFunction for NonKeyedState {
    type In = u64;
    type Out = u64;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        ctx.value_state::<u64>(ValueStateDescriptor::new("n"))?;
        Ok(())
    }

    fn process_element(
        &mut self,
        v: u64,
        _: &mut ProcessContext<'_>,
        out: &mut Collector<'_, u64>,
    ) -> Result<(), FnError> {
        out.collect(v);
        Ok(())
    }
}

/// Checks that `e` is a function error of `operator` on shard 0 in `phase`, caused by `cause`.
fn assert_state_error(e: PipelineError, operator: &str, phase: Phase, cause: StateError) {
    match e {
        PipelineError::Function { operator: op, shard, phase: p, source } => {
            assert_eq!((&*op, shard, p), (operator, 0, phase));
            assert_eq!(source.downcast_ref::<StateError>(), Some(&cause), "{source}");
        }
        other => panic!("expected PipelineError::Function, got {other:?}"),
    }
}

#[test]
fn bad_input_keyed_state_outside_a_keyed_context_is_a_typed_error() {
    let e = Harness::new(NonKeyedState).unwrap_err();
    assert_state_error(e, "process", Phase::Open, StateError::NoKeyedContext);
    let e = Pipeline::new()
        .shards(1)
        .from_iter([1_u64, 2])
        .process(|| NonKeyedState)
        .name("stateful")
        .collect()
        .unwrap_err();
    assert_state_error(e, "stateful", Phase::Open, StateError::NoKeyedContext);
}

/// Uses `n` without declaring it in `open` (it stays the unbound default); `"timer"` elements
/// register a timer whose `on_timer` does the same.
#[derive(Default)]
struct Forgetful {
    n: ValueState<u64>,
}

impl KeyedProcessFunction for Forgetful {
    type Key = &'static str;
    type In = In;
    type Out = String;

    fn process_element(
        &mut self,
        (_, v): In,
        ctx: &mut Context<'_, &'static str>,
        _: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        if v == "timer" {
            ctx.timer_service().register_event_time_timer(1)?;
        } else {
            self.n.update(ctx, 1)?;
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        _: Timestamp,
        ctx: &mut OnTimerContext<'_, &'static str>,
        _: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        self.n.value(ctx)?;
        Ok(())
    }
}

#[test]
fn bad_input_an_unbound_state_handle_is_a_typed_error() {
    let unbound = StateError::Unbound { kind: "ValueState" };
    let mut h = KeyedHarness::new(Forgetful::default(), key as KeyFn).unwrap();
    let e = h.process_element(("a", "use"), 1).unwrap_err();
    assert_state_error(e, "process", Phase::ProcessElement, unbound.clone());
    h.process_element(("a", "timer"), 1).unwrap();
    let e = h.process_watermark(1).unwrap_err();
    assert!(
        e.to_string().starts_with(
            "operator `process` on shard 0 failed in on_timer (EVENT_TIME): this ValueState \
             handle is not bound to any state"
        ),
        "{e}"
    );
    assert_state_error(e, "process", Phase::OnTimer(TimeDomain::EventTime), unbound);
}

/// Uses a state handle it was given instead of one it declared.
struct Borrowed {
    stash: Rc<RefCell<Option<ValueState<u64>>>>,
    own: bool,
}

impl KeyedProcessFunction for Borrowed {
    type Key = &'static str;
    type In = In;
    type Out = String;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        if self.own {
            *self.stash.borrow_mut() = Some(ctx.value_state(ValueStateDescriptor::new("mine"))?);
        }
        Ok(())
    }

    fn process_element(
        &mut self,
        _: In,
        ctx: &mut Context<'_, &'static str>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        let handle = self.stash.borrow().clone().expect("a handle was stashed");
        handle.update(ctx, 7)?;
        out.collect(format!("n={:?}", handle.value(ctx)?));
        Ok(())
    }
}

#[test]
fn bad_input_a_state_handle_from_another_operator_is_a_typed_error() {
    // A handle of another operator instance (another harness, the same function type).
    let stash = Rc::new(RefCell::new(None));
    let mut owner =
        KeyedHarness::new(Borrowed { stash: stash.clone(), own: true }, key as KeyFn).unwrap();
    let mut thief =
        KeyedHarness::new(Borrowed { stash: stash.clone(), own: false }, key as KeyFn).unwrap();
    owner.process_element(("a", ""), 1).unwrap();
    assert_eq!(show(owner.take_output()), ["n=Some(7)@1"]);
    let e = thief.process_element(("a", ""), 1).unwrap_err();
    assert_state_error(
        e,
        "process",
        Phase::ProcessElement,
        StateError::ForeignHandle { name: "mine".to_string() },
    );
    // A handle of a registry no operator owns.
    let mut registry = StateRegistry::new();
    *stash.borrow_mut() = Some(registry.value_state(ValueStateDescriptor::new("loose")).unwrap());
    let e = thief.process_element(("a", ""), 2).unwrap_err();
    assert_state_error(
        e,
        "process",
        Phase::ProcessElement,
        StateError::ForeignHandle { name: "loose".to_string() },
    );
}

/// Reads its state from inside the closure of another read of the same state.
#[derive(Default)]
struct Nested {
    n: ValueState<u64>,
}

impl KeyedProcessFunction for Nested {
    type Key = &'static str;
    type In = In;
    type Out = String;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        self.n = ctx.value_state(ValueStateDescriptor::new("n"))?;
        Ok(())
    }

    fn process_element(
        &mut self,
        _: In,
        ctx: &mut Context<'_, &'static str>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        let inner = self.n.with_value(ctx, |_| self.n.value(ctx))?;
        out.collect(format!("inner: {:?}", inner.as_ref().map_err(ToString::to_string)));
        // The error is the function's to handle; the state stays usable.
        self.n.update(ctx, 1)?;
        out.collect(format!("after: {:?}", self.n.value(ctx)?));
        inner?;
        Ok(())
    }
}

#[test]
fn bad_input_reentrant_state_access_is_a_typed_error() {
    let mut h = KeyedHarness::new(Nested::default(), key as KeyFn).unwrap();
    let e = h.process_element(("a", ""), 1).unwrap_err();
    assert_state_error(
        e,
        "process",
        Phase::ProcessElement,
        StateError::Reentrant { name: "n".to_string() },
    );
    let out = show(h.take_output());
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(
        out[0].starts_with("inner: Err(\"state \\\"n\\\" was accessed while it was already"),
        "{out:?}"
    );
    assert_eq!(out[1], "after: Some(1)@1");
}

fn panicking() -> impl KeyedProcessFunction<Key = &'static str, In = In, Out = String> {
    process_fn(|v: In, ctx: &mut Context<'_, &'static str>, out: &mut Collector<'_, String>| {
        match v.1 {
            "boom" => panic!("boom at {}", v.0),
            "later" => ctx.timer_service().register_event_time_timer(5)?,
            _ => {}
        }
        out.collect(format!("E {}", v.0));
        Ok::<(), FnError>(())
    })
    .on_timer(|_, ctx, _| panic!("boom in on_timer of {}", ctx.current_key()))
}

#[test]
fn bad_input_a_panicking_function_is_reported_not_an_abort() {
    let is_panic = |r: Result<Vec<String>, PipelineError>, want: &str| match r {
        Err(PipelineError::Panicked { message, shard, .. }) => {
            assert_eq!(message, want);
            shard
        }
        other => panic!("expected PipelineError::Panicked, got {other:?}"),
    };
    let elements = || vec![("a", "ok"), ("b", "boom"), ("c", "ok")];
    // collect, on one shard and on two (the key "b" is on one of them).
    for shards in [1, 2] {
        let r = Pipeline::new()
            .shards(shards)
            .from_iter(elements())
            .key_by(key)
            .process(panicking)
            .collect();
        let shard = is_panic(r, "boom at b");
        assert!(shard < shards);
    }
    // for_each on one shard runs on the calling thread.
    let r = Pipeline::new()
        .shards(1)
        .from_iter(elements())
        .key_by(key)
        .process(panicking)
        .for_each(drop)
        .map(|()| Vec::new());
    assert_eq!(is_panic(r, "boom at b"), 0);
    // A panic in on_timer (here at the end of input).
    let r = Pipeline::new()
        .shards(1)
        .from_iter(vec![("z", "later")])
        .key_by(key)
        .process(panicking)
        .collect();
    assert_eq!(is_panic(r, "boom in on_timer of z"), 0);
}

#[test]
fn bad_input_a_watermark_going_backwards_is_dropped_and_counted() {
    let mut h = probe();
    h.process_element(("a", "et:15"), 1).unwrap();
    h.process_watermark(20).unwrap();
    h.process_element(("a", "et:18"), 2).unwrap();
    // Backwards: dropped, and it fires nothing although 18 <= 19.
    h.process_watermark(19).unwrap();
    assert_eq!(h.current_watermark(), 20);
    h.process_watermark(21).unwrap();
    assert_eq!(
        out(&mut h),
        [
            "E a et:15@1",
            "T a 15 et wm=20@15",
            "WM(20)",
            "E a et:18@2",
            "T a 18 et wm=21@18",
            "WM(21)"
        ]
    );
    assert_eq!(h.metrics().watermarks_dropped, 1);
    // Through a pipeline: the operator never forwards it.
    let out = probe_pipeline(
        Semantics::default(),
        vec![
            StreamElement::Watermark(20),
            StreamElement::Watermark(19),
            StreamElement::Watermark(21),
        ],
        Probe::default,
    )
    .unwrap();
    assert_eq!(out, ["WM(20)", "WM(21)", "WM(MAX)"]);
    // Multi-channel valve: a channel going backwards is dropped even if it would not move the
    // combined watermark anyway.
    let mut v = WatermarkValve::new(2);
    v.on_watermark(0, 20);
    v.on_watermark(1, 30);
    assert_eq!(v.on_watermark(1, 25).watermark, None);
    assert_eq!(v.on_watermark(0, 10).watermark, None);
    assert_eq!((v.current(), v.dropped()), (20, 2));
}
