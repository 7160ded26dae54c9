//! docs/semantics.md Part B, the one-input scenarios, run through the test harness with their exact
//! expected outputs (verified on Flink 1.20.5 and 2.3.0).
//!
//! Test families and what each guards against:
//! * S01–S10, S19, S20 — timers: firing before the watermark is forwarded, dedup per (key, ts),
//!   delete semantics, registering at/below the watermark, re-registration within one advance, the
//!   end-of-input `MAX` advance. Bugs caught: firing synchronously, firing after forwarding,
//!   forgetting to re-peek the queue, wrong `currentWatermark()` in `on_timer`.
//! * S05, S06 — context values: late elements still arrive; `timestamp()`, `current_key()`,
//!   `time_domain()` in `on_timer`.
//! * S11–S14 — keyed state: scoping to the timer's key, absent values, list/map/reducing/
//!   aggregating semantics.
//! * T1–T5 — state TTL with a manual clock.
//!
//! Groups marked {unordered} in docs/semantics.md (equal timestamps across keys) are compared as sets.

use pinwheel_operators::harness::KeyedHarness;
use pinwheel_operators::{
    AggregateFunction, AggregatingState, AggregatingStateDescriptor, Collector, Context, FnError,
    KeyedProcessFunction, ListState, ListStateDescriptor, MapState, MapStateDescriptor,
    OnTimerContext, OpenContext, ReducingState, ReducingStateDescriptor, StateTtlConfig,
    StateVisibility, StreamElement, Timestamp, UpdateType, ValueState, ValueStateDescriptor,
};

type In = (String, String);

/// One input step, in docs/semantics.md's notation.
enum Step {
    E(&'static str, Timestamp, &'static str),
    W(Timestamp),
    End,
}
use Step::*;

