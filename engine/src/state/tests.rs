//! Tests of the keyed state arena. The families, and the bug each exists to catch:
//!
//! * **A3 rules** (`a3_*`): one test per rule of docs/semantics.md A3.1–A3.7 and A3.10.1–A3.10.7, so a
//!   deviation from Flink's behaviour names the rule it breaks.
//! * **Scenarios** (`s11_*` … `s14_*`, `t1_*` … `t5_*`): docs/semantics.md Part B replayed at this level,
//!   with the expected strings of the spec (the TTL table with a manual clock, ttl = 10).
//! * **Errors** (`error_*`): unbound, foreign and reentrant handles, incompatible re-registration,
//!   invalid TTL; none may panic, and each message must tell a Flink user what to do.
//! * **Registry** (`registry_*`, `sweep_*`): counting, per-key clearing, the budgeted, resumable TTL
//!   sweep, names and memory.
//! * **Model** (`model_*`): value, list and map state against a naive `HashMap<KeyId, …>` model over
//!   random op scripts, without and with TTL, to catch bookkeeping bugs (entry counts, parallel
//!   timestamp vectors, the map's index after removals) that hand-written cases miss.
//! * **Robustness** (`robust_*`): rows beyond a column's length, huge key ids, timestamps at the ends
//!   of the axis.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use proptest::prelude::*;

use super::*;

const TTL: i64 = 10;

/// The scope of `key` at processing time `now` in `reg`.
fn at(reg: &StateRegistry, key: KeyId, now: Timestamp) -> StateScope {
    StateScope::new(key, now, reg.id())
}

fn show<T: ToString>(v: Option<T>) -> String {
    v.map_or("null".to_string(), |v| v.to_string())
}

/// Flink's test aggregate: the average as `f64`.
#[derive(Debug, Clone)]
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

/// A keyed context as the operators crate has: something with a current key.
struct FakeContext {
    scope: StateScope,
}

impl KeyedScope for FakeContext {
    fn state_scope(&self) -> StateScope {
        self.scope
    }
}

// --- A3 rules ---------------------------------------------------------------------------------

#[test]
fn a3_1_every_access_is_for_the_current_key() {
    let mut reg = StateRegistry::new();
    let v = reg.value_state(ValueStateDescriptor::<String>::new("v")).unwrap();
    let l = reg.list_state(ListStateDescriptor::<i32>::new("l")).unwrap();
    let m = reg.map_state(MapStateDescriptor::<String, i32>::new("m")).unwrap();
    let r = reg.reducing_state(ReducingStateDescriptor::new("r", |a: i32, b: i32| a + b)).unwrap();
    let g = reg.aggregating_state(AggregatingStateDescriptor::new("g", Average)).unwrap();
    let (a, b) = (at(&reg, 0, 0), at(&reg, 1, 0));

    v.update(&a, "for a".to_string()).unwrap();
    l.add(&a, 1).unwrap();
    m.put(&a, "x".to_string(), 1).unwrap();
    r.add(&a, 5).unwrap();
    g.add(&a, 4).unwrap();

    assert_eq!(v.value(&b).unwrap(), None);
    assert_eq!(l.get(&b).unwrap(), Vec::<i32>::new());
    assert_eq!(m.get(&b, "x").unwrap(), None);
    assert_eq!(r.get(&b).unwrap(), None);
    assert_eq!(g.get(&b).unwrap(), None);

    v.update(&b, "for b".to_string()).unwrap();
    l.add(&b, 2).unwrap();
    r.add(&b, 7).unwrap();
    assert_eq!(v.value(&a).unwrap().as_deref(), Some("for a"));
    assert_eq!(v.value(&b).unwrap().as_deref(), Some("for b"));
    assert_eq!(l.get(&a).unwrap(), [1]);
    assert_eq!(l.get(&b).unwrap(), [2]);
    assert_eq!(r.get(&a).unwrap(), Some(5));
    assert_eq!(r.get(&b).unwrap(), Some(7));
    assert_eq!(g.get(&a).unwrap(), Some(4.0));
}

#[test]
fn a3_2_value_state_is_absent_until_written_and_set_none_clears() {
    let mut reg = StateRegistry::new();
    let v = reg.value_state(ValueStateDescriptor::<u64>::new("v")).unwrap();
    let s = at(&reg, 3, 0);
    assert_eq!(v.value(&s).unwrap(), None);
    assert!(v.with_value(&s, |x| x.is_none()).unwrap());
    v.update(&s, 7).unwrap();
    assert_eq!(v.value(&s).unwrap(), Some(7));
    assert_eq!(v.with_value(&s, |x| x.copied()).unwrap(), Some(7));
    v.set(&s, Some(8)).unwrap();
    assert_eq!(v.value(&s).unwrap(), Some(8));
    // Flink's update(null) is clear().
    v.set(&s, None).unwrap();
    assert_eq!(v.value(&s).unwrap(), None);
    assert_eq!(reg.num_entries(), 0);
    v.update(&s, 9).unwrap();
    v.clear(&s).unwrap();
    assert_eq!(v.value(&s).unwrap(), None);
    assert!(!reg.has_state(3));
}

#[test]
fn a3_3_list_state_reads_empty_never_absent_and_update_empty_clears() {
    let mut reg = StateRegistry::new();
    let l = reg.list_state(ListStateDescriptor::<String>::new("l")).unwrap();
    let s = at(&reg, 0, 0);
    assert!(l.get(&s).unwrap().is_empty());
    assert_eq!(l.with_list(&s, <[String]>::len).unwrap(), 0);
    l.add(&s, "x".into()).unwrap();
    l.add_all(&s, ["y".to_string(), "z".to_string()]).unwrap();
    assert_eq!(l.get(&s).unwrap(), ["x", "y", "z"]);
    assert_eq!(l.with_list(&s, |xs| xs.join("")).unwrap(), "xyz");
    l.update(&s, vec!["w".into()]).unwrap();
    assert_eq!(l.get(&s).unwrap(), ["w"]);
    assert_eq!(reg.num_entries(), 1);
    l.update(&s, Vec::new()).unwrap();
    assert!(l.get(&s).unwrap().is_empty());
    assert_eq!(reg.num_entries(), 0);
    // Adding nothing to an absent list keeps it absent.
    l.add_all(&s, Vec::<String>::new()).unwrap();
    assert_eq!(reg.num_entries(), 0);
    l.add(&s, "v".into()).unwrap();
    l.clear(&s).unwrap();
    assert!(l.get(&s).unwrap().is_empty());
    assert!(!reg.has_state(0));
}

#[test]
fn a3_4_map_state_absent_semantics_and_removing_the_last_entry_clears() {
    let mut reg = StateRegistry::new();
    let m = reg.map_state(MapStateDescriptor::<String, i64>::new("m")).unwrap();
    let s = at(&reg, 0, 0);
    assert_eq!(m.get(&s, "x").unwrap(), None);
    assert!(!m.contains(&s, "x").unwrap());
    assert!(m.is_empty(&s).unwrap());
    assert_eq!(m.len(&s).unwrap(), 0);
    assert!(m.entries(&s).unwrap().is_empty());
    assert!(m.keys(&s).unwrap().is_empty());
    assert!(m.values(&s).unwrap().is_empty());

    m.put(&s, "x".into(), 1).unwrap();
    m.put_all(&s, [("y".to_string(), 2), ("x".to_string(), 3)]).unwrap();
    assert_eq!(m.get(&s, "x").unwrap(), Some(3));
    assert!(m.contains(&s, "y").unwrap());
    assert_eq!(m.len(&s).unwrap(), 2);
    assert_eq!(m.entries(&s).unwrap(), [("x".to_string(), 3), ("y".to_string(), 2)]);
    assert_eq!(m.keys(&s).unwrap(), ["x", "y"]);
    assert_eq!(m.values(&s).unwrap(), [3, 2]);
    assert_eq!(m.with_value(&s, "y", |v| v.copied()).unwrap(), Some(2));
    let mut seen = Vec::new();
    m.for_each(&s, |k, v| seen.push(format!("{k}={v}"))).unwrap();
    assert_eq!(seen, ["x=3", "y=2"]);

    m.remove(&s, "x").unwrap();
    m.remove(&s, "nope").unwrap();
    assert_eq!(reg.num_entries(), 1);
    m.remove(&s, "y").unwrap();
    assert!(m.is_empty(&s).unwrap());
    assert_eq!(reg.num_entries(), 0, "removing the last entry clears the key's map");
    assert!(!reg.has_state(0));

    m.put(&s, "z".into(), 1).unwrap();
    m.clear(&s).unwrap();
    assert!(m.is_empty(&s).unwrap());
    // Putting nothing into an absent map keeps it absent.
    m.put_all(&s, Vec::new()).unwrap();
    assert_eq!(reg.num_entries(), 0);
}

#[test]
fn a3_5_reducing_state_first_add_stores_later_adds_fold() {
    let mut reg = StateRegistry::new();
    // Not commutative, to pin the argument order: reduce(stored, added).
    let r = reg
        .reducing_state(ReducingStateDescriptor::new("r", |a: String, b: String| {
            format!("({a}+{b})")
        }))
        .unwrap();
    let s = at(&reg, 0, 0);
    assert_eq!(r.get(&s).unwrap(), None);
    r.add(&s, "x".into()).unwrap();
    assert_eq!(r.get(&s).unwrap().as_deref(), Some("x"));
    r.add(&s, "y".into()).unwrap();
    r.add(&s, "z".into()).unwrap();
    assert_eq!(r.get(&s).unwrap().as_deref(), Some("((x+y)+z)"));
    r.clear(&s).unwrap();
    assert_eq!(r.get(&s).unwrap(), None);
    r.add(&s, "w".into()).unwrap();
    assert_eq!(r.get(&s).unwrap().as_deref(), Some("w"));
}

