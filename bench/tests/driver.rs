//! Runs the built benchmark driver on tiny sizes, job by job, and checks its result line against
//! figures computed here from the stream. Only quantities that do not depend on watermark timing
//! are compared exactly (value sums, distinct keys, forwarded events); outputs of the timing-
//! dependent jobs are checked against bounds that hold for any watermark.

use std::collections::{HashMap, HashSet};
use std::process::Command;

use pinwheel_examples::StandardStream;

/// Runs the driver with `args`; returns its exit status, stdout and stderr.
fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pinwheel-bench"))
        .args(args)
        .output()
        .expect("the driver runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The result line's fields, from the last stdout line starting with `engine=pinwheel `.
fn result(args: &[&str]) -> HashMap<String, String> {
    let (ok, stdout, stderr) = run(args);
    assert!(ok, "pinwheel-bench {args:?} failed:\n{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("engine=pinwheel "))
        .unwrap_or_else(|| panic!("no result line in:\n{stdout}"));
    let fields: HashMap<String, String> = line
        .split_whitespace()
        .map(|f| {
            let (k, v) = f.split_once('=').unwrap_or_else(|| panic!("not key=value: {f}"));
            (k.to_string(), v.to_string())
        })
        .collect();
    for key in [
        "engine",
        "job",
        "events",
        "keys",
        "shards",
        "outputs",
        "sum",
        "seconds",
        "events_per_s",
        "output_span_seconds",
        "outputs_per_s_in_span",
        "peak_rss_bytes",
        "check",
    ] {
        assert!(fields.contains_key(key), "{key} missing from {line}");
    }
    assert_eq!(fields["check"], "ok", "{line}\n{stderr}");
    fields
}

fn num(fields: &HashMap<String, String>, key: &str) -> u64 {
    fields[key].parse().unwrap_or_else(|e| panic!("{key}={}: {e}", fields[key]))
}

fn float(fields: &HashMap<String, String>, key: &str) -> f64 {
    fields[key].parse().unwrap_or_else(|e| panic!("{key}={}: {e}", fields[key]))
}

fn stream(events: u64, keys: u64, events_per_ms: u64) -> StandardStream {
    StandardStream { events, keys, events_per_ms }
}

fn value_sum(s: &StandardStream) -> u64 {
    (0..s.events).map(|i| s.event(i).value).sum()
}

fn distinct_keys(s: &StandardStream) -> u64 {
    (0..s.events).map(|i| s.event(i).key).collect::<HashSet<_>>().len() as u64
}

/// Distinct (key, one-minute window) pairs: the most outputs window-sum can have.
fn key_windows(s: &StandardStream) -> u64 {
    (0..s.events)
        .map(|i| {
            let e = s.event(i);
            (e.key, e.timestamp.div_euclid(60_000))
        })
        .collect::<HashSet<_>>()
        .len() as u64
}

#[test]
fn count_with_timeout() {
    // R = 1: 200 s of event time, so keys also time out before the end of input.
    for shards in ["2", "3"] {
        let f = result(&[
            "count-with-timeout",
            "--events",
            "200_000",
            "--keys",
            "500",
            "--events-per-ms",
            "1",
            "--shards",
            shards,
        ]);
        let s = stream(200_000, 500, 1);
        assert_eq!(f["engine"], "pinwheel");
        assert_eq!(f["job"], "count-with-timeout");
        assert_eq!(num(&f, "events"), 200_000);
        assert_eq!(num(&f, "keys"), 500);
        assert_eq!(f["shards"], shards);
        let (outputs, sum) = (num(&f, "outputs"), num(&f, "sum"));
        // Every key emits its final count at the end at least; each output follows an event.
        assert!(outputs >= distinct_keys(&s) && outputs <= s.events, "{f:?}");
        // The last outputs alone add up to the events; earlier ones add more.
        assert!(sum >= s.events, "{f:?}");
        assert!(num(&f, "ideal_outputs") >= distinct_keys(&s));
        assert!(num(&f, "ideal_sum") >= s.events);
        assert_eq!(
            num(&f, "key_check_bytes"),
            500 * 4 * shards.parse::<u64>().unwrap(),
            "the per-key check ran"
        );
    }
}

#[test]
fn count_with_timeout_ideal_at_small_sizes() {
    // With every event within a minute of event time, no key times out before the end: the ideal
    // is then one output per key with the sum of counts N, and so is every real run.
    let f = result(&["count-with-timeout", "--events", "20000", "--keys", "500"]);
    let s = stream(20_000, 500, 10);
    assert_eq!(num(&f, "outputs"), distinct_keys(&s));
    assert_eq!(num(&f, "sum"), 20_000);
    assert_eq!(num(&f, "ideal_outputs"), distinct_keys(&s));
    assert_eq!(num(&f, "ideal_sum"), 20_000);
}

#[test]
fn window_sum() {
    for shards in ["1", "2"] {
        let f = result(&[
            "window-sum",
            "--events",
            "200000",
            "--keys",
            "500",
            "--events-per-ms",
            "1",
            "--shards",
            shards,
        ]);
        let s = stream(200_000, 500, 1);
        assert_eq!(f["job"], "window-sum");
        assert_eq!(num(&f, "sum"), value_sum(&s));
        let outputs = num(&f, "outputs");
        assert!(outputs >= distinct_keys(&s) && outputs <= key_windows(&s), "{f:?}");
        let ideal = num(&f, "ideal_outputs");
        assert!(ideal >= distinct_keys(&s) && ideal <= key_windows(&s), "{f:?}");
    }
}

#[test]
fn timer_burst() {
    let f = result(&["timer-burst", "--events", "20000", "--keys", "500"]);
    let s = stream(20_000, 500, 10);
    assert_eq!(f["job"], "timer-burst");
    assert_eq!(num(&f, "outputs"), distinct_keys(&s));
    assert_eq!(num(&f, "sum"), num(&f, "outputs"));
    assert_eq!(num(&f, "distinct_keys"), distinct_keys(&s));
    assert!(float(&f, "outputs_per_s_in_span") > 0.0);
}

#[test]
fn timer_burst_defaults_to_n_equals_k() {
    let f = result(&["timer-burst", "--keys", "3000"]);
    assert_eq!(num(&f, "events"), 3000);
    assert_eq!(num(&f, "outputs"), distinct_keys(&stream(3000, 3000, 10)));
}

#[test]
fn heartbeat() {
    // 3,000 events at 6,000/s: half a second. Timeouts are a minute ahead: none fires, and the
    // pending ones are dropped at the end of input, so the outputs are the forwarded events.
    let f = result(&["heartbeat", "--events", "3000", "--keys", "500", "--rate", "6000"]);
    let s = stream(3000, 500, 10);
    assert_eq!(f["job"], "heartbeat");
    assert_eq!(num(&f, "outputs"), 3000);
    assert_eq!(num(&f, "timeouts"), 0);
    assert_eq!(num(&f, "sum"), value_sum(&s));
    assert_eq!(num(&f, "rate"), 6000);
    let (p50, p99, p999, max) =
        (float(&f, "p50_us"), float(&f, "p99_us"), float(&f, "p999_us"), float(&f, "max_us"));
    assert!(p50 <= p99 && p99 <= p999 && p999 <= max, "{f:?}");
    // Paced: it cannot have run faster than the rate allows (the last event of each partition is
    // due after 1,499 / 3,000 s).
    assert!(float(&f, "seconds") >= 0.49, "{f:?}");
    // What the operating system took from each shard thread, one figure per shard (Linux).
    if cfg!(target_os = "linux") {
        assert_eq!(f["shard_runqueue_wait_ms"].split('/').count(), 2, "{f:?}");
        assert_eq!(f["shard_preemptions"].split('/').count(), 2, "{f:?}");
    }
}

#[test]
fn noise() {
    let (ok, stdout, stderr) = run(&["noise", "--seconds", "1", "--shards", "1"]);
    assert!(ok, "{stderr}");
    let line = stdout.lines().last().unwrap_or_default();
    let f: HashMap<String, String> = line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    assert_eq!(f["job"], "noise");
    assert_eq!(num(&f, "threads"), 1);
    let not_running = float(&f, "not_running_pct");
    assert!((0.0..=100.0).contains(&not_running), "{f:?}");
    assert!(num(&f, "gaps_over_10us") >= num(&f, "gaps_over_100us"), "{f:?}");
    assert!(num(&f, "gaps_over_100us") >= num(&f, "gaps_over_1ms"), "{f:?}");
    assert!(float(&f, "delay_p99_us") <= float(&f, "delay_p999_us"), "{f:?}");
    assert!(float(&f, "delay_p999_us") <= float(&f, "max_gap_us"), "{f:?}");
    let (ok, _, stderr) = run(&["window-sum", "--seconds", "1"]);
    assert!(!ok, "--seconds is for noise only: {stderr}");
}

#[test]
fn help_and_bad_arguments() {
    let (ok, stdout, _) = run(&["--help"]);
    assert!(ok);
    for word in ["count-with-timeout", "window-sum", "timer-burst", "heartbeat", "--rate"] {
        assert!(stdout.contains(word), "--help does not mention {word}");
    }
    let (ok, stdout, stderr) = run(&["window-sum", "--events", "100", "--rate", "10"]);
    assert!(!ok && stdout.is_empty(), "--rate is for heartbeat only: {stderr}");
    let (ok, _, _) = run(&["no-such-job"]);
    assert!(!ok);
    let (ok, _, _) = run(&["window-sum", "--keys", "0"]);
    assert!(!ok);
}