/// One expected output line, or a group whose order is unspecified.
enum Expect {
    One(&'static str),
    Unordered(Vec<&'static str>),
}
use Expect::*;

fn ts(t: Timestamp) -> String {
    match t {
        i64::MIN => "MIN".into(),
        i64::MAX => "MAX".into(),
        t => t.to_string(),
    }
}

fn render(out: Vec<StreamElement<String>>) -> Vec<String> {
    out.into_iter()
        .map(|e| match e {
            StreamElement::Record { value, timestamp } => {
                format!("out:{value}@{}", timestamp.map_or("none".to_string(), ts))
            }
            StreamElement::Watermark(w) => format!("WM({})", ts(w)),
            StreamElement::Idle => "IDLE".to_string(),
            StreamElement::Barrier(b) => format!("BARRIER({})", b.id),
        })
        .collect()
}

fn run<F>(f: F, steps: &[Step]) -> Vec<String>
where
    F: KeyedProcessFunction<Key = String, In = In, Out = String>,
{
    let mut h = KeyedHarness::new(f, |e: &In| e.0.clone()).unwrap();
    for s in steps {
        match s {
            E(k, t, v) => h.process_element((k.to_string(), v.to_string()), *t).unwrap(),
            W(t) => h.process_watermark(*t).unwrap(),
            End => h.end_input().unwrap(),
        }
    }
    render(h.take_output())
}

fn check(actual: Vec<String>, expected: &[Expect]) {
    let mut i = 0;
    for e in expected {
        match e {
            One(s) => {
                assert_eq!(actual.get(i).map(String::as_str), Some(*s), "at {i}: {actual:#?}");
                i += 1;
            }
            Unordered(group) => {
                let mut got: Vec<&str> = actual
                    .get(i..i + group.len())
                    .unwrap_or_default()
                    .iter()
                    .map(|s| s.as_str())
                    .collect();
                let mut want = group.clone();
                got.sort_unstable();
                want.sort_unstable();
                assert_eq!(got, want, "group at {i}: {actual:#?}");
                i += group.len();
            }
        }
    }
    assert_eq!(actual.len(), i, "extra output: {actual:#?}");
}

// --- The shared functions of Part B --------------------------------------------------------------

/// PlusDelta(d) and Fixed(c).
struct Timed {
    delta: Option<i64>,
    fixed: Option<i64>,
}

impl KeyedProcessFunction for Timed {
    type Key = String;
    type In = In;
    type Out = String;

    fn process_element(
        &mut self,
        v: In,
        ctx: &mut Context<'_, String>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        out.collect(format!("E {} {}", v.0, v.1));
        let at = match (self.delta, self.fixed) {
            (Some(d), _) => ctx.timestamp().unwrap_or(0).saturating_add(d),
            (_, Some(c)) => c,
            _ => unreachable!(),
        };
        ctx.timer_service().register_event_time_timer(at)?;
        Ok(())
    }

    fn on_timer(
        &mut self,
        t: Timestamp,
        ctx: &mut OnTimerContext<'_, String>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        out.collect(format!("T {} {t}", ctx.current_key()));
        Ok(())
    }
}

fn plus_delta(d: i64) -> Timed {
    Timed { delta: Some(d), fixed: None }
}

fn fixed(c: i64) -> Timed {
    Timed { delta: None, fixed: Some(c) }
}

/// OwnTs.
struct OwnTs;

impl KeyedProcessFunction for OwnTs {
    type Key = String;
    type In = In;
    type Out = String;

    fn process_element(
        &mut self,
        v: In,
        ctx: &mut Context<'_, String>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        out.collect(format!("E {} {} wm={}", v.0, v.1, ts(ctx.current_watermark())));
        let t = ctx.timestamp().unwrap_or(0);
        ctx.timer_service().register_event_time_timer(t)?;
        Ok(())
    }

    fn on_timer(
        &mut self,
        t: Timestamp,
        ctx: &mut OnTimerContext<'_, String>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        out.collect(format!("T {} {t} wm={}", ctx.current_key(), ts(ctx.current_watermark())));
        Ok(())
    }
}

/// S07/S08/S09/S20: register at ts; on_timer re-registers t + step while a counter is below a limit.
#[derive(Default)]
struct Rearm {
    step: i64,
    limit: i64,
    cnt: ValueState<i64>,
}

impl KeyedProcessFunction for Rearm {
    type Key = String;
    type In = In;
    type Out = String;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        self.cnt = ctx.value_state(ValueStateDescriptor::new("cnt"))?;
        Ok(())
    }

    fn process_element(
        &mut self,
        v: In,
        ctx: &mut Context<'_, String>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        out.collect(format!("E {} {}", v.0, v.1));
        let t = ctx.timestamp().unwrap_or(0);
        ctx.timer_service().register_event_time_timer(t)?;
        Ok(())
    }

    fn on_timer(
        &mut self,
        t: Timestamp,
        ctx: &mut OnTimerContext<'_, String>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        out.collect(format!("T {} {t} wm={}", ctx.current_key(), ts(ctx.current_watermark())));
        let cnt = self.cnt.value(ctx)?.unwrap_or(0);
        if cnt < self.limit {
            self.cnt.update(ctx, cnt + 1)?;
            ctx.timer_service().register_event_time_timer(t.saturating_add(self.step))?;
        }
        Ok(())
    }
}

fn rearm(step: i64, limit: i64) -> Rearm {
    Rearm { step, limit, ..Rearm::default() }
}

// --- Scenarios ----------------------------------------------------------------------------------

#[test]
fn s01_basic_event_time_timer_fires_before_the_watermark_is_forwarded() {
    let out =
        run(plus_delta(10), &[E("a", 1, "x"), E("b", 5, "y"), W(10), W(11), W(14), W(15), End]);
    check(
        out,
        &[
            One("out:E a x@1"),
            One("out:E b y@5"),
            One("WM(10)"),
            One("out:T a 11@11"),
            One("WM(11)"),
            One("WM(14)"),
            One("out:T b 15@15"),
            One("WM(15)"),
            One("WM(MAX)"),
        ],
    );
}

#[test]
fn s02_dedup_per_key_and_timestamp() {
    let out = run(
        fixed(20),
        &[E("a", 1, "1"), E("a", 2, "2"), E("a", 3, "3"), E("b", 4, "4"), W(25), End],
    );
    check(
        out,
        &[
            One("out:E a 1@1"),
            One("out:E a 2@2"),
            One("out:E a 3@3"),
            One("out:E b 4@4"),
            Unordered(vec!["out:T a 20@20", "out:T b 20@20"]),
            One("WM(25)"),
            One("WM(MAX)"),
        ],
    );
}

struct RegDel;

impl KeyedProcessFunction for RegDel {
    type Key = String;
    type In = In;
    type Out = String;