#[test]
fn a3_6_aggregating_state_first_add_creates_the_accumulator() {
    struct Counting {
        created: Rc<Cell<u32>>,
    }
    impl AggregateFunction for Counting {
        type In = i64;
        type Acc = Vec<i64>;
        type Out = String;
        fn create_accumulator(&self) -> Vec<i64> {
            self.created.set(self.created.get() + 1);
            Vec::new()
        }
        fn add(&self, value: i64, acc: &mut Vec<i64>) {
            acc.push(value);
        }
        fn result(&self, acc: &Vec<i64>) -> String {
            format!("{acc:?}")
        }
    }
    let created = Rc::new(Cell::new(0));
    let mut reg = StateRegistry::new();
    let g = reg
        .aggregating_state(AggregatingStateDescriptor::new(
            "g",
            Counting { created: created.clone() },
        ))
        .unwrap();
    let s = at(&reg, 0, 0);
    assert_eq!(g.get(&s).unwrap(), None);
    assert_eq!(created.get(), 0, "reading an absent state creates no accumulator");
    g.add(&s, 1).unwrap();
    g.add(&s, 2).unwrap();
    assert_eq!(created.get(), 1);
    assert_eq!(g.get(&s).unwrap().as_deref(), Some("[1, 2]"));
    g.clear(&s).unwrap();
    assert_eq!(g.get(&s).unwrap(), None);
    g.add(&s, 3).unwrap();
    assert_eq!(created.get(), 2);
    assert_eq!(g.get(&s).unwrap().as_deref(), Some("[3]"));
}

#[test]
fn a3_7_clear_affects_only_the_current_key() {
    let mut reg = StateRegistry::new();
    let v = reg.value_state(ValueStateDescriptor::<i32>::new("v")).unwrap();
    let l = reg.list_state(ListStateDescriptor::<i32>::new("l")).unwrap();
    let m = reg.map_state(MapStateDescriptor::<i32, i32>::new("m")).unwrap();
    let r = reg.reducing_state(ReducingStateDescriptor::new("r", |a: i32, b: i32| a + b)).unwrap();
    let g = reg.aggregating_state(AggregatingStateDescriptor::new("g", Average)).unwrap();
    let (a, b) = (at(&reg, 0, 0), at(&reg, 1, 0));
    for s in [&a, &b] {
        v.update(s, 1).unwrap();
        l.add(s, 1).unwrap();
        m.put(s, 1, 1).unwrap();
        r.add(s, 1).unwrap();
        g.add(s, 1).unwrap();
    }
    assert_eq!(reg.num_entries(), 10);
    v.clear(&a).unwrap();
    l.clear(&a).unwrap();
    m.clear(&a).unwrap();
    r.clear(&a).unwrap();
    g.clear(&a).unwrap();
    assert_eq!(reg.num_entries(), 5);
    assert!(!reg.has_state(0));
    assert_eq!(v.value(&b).unwrap(), Some(1));
    assert_eq!(l.get(&b).unwrap(), [1]);
    assert_eq!(m.get(&b, &1).unwrap(), Some(1));
    assert_eq!(r.get(&b).unwrap(), Some(1));
    assert_eq!(g.get(&b).unwrap(), Some(1.0));
}

#[test]
fn a3_8_values_are_owned_copies_never_aliases() {
    let mut reg = StateRegistry::new();
    let v = reg.value_state(ValueStateDescriptor::<Vec<i32>>::new("v")).unwrap();
    let l = reg.list_state(ListStateDescriptor::<String>::new("l")).unwrap();
    let m = reg.map_state(MapStateDescriptor::<i32, Vec<i32>>::new("m")).unwrap();
    let s = at(&reg, 0, 0);
    v.update(&s, vec![1]).unwrap();
    l.add(&s, "a".into()).unwrap();
    m.put(&s, 1, vec![1]).unwrap();

    let mut read = v.value(&s).unwrap().unwrap();
    read.push(2);
    let mut list = l.get(&s).unwrap();
    list[0].push('!');
    list.push("b".into());
    let mut entry = m.get(&s, &1).unwrap().unwrap();
    entry.push(2);

    assert_eq!(v.value(&s).unwrap(), Some(vec![1]), "mutating a read value must not change state");
    assert_eq!(l.get(&s).unwrap(), ["a"]);
    assert_eq!(m.get(&s, &1).unwrap(), Some(vec![1]));
    v.update(&s, read).unwrap();
    assert_eq!(v.value(&s).unwrap(), Some(vec![1, 2]), "only update() changes it");
}

// --- A3.10 TTL ------------------------------------------------------------------------------------

fn ttl() -> StateTtlConfig {
    StateTtlConfig::new(TTL)
}

#[test]
fn a3_10_1_ttl_time_base_is_the_scopes_processing_time() {
    let mut reg = StateRegistry::new();
    let v = reg.value_state(ValueStateDescriptor::<u8>::new("v").with_ttl(ttl())).unwrap();
    // Nothing but the scope's `now` decides: the same key read at two times.
    v.update(&at(&reg, 0, 1_000), 1).unwrap();
    assert_eq!(v.value(&at(&reg, 0, 1_009)).unwrap(), Some(1));
    assert_eq!(v.value(&at(&reg, 0, 1_010)).unwrap(), None);
}

#[test]
fn a3_10_2_expired_iff_last_access_plus_ttl_is_at_most_now_without_overflow() {
    let mut reg = StateRegistry::new();
    let v = reg.value_state(ValueStateDescriptor::<u8>::new("v").with_ttl(ttl())).unwrap();
    v.update(&at(&reg, 0, 0), 1).unwrap();
    assert_eq!(v.value(&at(&reg, 0, 9)).unwrap(), Some(1));
    assert_eq!(v.value(&at(&reg, 0, 10)).unwrap(), None, "0 + 10 <= 10 is expired");

    // Near the end of the axis the sum saturates instead of wrapping into the past.
    v.update(&at(&reg, 1, i64::MAX - 3), 2).unwrap();
    assert_eq!(v.value(&at(&reg, 1, i64::MAX - 1)).unwrap(), Some(2));
    assert_eq!(v.value(&at(&reg, 1, i64::MAX)).unwrap(), None);

    // A huge TTL never expires before i64::MAX.
    let forever = reg
        .value_state(
            ValueStateDescriptor::<u8>::new("forever").with_ttl(StateTtlConfig::new(i64::MAX)),
        )
        .unwrap();
    forever.update(&at(&reg, 0, 5), 1).unwrap();
    assert_eq!(forever.value(&at(&reg, 0, i64::MAX - 1)).unwrap(), Some(1));

    // At the start of the axis too.
    v.update(&at(&reg, 2, i64::MIN), 3).unwrap();
    assert_eq!(v.value(&at(&reg, 2, i64::MIN + 9)).unwrap(), Some(3));
    assert_eq!(v.value(&at(&reg, 2, i64::MIN + 10)).unwrap(), None);
}

#[test]
fn a3_10_3_update_types() {
    let mut reg = StateRegistry::new();
    // OnCreateAndWrite: reads do not refresh, every kind of write does.
    let v = reg.value_state(ValueStateDescriptor::<u8>::new("v").with_ttl(ttl())).unwrap();
    v.update(&at(&reg, 0, 0), 1).unwrap();
    assert_eq!(v.value(&at(&reg, 0, 9)).unwrap(), Some(1));
    assert_eq!(v.value(&at(&reg, 0, 10)).unwrap(), None);
    v.set(&at(&reg, 0, 0), Some(1)).unwrap();
    v.set(&at(&reg, 0, 5), Some(2)).unwrap();
    assert_eq!(v.value(&at(&reg, 0, 14)).unwrap(), Some(2));

    let m = reg.map_state(MapStateDescriptor::<u8, u8>::new("m").with_ttl(ttl())).unwrap();
    m.put(&at(&reg, 0, 0), 1, 1).unwrap();
    m.put_all(&at(&reg, 0, 5), [(1, 2)]).unwrap();
    assert_eq!(m.get(&at(&reg, 0, 14), &1).unwrap(), Some(2));
    assert_eq!(m.get(&at(&reg, 0, 15), &1).unwrap(), None);

    // OnReadAndWrite: a successful read refreshes, for every kind.
    let rw = ttl().update_type(UpdateType::OnReadAndWrite);
    let l = reg.list_state(ListStateDescriptor::<u8>::new("l").with_ttl(rw)).unwrap();
    l.add(&at(&reg, 0, 0), 1).unwrap();
    assert_eq!(l.get(&at(&reg, 0, 9)).unwrap(), [1]);
    assert_eq!(l.with_list(&at(&reg, 0, 18), <[u8]>::to_vec).unwrap(), [1]);
    assert_eq!(l.get(&at(&reg, 0, 28)).unwrap(), Vec::<u8>::new());

    let m2 = reg.map_state(MapStateDescriptor::<u8, u8>::new("m2").with_ttl(rw)).unwrap();
    m2.put(&at(&reg, 0, 0), 1, 1).unwrap();
    m2.put(&at(&reg, 0, 0), 2, 2).unwrap();
    assert!(m2.contains(&at(&reg, 0, 9), &1).unwrap()); // refreshes entry 1 only
    assert_eq!(m2.keys(&at(&reg, 0, 12)).unwrap(), [1]); // entry 2 expired at 10
    assert_eq!(m2.len(&at(&reg, 0, 21)).unwrap(), 1); // refreshed to 12 by keys()
    assert!(m2.is_empty(&at(&reg, 0, 31)).unwrap());

    let r = reg
        .reducing_state(ReducingStateDescriptor::new("r", |a: u8, b: u8| a + b).with_ttl(rw))
        .unwrap();
    r.add(&at(&reg, 0, 0), 1).unwrap();
    assert_eq!(r.get(&at(&reg, 0, 9)).unwrap(), Some(1));
    assert_eq!(r.get(&at(&reg, 0, 18)).unwrap(), Some(1));
    assert_eq!(r.get(&at(&reg, 0, 28)).unwrap(), None);

    // Disabled: no TTL at all (a non-positive TTL is then not an error either).
    let off = StateTtlConfig::new(0).update_type(UpdateType::Disabled);
    assert!(!off.is_enabled());
    let d = reg.value_state(ValueStateDescriptor::<u8>::new("d").with_ttl(off)).unwrap();
    d.update(&at(&reg, 0, 0), 1).unwrap();
    assert_eq!(d.value(&at(&reg, 0, i64::MAX)).unwrap(), Some(1));
}