    fn process_element(
        &mut self,
        v: In,
        ctx: &mut Context<'_, String>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        out.collect(format!("E {} {}", v.0, v.1));
        if let Some(n) = v.1.strip_prefix("reg:") {
            ctx.timer_service().register_event_time_timer(n.parse()?)?;
        } else if let Some(n) = v.1.strip_prefix("del:") {
            ctx.timer_service().delete_event_time_timer(n.parse()?)?;
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        t: Timestamp,
        ctx: &mut OnTimerContext<'_, String>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        out.collect(format!("T {} {t}", ctx.current_key()));
        Ok(())
    }
}

#[test]
fn s03_delete_semantics() {
    let out = run(
        RegDel,
        &[
            E("a", 1, "reg:20"),
            E("a", 2, "del:20"),
            E("a", 3, "del:99"),
            E("a", 4, "reg:30"),
            E("a", 5, "del:30"),
            E("a", 6, "reg:30"),
            E("b", 7, "del:30"),
            W(40),
            End,
        ],
    );
    check(
        out,
        &[
            One("out:E a reg:20@1"),
            One("out:E a del:20@2"),
            One("out:E a del:99@3"),
            One("out:E a reg:30@4"),
            One("out:E a del:30@5"),
            One("out:E a reg:30@6"),
            One("out:E b del:30@7"),
            One("out:T a 30@30"),
            One("WM(40)"),
            One("WM(MAX)"),
        ],
    );
}

#[test]
fn s04_registering_at_or_below_the_watermark_fires_at_the_next_advance() {
    let out = run(
        OwnTs,
        &[W(10), E("a", 5, "x"), E("b", 10, "y"), E("c", 11, "z"), W(12), E("d", 3, "w"), End],
    );
    check(
        out,
        &[
            One("WM(10)"),
            One("out:E a x wm=10@5"),
            One("out:E b y wm=10@10"),
            One("out:E c z wm=10@11"),
            One("out:T a 5 wm=12@5"),
            One("out:T b 10 wm=12@10"),
            One("out:T c 11 wm=12@11"),
            One("WM(12)"),
            One("out:E d w wm=12@3"),
            One("out:T d 3 wm=MAX@3"),
            One("WM(MAX)"),
        ],
    );
}

struct Lateness;

impl KeyedProcessFunction for Lateness {
    type Key = String;
    type In = In;
    type Out = String;

    fn process_element(
        &mut self,
        v: In,
        ctx: &mut Context<'_, String>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        let t = ctx.timestamp().unwrap_or(0);
        let wm = ctx.current_watermark();
        out.collect(format!("E {} {} ts={t} wm={} late={}", v.0, v.1, ts(wm), t <= wm));
        Ok(())
    }
}

#[test]
fn s05_late_elements_still_reach_the_function() {
    let out = run(
        Lateness,
        &[E("a", 5, "x"), W(10), E("a", 3, "y"), E("a", 10, "z"), E("a", 11, "w"), End],
    );
    check(
        out,
        &[
            One("out:E a x ts=5 wm=MIN late=false@5"),
            One("WM(10)"),
            One("out:E a y ts=3 wm=10 late=true@3"),
            One("out:E a z ts=10 wm=10 late=true@10"),
            One("out:E a w ts=11 wm=10 late=false@11"),
            One("WM(MAX)"),
        ],
    );
}

struct ContextValues;

impl KeyedProcessFunction for ContextValues {
    type Key = String;
    type In = In;
    type Out = String;

    fn process_element(
        &mut self,
        _: In,
        ctx: &mut Context<'_, String>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        let t = ctx.timestamp().unwrap_or(0);
        out.collect(format!(
            "E {} key={} ctxTs={t} wm={}",
            ctx.current_key(),
            ctx.current_key(),
            ts(ctx.current_watermark())
        ));
        ctx.timer_service().register_event_time_timer(t + 5)?;
        Ok(())
    }