#[test]
fn a3_10_4_visibility_return_expired_if_not_cleaned_up_returns_it_once() {
    let ret = ttl()
        .state_visibility(StateVisibility::ReturnExpiredIfNotCleanedUp)
        .disable_cleanup_in_background();
    let mut reg = StateRegistry::new();
    let v = reg.value_state(ValueStateDescriptor::<u8>::new("v").with_ttl(ret)).unwrap();
    let l = reg.list_state(ListStateDescriptor::<u8>::new("l").with_ttl(ret)).unwrap();
    let m = reg.map_state(MapStateDescriptor::<u8, u8>::new("m").with_ttl(ret)).unwrap();
    let r = reg
        .reducing_state(ReducingStateDescriptor::new("r", |a: u8, b: u8| a + b).with_ttl(ret))
        .unwrap();
    let g =
        reg.aggregating_state(AggregatingStateDescriptor::new("g", Average).with_ttl(ret)).unwrap();
    let w = at(&reg, 0, 0);
    v.update(&w, 1).unwrap();
    l.add(&w, 1).unwrap();
    l.add(&at(&reg, 0, 5), 2).unwrap();
    m.put(&w, 1, 1).unwrap();
    m.put(&w, 2, 2).unwrap();
    r.add(&w, 1).unwrap();
    g.add(&w, 3).unwrap();

    let late = at(&reg, 0, 12);
    assert_eq!(v.with_value(&late, |x| x.copied()).unwrap(), Some(1));
    assert_eq!(v.value(&late).unwrap(), None);
    // The list shows its expired element once, with the live one.
    assert_eq!(l.get(&late).unwrap(), [1, 2]);
    assert_eq!(l.get(&late).unwrap(), [2]);
    assert_eq!(m.get(&late, &1).unwrap(), Some(1));
    assert_eq!(m.get(&late, &1).unwrap(), None);
    assert_eq!(m.entries(&late).unwrap(), [(2, 2)]);
    assert!(m.is_empty(&late).unwrap());
    assert_eq!(r.get(&late).unwrap(), Some(1));
    assert_eq!(r.get(&late).unwrap(), None);
    assert_eq!(g.get(&late).unwrap(), Some(3.0));
    assert_eq!(g.get(&late).unwrap(), None);
    assert_eq!(reg.num_entries(), 1, "only the list's unexpired element is left");

    // NeverReturnExpired (the default) hides and removes it at the read.
    let v2 = reg.value_state(ValueStateDescriptor::<u8>::new("v2").with_ttl(ttl())).unwrap();
    v2.update(&w, 1).unwrap();
    assert_eq!(v2.with_value(&late, |x| x.copied()).unwrap(), None);
    assert_eq!(reg.num_entries(), 1);
}

#[test]
fn a3_10_5_lists_expire_per_element_and_maps_per_entry() {
    let mut reg = StateRegistry::new();
    let l = reg.list_state(ListStateDescriptor::<char>::new("l").with_ttl(ttl())).unwrap();
    let m = reg.map_state(MapStateDescriptor::<char, i32>::new("m").with_ttl(ttl())).unwrap();
    l.add_all(&at(&reg, 0, 0), ['a', 'b']).unwrap();
    l.add(&at(&reg, 0, 4), 'c').unwrap();
    l.add(&at(&reg, 0, 8), 'd').unwrap();
    assert_eq!(l.get(&at(&reg, 0, 10)).unwrap(), ['c', 'd']);
    assert_eq!(l.get(&at(&reg, 0, 14)).unwrap(), ['d']);
    l.update(&at(&reg, 0, 14), vec!['e', 'f']).unwrap();
    assert_eq!(l.get(&at(&reg, 0, 23)).unwrap(), ['e', 'f']);
    assert_eq!(l.get(&at(&reg, 0, 24)).unwrap(), Vec::<char>::new());
    assert_eq!(reg.num_entries(), 0);

    m.put(&at(&reg, 0, 0), 'x', 1).unwrap();
    m.put(&at(&reg, 0, 3), 'y', 2).unwrap();
    m.put(&at(&reg, 0, 6), 'z', 3).unwrap();
    m.put(&at(&reg, 0, 9), 'x', 4).unwrap(); // a write refreshes only its own entry
    let s = at(&reg, 0, 13);
    assert_eq!(m.get(&s, &'y').unwrap(), None);
    assert_eq!(m.entries(&s).unwrap(), [('x', 4), ('z', 3)]);
    assert_eq!(m.len(&at(&reg, 0, 16)).unwrap(), 1);
    assert!(!m.contains(&at(&reg, 0, 19), &'x').unwrap());
    assert!(m.is_empty(&at(&reg, 0, 19)).unwrap());
    assert_eq!(reg.num_entries(), 0);
}

#[test]
fn a3_10_6_an_expired_accumulator_is_dropped_and_the_next_add_starts_fresh() {
    for visibility in
        [StateVisibility::NeverReturnExpired, StateVisibility::ReturnExpiredIfNotCleanedUp]
    {
        let cfg = ttl().state_visibility(visibility);
        let mut reg = StateRegistry::new();
        let r = reg
            .reducing_state(
                ReducingStateDescriptor::new("sum", |a: i64, b: i64| a + b).with_ttl(cfg),
            )
            .unwrap();
        let g = reg
            .aggregating_state(AggregatingStateDescriptor::new("avg", Average).with_ttl(cfg))
            .unwrap();
        r.add(&at(&reg, 0, 0), 4).unwrap();
        r.add(&at(&reg, 0, 5), 6).unwrap(); // folds, and refreshes to 5
        g.add(&at(&reg, 0, 0), 4).unwrap();
        g.add(&at(&reg, 0, 5), 6).unwrap();
        assert_eq!(r.get(&at(&reg, 0, 14)).unwrap(), Some(10), "{visibility:?}");
        assert_eq!(g.get(&at(&reg, 0, 14)).unwrap(), Some(5.0), "{visibility:?}");
        r.add(&at(&reg, 0, 15), 1).unwrap();
        g.add(&at(&reg, 0, 15), 1).unwrap();
        assert_eq!(r.get(&at(&reg, 0, 15)).unwrap(), Some(1), "{visibility:?}");
        assert_eq!(g.get(&at(&reg, 0, 15)).unwrap(), Some(1.0), "{visibility:?}");
        assert_eq!(reg.num_entries(), 2);
    }
}

#[test]
fn a3_10_7_cleanup_on_read_and_in_the_background_and_unread_state_stays() {
    let mut reg = StateRegistry::new();
    let v = reg.value_state(ValueStateDescriptor::<u8>::new("v").with_ttl(ttl())).unwrap();
    for key in 0..4 {
        v.update(&at(&reg, key, 0), 1).unwrap();
    }
    // Expired but never read nor swept: it stays (and is counted, as Flink checkpoints it).
    assert_eq!(reg.num_entries(), 4);
    assert!(reg.has_state(3));
    // Cleanup on read.
    assert_eq!(v.value(&at(&reg, 0, 10)).unwrap(), None);
    assert_eq!(reg.num_entries(), 3);
    // Background: the sweep removes the rest without any read.
    assert_eq!(reg.cleanup_expired(10, 100), 3);
    assert_eq!(reg.num_entries(), 0);

    // With background cleanup disabled the sweep leaves the column alone.
    let quiet = reg
        .value_state(
            ValueStateDescriptor::<u8>::new("quiet")
                .with_ttl(ttl().disable_cleanup_in_background()),
        )
        .unwrap();
    quiet.update(&at(&reg, 0, 0), 1).unwrap();
    assert_eq!(reg.cleanup_expired(100, 100), 0);
    assert_eq!(reg.num_entries(), 1);
    assert_eq!(quiet.value(&at(&reg, 0, 100)).unwrap(), None);
    assert_eq!(reg.num_entries(), 0);
}

// --- Scenarios ------------------------------------------------------------------------------------