    fn on_timer(
        &mut self,
        t: Timestamp,
        ctx: &mut OnTimerContext<'_, String>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        out.collect(format!(
            "T {t} key={} ctxTs={} wm={} domain={}",
            ctx.current_key(),
            ctx.timestamp().map_or("null".to_string(), ts),
            ts(ctx.current_watermark()),
            ctx.time_domain()
        ));
        Ok(())
    }
}

#[test]
fn s06_on_timer_context_values() {
    let out = run(ContextValues, &[E("a", 10, "x"), W(100), End]);
    check(
        out,
        &[
            One("out:E a key=a ctxTs=10 wm=MIN@10"),
            One("out:T 15 key=a ctxTs=15 wm=100 domain=EVENT_TIME@15"),
            One("WM(100)"),
            One("WM(MAX)"),
        ],
    );
}

#[test]
fn s07_reregistration_in_on_timer_fires_within_the_same_advance() {
    let out = run(rearm(1, 2), &[E("a", 10, "x"), W(100), End]);
    check(
        out,
        &[
            One("out:E a x@10"),
            One("out:T a 10 wm=100@10"),
            One("out:T a 11 wm=100@11"),
            One("out:T a 12 wm=100@12"),
            One("WM(100)"),
            One("WM(MAX)"),
        ],
    );
}

#[test]
fn s08_reregistration_beyond_the_watermark_waits() {
    let out = run(rearm(50, 1), &[E("a", 10, "x"), W(20), W(59), W(60), End]);
    check(
        out,
        &[
            One("out:E a x@10"),
            One("out:T a 10 wm=20@10"),
            One("WM(20)"),
            One("WM(59)"),
            One("out:T a 60 wm=60@60"),
            One("WM(60)"),
            One("WM(MAX)"),
        ],
    );
}

#[test]
fn s09_reregistering_the_firing_timestamp_fires_it_again_immediately() {
    let out = run(rearm(0, 1), &[E("a", 10, "x"), W(10), End]);
    check(
        out,
        &[
            One("out:E a x@10"),
            One("out:T a 10 wm=10@10"),
            One("out:T a 10 wm=10@10"),
            One("WM(10)"),
            One("WM(MAX)"),
        ],
    );
}

#[test]
fn s10_equal_timestamps_across_keys() {
    let out = run(fixed(20), &[E("a", 1, "1"), E("b", 2, "2"), E("c", 3, "3"), W(20), End]);
    check(
        out,
        &[
            One("out:E a 1@1"),
            One("out:E b 2@2"),
            One("out:E c 3@3"),
            Unordered(vec!["out:T a 20@20", "out:T b 20@20", "out:T c 20@20"]),
            One("WM(20)"),
            One("WM(MAX)"),
        ],
    );
    let keys = ["a", "b", "c", "d", "e"];
    let mut steps: Vec<Step> = keys.iter().zip(1..).map(|(k, t)| E(k, t, "v")).collect();
    steps.extend([W(20), End]);
    let out = run(fixed(20), &steps);
    let mut expected: Vec<Expect> = vec![
        One("out:E a v@1"),
        One("out:E b v@2"),
        One("out:E c v@3"),
        One("out:E d v@4"),
        One("out:E e v@5"),
    ];
    expected.push(Unordered(vec![
        "out:T a 20@20",
        "out:T b 20@20",
        "out:T c 20@20",
        "out:T d 20@20",
        "out:T e 20@20",
    ]));
    expected.extend([One("WM(20)"), One("WM(MAX)")]);
    check(out.clone(), &expected);
    // Pinwheel's documented order for equal timestamps: registration order.
    assert_eq!(
        &out[5..10],
        ["out:T a 20@20", "out:T b 20@20", "out:T c 20@20", "out:T d 20@20", "out:T e 20@20"]
    );
}

#[derive(Default)]
struct ListSum {
    list: ListState<i64>,
}