#[test]
fn s11_list_state_in_on_timer_is_scoped_to_the_timers_key_and_cleared_there() {
    let mut reg = StateRegistry::new();
    let list = reg.list_state(ListStateDescriptor::<i64>::new("list")).unwrap();
    let (a, b) = (0, 1);
    let mut out = Vec::new();
    let mut on_timer = |key: KeyId, name: &str, reg: &StateRegistry| {
        let s = at(reg, key, 0);
        out.push(format!("SUM {name}={}", list.get(&s).unwrap().iter().sum::<i64>()));
        list.clear(&s).unwrap();
    };
    for (key, v) in [(a, 1), (b, 10), (a, 2)] {
        list.add(&at(&reg, key, 0), v).unwrap();
    }
    on_timer(a, "a", &reg); // W(100)
    on_timer(b, "b", &reg);
    list.add(&at(&reg, a, 0), 5).unwrap();
    on_timer(a, "a", &reg); // W(200): the timer at 100 was registered again by the late element
    assert_eq!(out, ["SUM a=3", "SUM b=10", "SUM a=5"]);
    assert_eq!(reg.num_entries(), 0);
}

#[test]
fn s12_value_state_null_when_absent_and_update_none_clears() {
    let mut reg = StateRegistry::new();
    let value = reg.value_state(ValueStateDescriptor::<String>::new("v")).unwrap();
    let keys = HashMap::from([("a", 0), ("b", 1)]);
    let mut out = Vec::new();
    for (k, v) in [("a", "x"), ("a", "y"), ("b", "z"), ("a", "null"), ("a", "w")] {
        let s = at(&reg, keys[k], 0);
        out.push(format!("E {k} {v} prev={}", show(value.value(&s).unwrap())));
        value.set(&s, (v != "null").then(|| v.to_string())).unwrap();
    }
    assert_eq!(
        out,
        [
            "E a x prev=null",
            "E a y prev=x",
            "E b z prev=null",
            "E a null prev=y",
            "E a w prev=null"
        ]
    );
}

#[test]
fn s13_list_and_map_state_absent_semantics() {
    let mut reg = StateRegistry::new();
    let list = reg.list_state(ListStateDescriptor::<String>::new("list")).unwrap();
    let map = reg.map_state(MapStateDescriptor::<String, i64>::new("map")).unwrap();
    let keys = HashMap::from([("a", 0), ("b", 1)]);
    let mut out = Vec::new();
    for (k, v) in [("a", "x"), ("a", "x"), ("a", "y"), ("b", "x")] {
        let s = at(&reg, keys[k], 0);
        let got = map.get(&s, v).unwrap();
        out.push(format!(
            "E {k} {v} list=[{}] mapGet={} mapContains={} mapEmpty={}",
            list.get(&s).unwrap().join(", "),
            show(got),
            map.contains(&s, v).unwrap(),
            map.is_empty(&s).unwrap()
        ));
        list.add(&s, v.to_string()).unwrap();
        map.put(&s, v.to_string(), got.unwrap_or(0) + 1).unwrap();
    }
    assert_eq!(
        out,
        [
            "E a x list=[] mapGet=null mapContains=false mapEmpty=true",
            "E a x list=[x] mapGet=1 mapContains=true mapEmpty=false",
            "E a y list=[x, x] mapGet=null mapContains=false mapEmpty=false",
            "E b x list=[] mapGet=null mapContains=false mapEmpty=true",
        ]
    );
}

#[test]
fn s14_reducing_sum_and_aggregating_average_with_clear() {
    let mut reg = StateRegistry::new();
    let sum =
        reg.reducing_state(ReducingStateDescriptor::new("sum", |a: i64, b: i64| a + b)).unwrap();
    let avg = reg.aggregating_state(AggregatingStateDescriptor::new("avg", Average)).unwrap();
    let show_both = |s: &StateScope| {
        format!(
            "sum={} avg={}",
            show(sum.get(s).unwrap()),
            avg.get(s).unwrap().map_or("null".to_string(), |a| format!("{a:?}"))
        )
    };
    let mut out = Vec::new();
    for v in ["4", "6", "clear", "1"] {
        let s = at(&reg, 0, 0);
        let before = show_both(&s);
        if v == "clear" {
            sum.clear(&s).unwrap();
            avg.clear(&s).unwrap();
        } else {
            let n: i64 = v.parse().unwrap();
            sum.add(&s, n).unwrap();
            avg.add(&s, n).unwrap();
        }
        out.push(format!("E a {v} before {before} after {}", show_both(&s)));
    }
    assert_eq!(
        out,
        [
            "E a 4 before sum=null avg=null after sum=4 avg=4.0",
            "E a 6 before sum=4 avg=4.0 after sum=10 avg=5.0",
            "E a clear before sum=10 avg=5.0 after sum=null avg=null",
            "E a 1 before sum=null avg=null after sum=1 avg=1.0",
        ]
    );
}