impl KeyedProcessFunction for ListSum {
    type Key = String;
    type In = In;
    type Out = String;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        self.list = ctx.list_state(ListStateDescriptor::new("list"))?;
        Ok(())
    }

    fn process_element(
        &mut self,
        v: In,
        ctx: &mut Context<'_, String>,
        _: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        self.list.add(ctx, v.1.parse()?)?;
        ctx.timer_service().register_event_time_timer(100)?;
        Ok(())
    }

    fn on_timer(
        &mut self,
        _: Timestamp,
        ctx: &mut OnTimerContext<'_, String>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        let sum: i64 = self.list.get(ctx)?.iter().sum();
        out.collect(format!("SUM {}={sum}", ctx.current_key()));
        self.list.clear(ctx)?;
        Ok(())
    }
}

#[test]
fn s11_state_in_on_timer_is_scoped_to_the_timers_key() {
    let out = run(
        ListSum::default(),
        &[E("a", 1, "1"), E("b", 2, "10"), E("a", 3, "2"), W(100), E("a", 150, "5"), W(200), End],
    );
    check(
        out,
        &[
            Unordered(vec!["out:SUM a=3@100", "out:SUM b=10@100"]),
            One("WM(100)"),
            One("out:SUM a=5@100"),
            One("WM(200)"),
            One("WM(MAX)"),
        ],
    );
}

#[derive(Default)]
struct ValueNull {
    value: ValueState<String>,
}

impl KeyedProcessFunction for ValueNull {
    type Key = String;
    type In = In;
    type Out = String;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        self.value = ctx.value_state(ValueStateDescriptor::new("v"))?;
        Ok(())
    }

    fn process_element(
        &mut self,
        v: In,
        ctx: &mut Context<'_, String>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        let prev = self.value.value(ctx)?.unwrap_or_else(|| "null".to_string());
        out.collect(format!("E {} {} prev={prev}", v.0, v.1));
        let next = if v.1 == "null" { None } else { Some(v.1) };
        self.value.set(ctx, next)?;
        Ok(())
    }
}

#[test]
fn s12_value_state_is_null_when_absent_and_update_none_clears() {
    let out = run(
        ValueNull::default(),
        &[E("a", 1, "x"), E("a", 2, "y"), E("b", 3, "z"), E("a", 4, "null"), E("a", 5, "w"), End],
    );
    check(
        out,
        &[
            One("out:E a x prev=null@1"),
            One("out:E a y prev=x@2"),
            One("out:E b z prev=null@3"),
            One("out:E a null prev=y@4"),
            One("out:E a w prev=null@5"),
            One("WM(MAX)"),
        ],
    );
}

#[derive(Default)]
struct ListMap {
    list: ListState<String>,
    map: MapState<String, i64>,
}

impl KeyedProcessFunction for ListMap {
    type Key = String;
    type In = In;
    type Out = String;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        self.list = ctx.list_state(ListStateDescriptor::new("list"))?;
        self.map = ctx.map_state(MapStateDescriptor::new("map"))?;
        Ok(())
    }

    fn process_element(
        &mut self,
        v: In,
        ctx: &mut Context<'_, String>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        let list = self.list.get(ctx)?;
        let get = self.map.get(ctx, &v.1)?;
        out.collect(format!(
            "E {} {} list=[{}] mapGet={} mapContains={} mapEmpty={}",
            v.0,
            v.1,
            list.join(", "),
            get.map_or("null".to_string(), |n| n.to_string()),
            self.map.contains(ctx, &v.1)?,
            self.map.is_empty(ctx)?
        ));
        self.list.add(ctx, v.1.clone())?;
        self.map.put(ctx, v.1, get.unwrap_or(0) + 1)?;
        Ok(())
    }
}

#[test]
fn s13_list_and_map_state_absent_semantics() {
    let out = run(
        ListMap::default(),
        &[E("a", 1, "x"), E("a", 2, "x"), E("a", 3, "y"), E("b", 4, "x"), End],
    );
    check(
        out,
        &[
            One("out:E a x list=[] mapGet=null mapContains=false mapEmpty=true@1"),
            One("out:E a x list=[x] mapGet=1 mapContains=true mapEmpty=false@2"),
            One("out:E a y list=[x, x] mapGet=null mapContains=false mapEmpty=false@3"),
            One("out:E b x list=[] mapGet=null mapContains=false mapEmpty=true@4"),
            One("WM(MAX)"),
        ],
    );
}

struct Average;

impl AggregateFunction for Average {
    type In = i64;
    type Acc = (i64, i64);
    type Out = f64;

    fn create_accumulator(&self) -> (i64, i64) {
        (0, 0)
    }

    fn add(&self, value: i64, acc: &mut (i64, i64)) {
        acc.0 += value;
        acc.1 += 1;
    }

    fn result(&self, acc: &(i64, i64)) -> f64 {
        acc.0 as f64 / acc.1 as f64
    }
}

#[derive(Default)]
struct SumAvg {
    sum: ReducingState<i64>,
    avg: AggregatingState<Average>,
}

fn show_sum_avg(sum: Option<i64>, avg: Option<f64>) -> String {
    format!(
        "sum={} avg={}",
        sum.map_or("null".to_string(), |s| s.to_string()),
        avg.map_or("null".to_string(), |a| format!("{a:?}"))
    )
}

impl KeyedProcessFunction for SumAvg {
    type Key = String;
    type In = In;
    type Out = String;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        self.sum =
            ctx.reducing_state(ReducingStateDescriptor::new("sum", |a: i64, b: i64| a + b))?;
        self.avg = ctx.aggregating_state(AggregatingStateDescriptor::new("avg", Average))?;
        Ok(())
    }

    fn process_element(
        &mut self,
        v: In,
        ctx: &mut Context<'_, String>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        let before = show_sum_avg(self.sum.get(ctx)?, self.avg.get(ctx)?);
        if v.1 == "clear" {
            self.sum.clear(ctx)?;
            self.avg.clear(ctx)?;
        } else {
            let n: i64 = v.1.parse()?;
            self.sum.add(ctx, n)?;
            self.avg.add(ctx, n)?;
        }
        let after = show_sum_avg(self.sum.get(ctx)?, self.avg.get(ctx)?);
        out.collect(format!("E {} {} before {before} after {after}", v.0, v.1));
        Ok(())
    }
}

#[test]
fn s14_reducing_and_aggregating_state() {
    let out = run(
        SumAvg::default(),
        &[E("a", 1, "4"), E("a", 2, "6"), E("a", 3, "clear"), E("a", 4, "1"), End],
    );
    check(
        out,
        &[
            One("out:E a 4 before sum=null avg=null after sum=4 avg=4.0@1"),
            One("out:E a 6 before sum=4 avg=4.0 after sum=10 avg=5.0@2"),
            One("out:E a clear before sum=10 avg=5.0 after sum=null avg=null@3"),
            One("out:E a 1 before sum=null avg=null after sum=1 avg=1.0@4"),
            One("WM(MAX)"),
        ],
    );
}

struct PlusThousand;

impl KeyedProcessFunction for PlusThousand {
    type Key = String;
    type In = In;
    type Out = String;

    fn process_element(
        &mut self,
        v: In,
        ctx: &mut Context<'_, String>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        out.collect(format!("E {} {}", v.0, v.1));
        let t = ctx.timestamp().unwrap_or(0);
        ctx.timer_service().register_event_time_timer(t + 1000)?;
        Ok(())
    }

    fn on_timer(
        &mut self,
        t: Timestamp,
        ctx: &mut OnTimerContext<'_, String>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        out.collect(format!("T {} {t} wm={}", ctx.current_key(), ts(ctx.current_watermark())));
        Ok(())
    }
}

#[test]
fn s19_end_of_input_fires_all_pending_event_time_timers_at_max() {
    let out = run(PlusThousand, &[E("a", 1, "x"), E("b", 2, "y"), W(500), End]);
    check(
        out,
        &[
            One("out:E a x@1"),
            One("out:E b y@2"),
            One("WM(500)"),
            One("out:T a 1001 wm=MAX@1001"),
            One("out:T b 1002 wm=MAX@1002"),
            One("WM(MAX)"),
        ],
    );
}