/// One step of a TTL scenario.
#[derive(Clone, Copy)]
enum TtlOp {
    Update(&'static str),
    Value,
    Add(&'static str),
    Get,
}

/// Runs a T-scenario on key 0 with a manual clock: each step's time is the scope's `now`. Between
/// steps the background sweep runs as the runtime would, with a generous budget.
fn ttl_run(config: StateTtlConfig, steps: &[(Timestamp, TtlOp)]) -> Vec<String> {
    let mut reg = StateRegistry::new();
    let value = reg.value_state(ValueStateDescriptor::<String>::new("v").with_ttl(config)).unwrap();
    let list = reg.list_state(ListStateDescriptor::<String>::new("l").with_ttl(config)).unwrap();
    let mut out = Vec::new();
    for &(now, op) in steps {
        reg.cleanup_expired(now, 16);
        let s = at(&reg, 0, now);
        match op {
            TtlOp::Update(v) => value.update(&s, v.to_string()).unwrap(),
            TtlOp::Add(v) => list.add(&s, v.to_string()).unwrap(),
            TtlOp::Value => out.push(show(value.value(&s).unwrap())),
            TtlOp::Get => out.push(format!("[{}]", list.get(&s).unwrap().join(", "))),
        }
    }
    out
}

#[test]
fn t1_defaults_expire_at_last_write_plus_ttl_inclusive() {
    let out = ttl_run(ttl(), &[(0, TtlOp::Update("x")), (5, TtlOp::Value), (10, TtlOp::Value)]);
    assert_eq!(out, ["x", "null"]);
}

#[test]
fn t2_on_read_and_write_refreshes_on_read() {
    let cfg = ttl().update_type(UpdateType::OnReadAndWrite);
    let out = ttl_run(
        cfg,
        &[(0, TtlOp::Update("x")), (6, TtlOp::Value), (12, TtlOp::Value), (22, TtlOp::Value)],
    );
    assert_eq!(out, ["x", "x", "null"]);
}

#[test]
fn t3_return_expired_if_not_cleaned_up_returns_it_once() {
    let cfg = ttl()
        .state_visibility(StateVisibility::ReturnExpiredIfNotCleanedUp)
        .disable_cleanup_in_background();
    let out = ttl_run(cfg, &[(0, TtlOp::Update("x")), (13, TtlOp::Value), (13, TtlOp::Value)]);
    assert_eq!(out, ["x", "null"]);
}

#[test]
fn t4_list_elements_expire_one_by_one() {
    let out = ttl_run(
        ttl(),
        &[(0, TtlOp::Add("x")), (6, TtlOp::Add("y")), (12, TtlOp::Get), (19, TtlOp::Get)],
    );
    assert_eq!(out, ["[y]", "[]"]);
}

#[test]
fn t5_a_write_refreshes_the_timestamp() {
    let out =
        ttl_run(ttl(), &[(0, TtlOp::Update("x")), (7, TtlOp::Update("y")), (14, TtlOp::Value)]);
    assert_eq!(out, ["y"]);
}

// --- Errors ---------------------------------------------------------------------------------------

#[test]
fn error_unbound_handles_say_to_register_in_open() {
    let reg = StateRegistry::new();
    let s = at(&reg, 0, 0);
    let unbound = |kind| StateError::Unbound { kind };
    assert_eq!(ValueState::<u8>::default().value(&s), Err(unbound("ValueState")));
    assert_eq!(ValueState::<u8>::default().update(&s, 1), Err(unbound("ValueState")));
    assert_eq!(ListState::<u8>::default().get(&s), Err(unbound("ListState")));
    assert_eq!(ListState::<u8>::default().add(&s, 1), Err(unbound("ListState")));
    assert_eq!(MapState::<u8, u8>::default().get(&s, &1), Err(unbound("MapState")));
    assert_eq!(MapState::<u8, u8>::default().put(&s, 1, 1), Err(unbound("MapState")));
    assert_eq!(ReducingState::<u8>::default().add(&s, 1), Err(unbound("ReducingState")));
    assert_eq!(AggregatingState::<Average>::default().get(&s), Err(unbound("AggregatingState")));
    let msg = unbound("ValueState").to_string();
    assert!(msg.contains("ValueState handle") && msg.contains("`open`"), "{msg}");
    assert!(!ValueState::<u8>::default().is_bound());
    assert_eq!(ValueState::<u8>::default().name(), None);
}

#[test]
fn error_a_handle_used_with_another_registrys_scope_is_foreign() {
    let mut first = StateRegistry::new();
    let second = StateRegistry::new();
    assert_ne!(first.id(), second.id());
    let v = first.value_state(ValueStateDescriptor::<u8>::new("count")).unwrap();
    let l = first.list_state(ListStateDescriptor::<u8>::new("l")).unwrap();
    let foreign = at(&second, 0, 0);
    let err = v.update(&foreign, 1).unwrap_err();
    assert_eq!(err, StateError::ForeignHandle { name: "count".into() });
    assert!(err.to_string().contains("\"count\" belongs to another operator instance"), "{err}");
    assert_eq!(l.get(&foreign), Err(StateError::ForeignHandle { name: "l".into() }));
    assert_eq!(first.num_entries(), 0);
}

#[test]
fn error_reentrant_access_is_an_error_not_a_panic() {
    let mut reg = StateRegistry::new();
    let v = reg.value_state(ValueStateDescriptor::<u8>::new("v")).unwrap();
    let l = reg.list_state(ListStateDescriptor::<u8>::new("l")).unwrap();
    let m = reg.map_state(MapStateDescriptor::<u8, u8>::new("m")).unwrap();
    let s = at(&reg, 0, 0);
    let reentrant = |name: &str| StateError::Reentrant { name: name.into() };

    v.update(&s, 1).unwrap();
    let inner = v.with_value(&s, |_| v.value(&s)).unwrap();
    assert_eq!(inner, Err(reentrant("v")));
    let clone = v.clone();
    assert_eq!(v.with_value(&s, |_| clone.update(&s, 2)).unwrap(), Err(reentrant("v")));
    assert_eq!(v.value(&s).unwrap(), Some(1), "the failed inner write changed nothing");
    // Another state may be used inside the closure.
    v.with_value(&s, |x| l.add(&s, *x.unwrap())).unwrap().unwrap();

    let seen = RefCell::new(None);
    l.add_all(
        &s,
        std::iter::once(7).inspect(|_| {
            *seen.borrow_mut() = Some(l.get(&s));
        }),
    )
    .unwrap();
    assert_eq!(seen.into_inner(), Some(Err(reentrant("l"))));
    assert_eq!(l.get(&s).unwrap(), [1, 7]);
    assert_eq!(l.with_list(&s, |_| l.clear(&s)).unwrap(), Err(reentrant("l")));

    m.put(&s, 1, 1).unwrap();
    let mut inner = None;
    m.for_each(&s, |_, _| inner = Some(m.len(&s))).unwrap();
    assert_eq!(inner, Some(Err(reentrant("m"))));

    // A reduce function that touches its own state. It reaches the state through a weak
    // reference: the state owns the function, so a strong one would be a cycle (a leak that
    // AddressSanitizer reports).
    let me: Rc<RefCell<Option<ReducingState<u8>>>> = Rc::default();
    let seen = Rc::new(RefCell::new(None));
    let (me2, seen2) = (Rc::downgrade(&me), seen.clone());
    let r = reg
        .reducing_state(ReducingStateDescriptor::new("r", move |a: u8, b: u8| {
            if let Some(me) = me2.upgrade()
                && let Some(r) = me.borrow().as_ref()
            {
                *seen2.borrow_mut() = Some(r.get(&s));
            }
            a + b
        }))
        .unwrap();
    *me.borrow_mut() = Some(r.clone());
    r.add(&s, 1).unwrap();
    r.add(&s, 2).unwrap();
    assert_eq!(*seen.borrow(), Some(Err(reentrant("r"))));
    assert_eq!(r.get(&s).unwrap(), Some(3));
    let msg = reentrant("v").to_string();
    assert!(msg.contains("already being accessed") && msg.contains("with_value"), "{msg}");
}

#[test]
fn error_registering_a_name_again_with_other_kind_types_or_ttl_is_incompatible() {
    let mut reg = StateRegistry::new();
    let first = reg.value_state(ValueStateDescriptor::<u64>::new("count")).unwrap();
    // Same name, kind and types: the same state.
    let again = reg.value_state(ValueStateDescriptor::<u64>::new("count")).unwrap();
    first.update(&at(&reg, 0, 0), 5).unwrap();
    assert_eq!(again.value(&at(&reg, 0, 0)).unwrap(), Some(5));
    assert_eq!(reg.state_names(), ["count"]);

    let err = reg.value_state(ValueStateDescriptor::<i64>::new("count")).unwrap_err();
    assert_eq!(
        err,
        StateError::IncompatibleDescriptor {
            name: "count".into(),
            existing: "ValueState<u64>".into(),
            requested: "ValueState<i64>".into(),
        }
    );
    assert!(err.to_string().contains("already registered as ValueState<u64>"), "{err}");
    assert!(matches!(
        reg.list_state(ListStateDescriptor::<u64>::new("count")),
        Err(StateError::IncompatibleDescriptor { .. })
    ));
    assert_eq!(
        reg.reducing_state(ReducingStateDescriptor::new("count", |a: u64, b: u64| a + b))
            .unwrap_err(),
        StateError::IncompatibleDescriptor {
            name: "count".into(),
            existing: "ValueState<u64>".into(),
            requested: "ReducingState<u64>".into(),
        }
    );
    assert!(matches!(
        reg.value_state(ValueStateDescriptor::<u64>::new("count").with_ttl(ttl())),
        Err(StateError::IncompatibleDescriptor { .. })
    ));
    // A disabled TTL is no TTL: compatible.
    reg.value_state(
        ValueStateDescriptor::<u64>::new("count").with_ttl(ttl().update_type(UpdateType::Disabled)),
    )
    .unwrap();

    let m = reg.map_state(MapStateDescriptor::<String, u8>::new("m")).unwrap();
    assert!(reg.map_state(MapStateDescriptor::<String, u16>::new("m")).is_err());
    assert!(reg.map_state(MapStateDescriptor::<String, u8>::new("m")).is_ok());
    // Reducing state with the boxed default function: the first function is kept.
    let r1 = reg.reducing_state(ReducingStateDescriptor::new("r", |a: u8, b: u8| a + b)).unwrap();
    let r2 = reg.reducing_state(ReducingStateDescriptor::new("r", |a: u8, b: u8| a * b)).unwrap();
    r2.add(&at(&reg, 0, 0), 3).unwrap();
    r2.add(&at(&reg, 0, 0), 4).unwrap();
    assert_eq!(r1.get(&at(&reg, 0, 0)).unwrap(), Some(7));
    let g = reg.aggregating_state(AggregatingStateDescriptor::new("g", Average)).unwrap();
    assert!(reg.aggregating_state(AggregatingStateDescriptor::new("g", Average)).is_ok());
    assert_eq!(reg.state_names(), ["count", "m", "r", "g"]);
    drop((m, g));
}

#[test]
fn error_a_ttl_that_is_not_positive_is_rejected_at_registration() {
    let mut reg = StateRegistry::new();
    for ttl_ms in [0, -5] {
        let err = reg
            .value_state(ValueStateDescriptor::<u8>::new("v").with_ttl(StateTtlConfig::new(ttl_ms)))
            .unwrap_err();
        assert_eq!(err, StateError::InvalidTtl { name: "v".into(), ttl_ms });
        assert!(err.to_string().contains("TTL must be positive"));
    }
    let sub_ms = StateTtlConfig::from_duration(std::time::Duration::from_micros(10));
    assert!(reg.list_state(ListStateDescriptor::<u8>::new("l").with_ttl(sub_ms)).is_err());
    assert_eq!(StateTtlConfig::from_duration(std::time::Duration::from_secs(2)).ttl_ms(), 2_000);
    assert_eq!(StateTtlConfig::from_duration(std::time::Duration::MAX).ttl_ms(), i64::MAX);
    assert!(reg.state_names().is_empty(), "a failed registration registers nothing");
}

#[test]
fn error_no_keyed_context_message_speaks_flink() {
    let msg = StateError::NoKeyedContext.to_string();
    assert!(msg.contains("key_by") && msg.contains("keyed stream"), "{msg}");
}

// --- Registry -------------------------------------------------------------------------------------

#[test]
fn registry_num_entries_has_state_and_clear_key() {
    let mut reg = StateRegistry::new();
    let v = reg.value_state(ValueStateDescriptor::<u8>::new("v")).unwrap();
    let l = reg.list_state(ListStateDescriptor::<u8>::new("l")).unwrap();
    let m = reg.map_state(MapStateDescriptor::<u8, u8>::new("m")).unwrap();
    let r = reg.reducing_state(ReducingStateDescriptor::new("r", |a: u8, b: u8| a.max(b))).unwrap();
    let g = reg.aggregating_state(AggregatingStateDescriptor::new("g", Average)).unwrap();
    assert_eq!(reg.num_entries(), 0);
    let (k0, k1, k2) = (at(&reg, 0, 0), at(&reg, 1, 0), at(&reg, 2, 0));
    v.update(&k0, 1).unwrap();
    l.add_all(&k0, [1, 2, 3]).unwrap(); // one entry, whatever the length
    m.put_all(&k0, [(1, 1), (2, 2)]).unwrap();
    r.add(&k1, 1).unwrap();
    g.add(&k1, 1).unwrap();
    v.update(&k2, 1).unwrap();
    assert_eq!(reg.num_entries(), 6);
    assert!(reg.has_state(0) && reg.has_state(1) && reg.has_state(2));
    assert!(!reg.has_state(3) && !reg.has_state(KeyId::MAX));

    reg.clear_key(0);
    assert_eq!(reg.num_entries(), 3);
    assert!(!reg.has_state(0));
    assert_eq!(l.get(&k0).unwrap(), Vec::<u8>::new());
    assert!(m.is_empty(&k0).unwrap());
    reg.clear_key(1);
    reg.clear_key(99); // beyond every column: nothing to do
    assert_eq!(reg.num_entries(), 1);
    assert_eq!(v.value(&k2).unwrap(), Some(1));
    assert_eq!(reg.state_names(), ["v", "l", "m", "r", "g"]);
}

#[test]
fn registry_memory_bytes_follows_the_columns() {
    let mut reg = StateRegistry::new();
    assert_eq!(reg.memory_bytes(), 0);
    let v = reg.value_state(ValueStateDescriptor::<u64>::new("v")).unwrap();
    let l = reg.list_state(ListStateDescriptor::<u64>::new("l")).unwrap();
    let m = reg.map_state(MapStateDescriptor::<u64, u64>::new("m")).unwrap();
    for key in 0..100 {
        let s = at(&reg, key, 0);
        v.update(&s, 1).unwrap();
        l.add_all(&s, 0..10).unwrap();
        m.put_all(&s, (0..10).map(|i| (i, i))).unwrap();
    }
    let full = reg.memory_bytes();
    // At least the payload: 100 values, 1000 list elements, 1000 map entries.
    assert!(full >= 100 * 8 + 1000 * 8 + 1000 * 16, "{full}");
    for key in 0..100 {
        reg.clear_key(key);
    }
    assert!(reg.memory_bytes() < full / 4, "clearing releases list and map storage");
}

#[test]
fn registry_debug_and_handle_traits() {
    let mut reg = StateRegistry::default();
    let v = reg.value_state(ValueStateDescriptor::<u8>::new("count")).unwrap();
    assert_eq!(format!("{v:?}"), "ValueState(\"count\")");
    assert_eq!(format!("{:?}", ListState::<u8>::default()), "ListState(<unbound>)");
    assert_eq!(v.name(), Some("count"));
    assert!(v.is_bound());
    let debug = format!("{reg:?}");
    assert!(debug.contains("ValueState<u8>") && debug.contains("entries: 0"), "{debug}");
    let d = ReducingStateDescriptor::new("sum", |a: u8, b: u8| a + b).with_ttl(ttl());
    assert_eq!(d.clone().name(), "sum");
    assert_eq!(d.ttl(), Some(&ttl()));
    assert!(format!("{d:?}").contains("sum"));
    assert!(format!("{:?}", MapStateDescriptor::<u8, String>::new("m")).contains("String"));
    let cfg = ttl();
    assert_eq!(cfg.refresh_policy(), UpdateType::OnCreateAndWrite);
    assert_eq!(cfg.visibility(), StateVisibility::NeverReturnExpired);
    assert!(cfg.cleanup_in_background() && cfg.is_enabled());
}

#[test]
fn registry_keyed_scope_comes_from_keyed_contexts_by_reference_or_dyn() {
    let mut reg = StateRegistry::new();
    let v = reg.value_state(ValueStateDescriptor::<u8>::new("v")).unwrap();
    let mut ctx = FakeContext { scope: at(&reg, 4, 0) };
    // As process functions call it: with `&mut Context`.
    fn bump(v: &ValueState<u8>, ctx: &mut FakeContext) -> Result<(), StateError> {
        let n = v.value(ctx)?.unwrap_or(0);
        v.update(ctx, n + 1)
    }
    bump(&v, &mut ctx).unwrap();
    bump(&v, &mut ctx).unwrap();
    let dyn_ctx: &dyn KeyedScope = &ctx;
    assert_eq!(v.value(dyn_ctx).unwrap(), Some(2));
    let s = ctx.state_scope();
    assert_eq!((s.key(), s.now(), s.registry()), (4, 0, reg.id()));
}

#[test]
fn registry_reducing_state_with_a_monomorphized_function() {
    struct Max;
    impl ReduceFunction<i32> for Max {
        fn reduce(&self, acc: i32, value: i32) -> i32 {
            acc.max(value)
        }
    }
    #[derive(Default)]
    struct MyFn {
        max: ReducingState<i32, Max>,
        sum: ReducingState<i32, fn(i32, i32) -> i32>,
    }
    // As a process function does it: unbound by `Default`, bound in `open`.
    fn open(f: &mut MyFn, reg: &mut StateRegistry) -> Result<(), StateError> {
        f.max = reg.reducing_state(ReducingStateDescriptor::from_reduce_function("max", Max))?;
        let add: fn(i32, i32) -> i32 = |a, b| a + b;
        f.sum = reg.reducing_state(ReducingStateDescriptor::from_reduce_function("sum", add))?;
        Ok(())
    }
    let mut reg = StateRegistry::new();
    let mut f = MyFn::default();
    assert!(!f.max.is_bound());
    open(&mut f, &mut reg).unwrap();
    let s = at(&reg, 0, 0);
    for x in [3, 9, 2] {
        f.max.add(&s, x).unwrap();
        f.sum.add(&s, x).unwrap();
    }
    assert_eq!(f.max.get(&s).unwrap(), Some(9));
    assert_eq!(f.sum.get(&s).unwrap(), Some(14));
}

#[test]
fn registry_module_doc_example() {
    let mut registry = StateRegistry::new();
    let count = registry.value_state(ValueStateDescriptor::<u64>::new("count")).unwrap();
    let key_7 = StateScope::new(7, 1_000, registry.id());
    let n = count.value(&key_7).unwrap().unwrap_or(0);
    count.update(&key_7, n + 1).unwrap();
    assert_eq!(count.value(&key_7).unwrap(), Some(1));
    assert_eq!(count.value(&StateScope::new(8, 1_000, registry.id())).unwrap(), None);
    assert_eq!(registry.num_entries(), 1);
}

#[test]
fn registry_map_iteration_order_is_insertion_order_and_remove_moves_the_last() {
    let mut reg = StateRegistry::new();
    let m = reg.map_state(MapStateDescriptor::<String, u32>::new("m")).unwrap();
    let s = at(&reg, 0, 0);
    let names = ["e", "b", "d", "a", "c", "f"];
    for (i, k) in names.iter().enumerate() {
        m.put(&s, k.to_string(), i as u32).unwrap();
    }
    assert_eq!(m.keys(&s).unwrap(), names);
    m.put(&s, "b".into(), 10).unwrap(); // replacing keeps the position
    assert_eq!(m.keys(&s).unwrap(), names);
    m.remove(&s, "b").unwrap();
    assert_eq!(m.keys(&s).unwrap(), ["e", "f", "d", "a", "c"]);
    m.remove(&s, "c").unwrap(); // the last one: nothing moves
    assert_eq!(m.keys(&s).unwrap(), ["e", "f", "d", "a"]);
    for k in ["e", "f", "d", "a"] {
        assert!(m.contains(&s, k).unwrap(), "{k} still found after the moves");
    }
    // A second registry (another random hasher seed) gives the same order.
    let mut other = StateRegistry::new();
    let m2 = other.map_state(MapStateDescriptor::<String, u32>::new("m")).unwrap();
    let s2 = at(&other, 0, 0);
    for (i, k) in names.iter().enumerate() {
        m2.put(&s2, k.to_string(), i as u32).unwrap();
    }
    m2.remove(&s2, "b").unwrap();
    m2.remove(&s2, "c").unwrap();
    assert_eq!(m2.keys(&s2).unwrap(), m.keys(&s).unwrap());
}

// --- The background sweep ---------------------------------------------------------------------

#[test]
fn sweep_visits_at_most_budget_rows_and_resumes_where_it_stopped() {
    let mut reg = StateRegistry::new();
    let plain = reg.value_state(ValueStateDescriptor::<u8>::new("plain")).unwrap();
    let v = reg.value_state(ValueStateDescriptor::<u8>::new("v").with_ttl(ttl())).unwrap();
    let l = reg.list_state(ListStateDescriptor::<u8>::new("l").with_ttl(ttl())).unwrap();
    let m = reg.map_state(MapStateDescriptor::<u8, u8>::new("m").with_ttl(ttl())).unwrap();
    for key in 0..10 {
        let s = at(&reg, key, 0);
        plain.update(&s, 1).unwrap();
        v.update(&s, 1).unwrap();
        l.add(&s, 1).unwrap();
        m.put(&s, 1, 1).unwrap();
    }
    assert_eq!(reg.num_entries(), 40);
    // Nothing expired yet: a full pass removes nothing.
    assert_eq!(reg.cleanup_expired(9, 1_000), 0);
    assert_eq!(reg.cleanup_expired(10, 0), 0);
    // 30 TTL rows; the column without TTL costs no budget.
    let mut removed = Vec::new();
    for _ in 0..4 {
        removed.push(reg.cleanup_expired(10, 7));
    }
    assert_eq!(removed, [7, 7, 7, 7]);
    assert_eq!(reg.cleanup_expired(10, 100), 2);
    assert_eq!(reg.num_entries(), 10, "only the state without TTL is left");
    assert_eq!(plain.value(&at(&reg, 9, 1_000)).unwrap(), Some(1));
    assert_eq!(reg.cleanup_expired(1_000, 100), 0);
}

#[test]
fn sweep_wraps_around_and_does_not_visit_a_row_twice_in_one_call() {
    let mut reg = StateRegistry::new();
    let v = reg.value_state(ValueStateDescriptor::<u8>::new("v").with_ttl(ttl())).unwrap();
    for key in 0..6 {
        v.update(&at(&reg, key, 0), 1).unwrap();
    }
    // Move the cursor to row 4.
    assert_eq!(reg.cleanup_expired(5, 4), 0);
    // Rows 0..4 expire at 10; rows 4, 5 are rewritten and expire at 15.
    v.update(&at(&reg, 4, 5), 1).unwrap();
    v.update(&at(&reg, 5, 5), 1).unwrap();
    // From row 4: rows 4, 5 (live), then 0, 1, 2 (expired).
    assert_eq!(reg.cleanup_expired(12, 5), 3);
    assert_eq!(reg.num_entries(), 3);
    // A huge budget visits each row once (3, 4, 5, then 0, 1, 2) and stops.
    assert_eq!(reg.cleanup_expired(12, usize::MAX), 1);
    assert_eq!(reg.num_entries(), 2);
    assert_eq!(reg.cleanup_expired(15, usize::MAX), 2);
    assert_eq!(reg.num_entries(), 0);
}

#[test]
fn sweep_removes_expired_elements_from_rows_that_stay() {
    let mut reg = StateRegistry::new();
    let l = reg.list_state(ListStateDescriptor::<u8>::new("l").with_ttl(ttl())).unwrap();
    let m = reg.map_state(MapStateDescriptor::<u8, u8>::new("m").with_ttl(ttl())).unwrap();
    l.add(&at(&reg, 0, 0), 1).unwrap();
    l.add(&at(&reg, 0, 5), 2).unwrap();
    m.put(&at(&reg, 0, 0), 1, 1).unwrap();
    m.put(&at(&reg, 0, 5), 2, 2).unwrap();
    m.put(&at(&reg, 0, 5), 3, 3).unwrap();
    assert_eq!(reg.cleanup_expired(10, 100), 0, "no row was emptied");
    assert_eq!(l.get(&at(&reg, 0, 10)).unwrap(), [2]);
    assert_eq!(m.entries(&at(&reg, 0, 10)).unwrap(), [(2, 2), (3, 3)]);
    assert!(m.contains(&at(&reg, 0, 10), &3).unwrap(), "the index was rebuilt");
    assert_eq!(reg.cleanup_expired(15, 100), 2);
    assert_eq!(reg.num_entries(), 0);
}

/// List and map rows are frozen copy-on-write (`cow_vec.rs`): a sweep that empties rows on every
/// page after the freeze, and new keys that make the columns reallocate, leave the frozen rows as
/// the freeze found them.
#[test]
fn a_freeze_of_list_and_map_rows_survives_sweeps_clears_and_growth() {
    let mut reg = StateRegistry::new();
    let l = reg.list_state(ListStateDescriptor::<u32>::new("l").with_ttl(ttl())).unwrap();
    let m = reg.map_state(MapStateDescriptor::<u32, String>::new("m").with_ttl(ttl())).unwrap();
    let keys = 3_000;
    for k in 0..keys {
        for i in 0..k % 4 + 1 {
            l.add(&at(&reg, k, 0), k * 10 + i).unwrap();
            m.put(&at(&reg, k, 0), i, format!("{k}.{i}")).unwrap();
        }
    }
    let encoded = |frozen: &FrozenStates| {
        let mut rows = Vec::new();
        for k in 0..keys {
            let mut bytes = Vec::new();
            frozen.encode_rows_into(k, &mut bytes).unwrap();
            rows.push(bytes);
        }
        rows
    };
    // The bytes as the freeze finds them, from a view dropped before the next freeze.
    let want = encoded(&reg.freeze().unwrap());
    assert!(want.iter().all(|r| r.len() > 8), "every key has a list and a map row");
    let frozen = reg.freeze().unwrap();
    for k in (0..keys).step_by(3) {
        l.clear(&at(&reg, k, 0)).unwrap();
    }
    assert!(reg.cleanup_expired(TTL * 10, usize::MAX) > 0, "the sweep empties rows");
    for k in keys..4 * keys {
        l.add(&at(&reg, k, TTL * 10), k).unwrap();
        m.put(&at(&reg, k, TTL * 10), k, String::new()).unwrap();
    }
    assert_eq!(reg.num_entries(), 2 * 3 * keys as usize);
    assert_eq!(encoded(&frozen), want);
}

// --- Robustness -------------------------------------------------------------------------------

#[test]
fn robust_rows_beyond_a_column_are_absent_and_writes_grow_it() {
    let mut reg = StateRegistry::new();
    let v = reg.value_state(ValueStateDescriptor::<u8>::new("v").with_ttl(ttl())).unwrap();
    let l = reg.list_state(ListStateDescriptor::<u8>::new("l").with_ttl(ttl())).unwrap();
    let m = reg.map_state(MapStateDescriptor::<u8, u8>::new("m")).unwrap();
    let r = reg.reducing_state(ReducingStateDescriptor::new("r", |a: u8, b: u8| a + b)).unwrap();
    let g = reg.aggregating_state(AggregatingStateDescriptor::new("g", Average)).unwrap();
    let far = at(&reg, KeyId::MAX, 0);
    assert_eq!(v.value(&far).unwrap(), None);
    assert!(l.get(&far).unwrap().is_empty());
    assert!(m.is_empty(&far).unwrap());
    assert_eq!(m.get(&far, &1).unwrap(), None);
    assert_eq!(r.get(&far).unwrap(), None);
    assert_eq!(g.get(&far).unwrap(), None);
    v.clear(&far).unwrap();
    l.clear(&far).unwrap();
    m.remove(&far, &1).unwrap();
    v.set(&far, None).unwrap();
    l.update(&far, Vec::new()).unwrap();
    assert_eq!(reg.memory_bytes(), 0, "reads, clears and empty writes do not grow columns");

    let s = at(&reg, 1_000, 0);
    v.update(&s, 1).unwrap();
    l.add(&s, 1).unwrap();
    m.put(&s, 1, 1).unwrap();
    r.add(&s, 1).unwrap();
    g.add(&s, 1).unwrap();
    assert_eq!(reg.num_entries(), 5);
    assert_eq!(v.value(&at(&reg, 999, 0)).unwrap(), None);
    assert_eq!(reg.cleanup_expired(i64::MAX, usize::MAX), 2);
}

// --- Model tests ------------------------------------------------------------------------------

/// One operation of a model script. Keys and map keys are small so that scripts collide often.
#[derive(Debug, Clone)]
enum Op {
    Tick(i64),
    ValueRead(KeyId),
    ValueSet(KeyId, Option<u8>),
    ValueClear(KeyId),
    ListGet(KeyId),
    ListAdd(KeyId, u8),
    ListAddAll(KeyId, Vec<u8>),
    ListUpdate(KeyId, Vec<u8>),
    ListClear(KeyId),
    MapGet(KeyId, u8),
    MapContains(KeyId, u8),
    MapPut(KeyId, u8, u8),
    MapPutAll(KeyId, Vec<(u8, u8)>),
    MapRemove(KeyId, u8),
    MapEntries(KeyId),
    MapLen(KeyId),
    MapIsEmpty(KeyId),
    MapClear(KeyId),
    ClearKey(KeyId),
    SweepAll,
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..4u32;
    let small = 0..4u8;
    prop_oneof![
        (0..6i64).prop_map(Op::Tick),
        key.clone().prop_map(Op::ValueRead),
        (key.clone(), proptest::option::of(small.clone())).prop_map(|(k, v)| Op::ValueSet(k, v)),
        key.clone().prop_map(Op::ValueClear),
        key.clone().prop_map(Op::ListGet),
        (key.clone(), small.clone()).prop_map(|(k, v)| Op::ListAdd(k, v)),
        (key.clone(), proptest::collection::vec(small.clone(), 0..3))
            .prop_map(|(k, v)| Op::ListAddAll(k, v)),
        (key.clone(), proptest::collection::vec(small.clone(), 0..3))
            .prop_map(|(k, v)| Op::ListUpdate(k, v)),
        key.clone().prop_map(Op::ListClear),
        (key.clone(), small.clone()).prop_map(|(k, m)| Op::MapGet(k, m)),
        (key.clone(), small.clone()).prop_map(|(k, m)| Op::MapContains(k, m)),
        (key.clone(), small.clone(), small.clone()).prop_map(|(k, m, v)| Op::MapPut(k, m, v)),
        (key.clone(), proptest::collection::vec((small.clone(), small.clone()), 0..3))
            .prop_map(|(k, e)| Op::MapPutAll(k, e)),
        (key.clone(), small.clone()).prop_map(|(k, m)| Op::MapRemove(k, m)),
        key.clone().prop_map(Op::MapEntries),
        key.clone().prop_map(Op::MapLen),
        key.clone().prop_map(Op::MapIsEmpty),
        key.clone().prop_map(Op::MapClear),
        key.clone().prop_map(Op::ClearKey),
        Just(Op::SweepAll),
    ]
}

/// The TTL rules, written independently of the engine's.
#[derive(Debug, Clone, Copy)]
struct ModelTtl {
    ttl: i64,
    refresh_on_read: bool,
    return_expired: bool,
}

impl ModelTtl {
    fn expired(&self, ts: i64, now: i64) -> bool {
        ts + self.ttl <= now
    }
}

/// The naive model: hash maps of rows, each element with its timestamp. The map row is a vector in
/// the order the engine promises (insertion, swap-remove, order-keeping purge).
#[derive(Default)]
struct Model {
    ttl: Option<ModelTtl>,
    now: i64,
    value: HashMap<KeyId, (u8, i64)>,
    list: HashMap<KeyId, Vec<(u8, i64)>>,
    map: HashMap<KeyId, Vec<(u8, u8, i64)>>,
}

impl Model {
    fn expired(&self, ts: i64) -> bool {
        self.ttl.is_some_and(|t| t.expired(ts, self.now))
    }

    fn value_read(&mut self, k: KeyId) -> Option<u8> {
        let (v, ts) = *self.value.get(&k)?;
        if self.expired(ts) {
            self.value.remove(&k);
            return self.ttl.filter(|t| t.return_expired).map(|_| v);
        }
        if self.ttl.is_some_and(|t| t.refresh_on_read) {
            self.value.insert(k, (v, self.now));
        }
        Some(v)
    }

    /// A whole-row read of a list (elements `(v, ts)`): returns what the read sees.
    fn list_read(&mut self, k: KeyId) -> Vec<u8> {
        let (now, ttl) = (self.now, self.ttl);
        let Some(row) = self.list.get_mut(&k) else {
            return Vec::new();
        };
        let Some(t) = ttl else {
            return row.iter().map(|e| e.0).collect();
        };
        let all: Vec<u8> = row.iter().map(|e| e.0).collect();
        row.retain(|e| !t.expired(e.1, now));
        let seen = if t.return_expired { all } else { row.iter().map(|e| e.0).collect() };
        if t.refresh_on_read {
            row.iter_mut().for_each(|e| e.1 = now);
        }
        if row.is_empty() {
            self.list.remove(&k);
        }
        seen
    }

    fn map_read(&mut self, k: KeyId) -> Vec<(u8, u8)> {
        let (now, ttl) = (self.now, self.ttl);
        let Some(row) = self.map.get_mut(&k) else {
            return Vec::new();
        };
        let Some(t) = ttl else {
            return row.iter().map(|e| (e.0, e.1)).collect();
        };
        let all: Vec<(u8, u8)> = row.iter().map(|e| (e.0, e.1)).collect();
        row.retain(|e| !t.expired(e.2, now));
        let seen = if t.return_expired { all } else { row.iter().map(|e| (e.0, e.1)).collect() };
        if t.refresh_on_read {
            row.iter_mut().for_each(|e| e.2 = now);
        }
        if row.is_empty() {
            self.map.remove(&k);
        }
        seen
    }

    fn map_get(&mut self, k: KeyId, mk: u8) -> Option<u8> {
        let (now, ttl) = (self.now, self.ttl);
        let row = self.map.get_mut(&k)?;
        let pos = row.iter().position(|e| e.0 == mk)?;
        let (_, v, ts) = row[pos];
        if let Some(t) = ttl {
            if t.expired(ts, now) {
                row.swap_remove(pos);
                if row.is_empty() {
                    self.map.remove(&k);
                }
                return t.return_expired.then_some(v);
            }
            if t.refresh_on_read {
                row[pos].2 = now;
            }
        }
        Some(v)
    }

    fn map_put(&mut self, k: KeyId, mk: u8, v: u8) {
        let now = self.now;
        let row = self.map.entry(k).or_default();
        match row.iter_mut().find(|e| e.0 == mk) {
            Some(e) => *e = (mk, v, now),
            None => row.push((mk, v, now)),
        }
    }

    fn map_remove(&mut self, k: KeyId, mk: u8) {
        if let Some(row) = self.map.get_mut(&k) {
            if let Some(pos) = row.iter().position(|e| e.0 == mk) {
                row.swap_remove(pos);
            }
            if row.is_empty() {
                self.map.remove(&k);
            }
        }
    }

    /// The background sweep over everything: returns the rows it emptied.
    fn sweep_all(&mut self) -> usize {
        let Some(t) = self.ttl else {
            return 0;
        };
        let now = self.now;
        let before = self.entries();
        self.value.retain(|_, e| !t.expired(e.1, now));
        for row in self.list.values_mut() {
            row.retain(|e| !t.expired(e.1, now));
        }
        self.list.retain(|_, r| !r.is_empty());
        for row in self.map.values_mut() {
            row.retain(|e| !t.expired(e.2, now));
        }
        self.map.retain(|_, r| !r.is_empty());
        before - self.entries()
    }

    fn entries(&self) -> usize {
        self.value.len() + self.list.len() + self.map.len()
    }
}

fn run_model(config: Option<StateTtlConfig>, script: &[Op]) -> Result<(), TestCaseError> {
    let mut reg = StateRegistry::new();
    let with = |d: ValueStateDescriptor<u8>| match config {
        Some(c) => d.with_ttl(c),
        None => d,
    };
    let value = reg.value_state(with(ValueStateDescriptor::new("v"))).unwrap();
    let mut ld = ListStateDescriptor::<u8>::new("l");
    let mut md = MapStateDescriptor::<u8, u8>::new("m");
    if let Some(c) = config {
        ld = ld.with_ttl(c);
        md = md.with_ttl(c);
    }
    let list = reg.list_state(ld).unwrap();
    let map = reg.map_state(md).unwrap();
    let mut model = Model {
        ttl: config.map(|c| ModelTtl {
            ttl: c.ttl_ms(),
            refresh_on_read: c.refresh_policy() == UpdateType::OnReadAndWrite,
            return_expired: c.visibility() == StateVisibility::ReturnExpiredIfNotCleanedUp,
        }),
        ..Model::default()
    };

    for (step, op) in script.iter().enumerate() {
        let s = |k: KeyId| StateScope::new(k, model.now, reg.id());
        match op.clone() {
            Op::Tick(dt) => model.now += dt,
            Op::ValueRead(k) => {
                let got = value.value(&s(k)).unwrap();
                prop_assert_eq!(got, model.value_read(k), "step {}: {:?}", step, op);
            }
            Op::ValueSet(k, v) => {
                value.set(&s(k), v).unwrap();
                match v {
                    Some(v) => model.value.insert(k, (v, model.now)),
                    None => model.value.remove(&k),
                };
            }
            Op::ValueClear(k) => {
                value.clear(&s(k)).unwrap();
                model.value.remove(&k);
            }
            Op::ListGet(k) => {
                let got = list.get(&s(k)).unwrap();
                prop_assert_eq!(got, model.list_read(k), "step {}: {:?}", step, op);
            }
            Op::ListAdd(k, v) => {
                list.add(&s(k), v).unwrap();
                model.list.entry(k).or_default().push((v, model.now));
            }
            Op::ListAddAll(k, vs) => {
                list.add_all(&s(k), vs.clone()).unwrap();
                if !vs.is_empty() {
                    let now = model.now;
                    model.list.entry(k).or_default().extend(vs.into_iter().map(|v| (v, now)));
                }
            }
            Op::ListUpdate(k, vs) => {
                list.update(&s(k), vs.clone()).unwrap();
                if vs.is_empty() {
                    model.list.remove(&k);
                } else {
                    let now = model.now;
                    model.list.insert(k, vs.into_iter().map(|v| (v, now)).collect());
                }
            }
            Op::ListClear(k) => {
                list.clear(&s(k)).unwrap();
                model.list.remove(&k);
            }
            Op::MapGet(k, mk) => {
                let got = map.get(&s(k), &mk).unwrap();
                prop_assert_eq!(got, model.map_get(k, mk), "step {}: {:?}", step, op);
            }
            Op::MapContains(k, mk) => {
                let got = map.contains(&s(k), &mk).unwrap();
                prop_assert_eq!(got, model.map_get(k, mk).is_some(), "step {}: {:?}", step, op);
            }
            Op::MapPut(k, mk, v) => {
                map.put(&s(k), mk, v).unwrap();
                model.map_put(k, mk, v);
            }
            Op::MapPutAll(k, entries) => {
                map.put_all(&s(k), entries.clone()).unwrap();
                for (mk, v) in entries {
                    model.map_put(k, mk, v);
                }
            }
            Op::MapRemove(k, mk) => {
                map.remove(&s(k), &mk).unwrap();
                model.map_remove(k, mk);
            }
            Op::MapEntries(k) => {
                let got = map.entries(&s(k)).unwrap();
                prop_assert_eq!(got, model.map_read(k), "step {}: {:?}", step, op);
            }
            Op::MapLen(k) => {
                let got = map.len(&s(k)).unwrap();
                prop_assert_eq!(got, model.map_read(k).len(), "step {}: {:?}", step, op);
            }
            Op::MapIsEmpty(k) => {
                let got = map.is_empty(&s(k)).unwrap();
                prop_assert_eq!(got, model.map_read(k).is_empty(), "step {}: {:?}", step, op);
            }
            Op::MapClear(k) => {
                map.clear(&s(k)).unwrap();
                model.map.remove(&k);
            }
            Op::ClearKey(k) => {
                reg.clear_key(k);
                model.value.remove(&k);
                model.list.remove(&k);
                model.map.remove(&k);
            }
            Op::SweepAll => {
                let got = reg.cleanup_expired(model.now, usize::MAX);
                prop_assert_eq!(got, model.sweep_all(), "step {}: {:?}", step, op);
            }
        }
        prop_assert_eq!(
            reg.num_entries(),
            model.entries(),
            "entries after step {}: {:?}",
            step,
            op
        );
        for k in 0..4 {
            let has = model.value.contains_key(&k)
                || model.list.contains_key(&k)
                || model.map.contains_key(&k);
            prop_assert_eq!(
                reg.has_state(k),
                has,
                "has_state({}) after step {}: {:?}",
                k,
                step,
                op
            );
        }
    }
    Ok(())
}

fn ttl_config() -> impl Strategy<Value = StateTtlConfig> {
    (1..8i64, any::<bool>(), any::<bool>()).prop_map(|(ms, read, ret)| {
        StateTtlConfig::new(ms)
            .update_type(if read {
                UpdateType::OnReadAndWrite
            } else {
                UpdateType::OnCreateAndWrite
            })
            .state_visibility(if ret {
                StateVisibility::ReturnExpiredIfNotCleanedUp
            } else {
                StateVisibility::NeverReturnExpired
            })
    })
}

proptest! {
    // No regression file: it would be written outside this module's directory (the failing seed
    // is printed in the failure message; pin it in a unit test if it matters).
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn model_value_list_map_without_ttl(script in proptest::collection::vec(op(), 0..120)) {
        run_model(None, &script)?;
    }

    #[test]
    fn model_value_list_map_with_ttl(config in ttl_config(), script in proptest::collection::vec(op(), 0..120)) {
        run_model(Some(config), &script)?;
    }
}