#[test]
fn s20_timers_registered_during_the_max_advance_also_fire() {
    let out = run(rearm(1_000_000, 2), &[E("a", 10, "x"), End]);
    check(
        out,
        &[
            One("out:E a x@10"),
            One("out:T a 10 wm=MAX@10"),
            One("out:T a 1000010 wm=MAX@1000010"),
            One("out:T a 2000010 wm=MAX@2000010"),
            One("WM(MAX)"),
        ],
    );
}

// --- T1–T5: state TTL with a manual clock (ttl = 10) --------------------------------------------

/// Runs one TTL scenario: each step sets processing time, then performs an operation on key "k";
/// reads append what they saw to the output.
#[derive(Clone, Copy)]
enum TtlOp {
    Update(&'static str),
    Value,
    Add(&'static str),
    Get,
}

struct TtlProbe {
    ttl: StateTtlConfig,
    value: ValueState<String>,
    list: ListState<String>,
}

impl KeyedProcessFunction for TtlProbe {
    type Key = String;
    type In = TtlOp;
    type Out = String;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        self.value = ctx.value_state(ValueStateDescriptor::new("v").with_ttl(self.ttl))?;
        self.list = ctx.list_state(ListStateDescriptor::new("l").with_ttl(self.ttl))?;
        Ok(())
    }

    fn process_element(
        &mut self,
        op: TtlOp,
        ctx: &mut Context<'_, String>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), FnError> {
        match op {
            TtlOp::Update(v) => self.value.update(ctx, v.to_string())?,
            TtlOp::Add(v) => self.list.add(ctx, v.to_string())?,
            TtlOp::Value => {
                out.collect(self.value.value(ctx)?.unwrap_or_else(|| "null".to_string()))
            }
            TtlOp::Get => out.collect(format!("[{}]", self.list.get(ctx)?.join(", "))),
        }
        Ok(())
    }
}

fn ttl_run(ttl: StateTtlConfig, steps: &[(Timestamp, TtlOp)]) -> Vec<String> {
    let probe = TtlProbe { ttl, value: ValueState::default(), list: ListState::default() };
    let mut h = KeyedHarness::new(probe, |_: &TtlOp| "k".to_string()).unwrap();
    for &(t, op) in steps {
        h.set_processing_time(t).unwrap();
        h.process_element(op, None).unwrap();
    }
    h.take_output().into_iter().filter_map(StreamElement::into_value).collect()
}

#[test]
fn t1_defaults_expire_at_last_write_plus_ttl_inclusive() {
    let out = ttl_run(
        StateTtlConfig::new(10),
        &[(0, TtlOp::Update("x")), (5, TtlOp::Value), (10, TtlOp::Value)],
    );
    assert_eq!(out, ["x", "null"]);
}

#[test]
fn t2_on_read_and_write_refreshes_on_read() {
    let cfg = StateTtlConfig::new(10).update_type(UpdateType::OnReadAndWrite);
    let out = ttl_run(
        cfg,
        &[(0, TtlOp::Update("x")), (6, TtlOp::Value), (12, TtlOp::Value), (22, TtlOp::Value)],
    );
    assert_eq!(out, ["x", "x", "null"]);
}

#[test]
fn t3_return_expired_if_not_cleaned_up_returns_it_once() {
    let cfg = StateTtlConfig::new(10)
        .state_visibility(StateVisibility::ReturnExpiredIfNotCleanedUp)
        .disable_cleanup_in_background();
    let out = ttl_run(cfg, &[(0, TtlOp::Update("x")), (13, TtlOp::Value), (13, TtlOp::Value)]);
    assert_eq!(out, ["x", "null"]);
}

#[test]
fn t4_list_elements_expire_one_by_one() {
    let out = ttl_run(
        StateTtlConfig::new(10),
        &[(0, TtlOp::Add("x")), (6, TtlOp::Add("y")), (12, TtlOp::Get), (19, TtlOp::Get)],
    );
    assert_eq!(out, ["[y]", "[]"]);
}

#[test]
fn t5_a_write_refreshes_the_timestamp() {
    let out = ttl_run(
        StateTtlConfig::new(10),
        &[(0, TtlOp::Update("x")), (7, TtlOp::Update("y")), (14, TtlOp::Value)],
    );
    assert_eq!(out, ["y"]);
}
