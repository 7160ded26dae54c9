//! # pinwheel-bench: Pinwheel's benchmark driver
//!
//! Runs one of docs/benchmarks.md's four jobs (`count-with-timeout`, `window-sum`, `timer-burst`,
//! `heartbeat`) on docs/benchmarks.md's standard generated stream and ends with one `key=value` line on
//! stdout, `engine=pinwheel job=... events=... ...`, in the format of the Flink side
//! (`bench/flink/src/pinwheel/flink/FlinkBench.java`), so that `scripts/compare-flink.sh` can put
//! the two side by side. Everything else goes to stderr. `pinwheel-bench --help` lists the
//! options and the fields of the line.
//!
//! ```text
//! cargo run --release -q -p pinwheel-bench -- count-with-timeout --events 20000000 --keys 1000000 --events-per-ms 10 --shards 2
//! ```
//!
//! The job functions are the examples' ([`pinwheel_examples`]): the benchmark measures the code a
//! user would write. Each shard writes into its own sink (no channel on the output path), which
//! counts, sums and stamps the first and last outputs; the driver merges the shards' figures after
//! the run, then reads the peak RSS, then computes docs/benchmarks.md's ideal outputs and checks the results
//! against the stream.

mod huge_pages;
mod ideal;
mod offcpu;
mod paced;
mod sinks;

use std::fmt::Display;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use huge_pages::HugePages;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pinwheel::KeyedProcessFunction;
use pinwheel::pipeline::{
    CheckpointStats, Checkpointing, ExactlyOnceFiles, Pipeline, ShardedRun, WatermarkStrategy,
};
use pinwheel_engine::checkpoint::{FaultAction, FaultPlan, FaultTrigger};
use pinwheel_engine::placement::ShardPlacement;
use pinwheel_examples::{
    CountWithTimeout, Event, Heartbeat, MINUTE, StandardStream, TimerBurst, WindowSum,
};

use crate::ideal::{Ideal, value_sum};
use crate::paced::PacedStream;
use crate::sinks::{CountingSink, LatencySink, ProgressOut, Slot, Span, WithFiles};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// docs/benchmarks.md's default sizes.
const DEFAULT_EVENTS: u64 = 20_000_000;
const DEFAULT_KEYS: u64 = 1_000_000;
/// timer-burst's default `N = K` (docs/benchmarks.md runs it at 2,000,000 and 10,000,000).
const DEFAULT_BURST: u64 = 2_000_000;
/// heartbeat's defaults, as `scripts/compare-flink.sh` and the Flink side: about 10 s of input.
const DEFAULT_HEARTBEAT_EVENTS: u64 = 2_000_000;
const DEFAULT_HEARTBEAT_RATE: u64 = 200_000;

const AFTER_HELP: &str = "\
THE RESULT LINE (stdout, the last line; everything else goes to stderr):
  engine=pinwheel job=JOB events=N keys=K shards=P outputs=... sum=... seconds=... events_per_s=...
  output_span_seconds=... outputs_per_s_in_span=... peak_rss_bytes=... huge_pages=... [job-specific fields]
  check=...

  outputs                 records the job emitted (all shards)
  sum                     count-with-timeout: the sum of the emitted counts
                          window-sum: the sum of the emitted window sums (= sum(i mod 100), checked)
                          timer-burst: the sum of the emitted 1s, i.e. the number of timers fired
                          heartbeat: the sum of the forwarded events' values (+ 0 per timeout), as the
                          Flink side counts it (= sum(i mod 100) when every event was forwarded)
  seconds                 from the start of the run to the last shard's end of input
  events_per_s            N / seconds
  output_span_seconds     from the first output to the last (all shards)
  outputs_per_s_in_span   outputs / output_span_seconds (timer-burst: timers fired per second)
  peak_rss_bytes          VmHWM of /proc/self/status, read right after the run (before the checks)
  huge_pages              --huge-pages: system, or off (heartbeat's default)
  p50_us p99_us p999_us max_us
                          heartbeat: source emit to sink receipt of each forwarded event, in
                          microseconds (hdrhistogram, 3 significant digits)
  ideal_outputs           count-with-timeout, window-sum: the outputs under a watermark one behind
                          every event (docs/benchmarks.md; computed for any N, K, R as bench/flink's Ideal.java)
  ideal_sum               count-with-timeout: the ideal sum of counts
  events_per_ms           R
  rate timeouts           heartbeat: the source's rate (events/s, all shards); the timeouts emitted.
                          Timeouts are 60 s of processing time ahead and re-armed by every event of
                          the key: in a run shorter than a minute none fires, and those pending at
                          the end of input are dropped (as in Flink), so outputs = N normally
  shard_runqueue_wait_ms shard_preemptions
                          heartbeat (Linux): per shard, separated by '/', the time its thread was
                          runnable but not running (preempted by other work on the machine) and
                          how often it was preempted, from /proc/thread-self (first output to end)
  distinct_keys           timer-burst: the keys in the stream (outputs must equal it)
  max_shard_span_seconds  timer-burst: the longest time one shard took from its first output to its
                          last (the burst itself; output_span_seconds adds the shards' skew)
  timers_per_s_in_shard_span  timer-burst: outputs / max_shard_span_seconds
  key_check_bytes         count-with-timeout: memory of the per-key check's sinks (included in
                          peak_rss_bytes; --no-key-check drops it)
  checkpoints checkpoint_stall_p50_us checkpoint_stall_p99_us checkpoint_stall_max_us
  checkpoint_bytes checkpoint_write_bytes_per_s checkpoints_timed_out restore_seconds
                          with --checkpoint-dir: checkpoints completed; each shard's stall per
                          checkpoint (the copy-on-write freeze of its keyed state; the encoding
                          runs on the checkpoint thread); the newest complete checkpoint's shard
                          files; bytes written per second of writing (files, syncs, manifest);
                          checkpoints abandoned at --checkpoint-timeout-ms; when it resumed, the
                          time to read and validate
                          the checkpoint and restore every shard's operators
  check                   ok, or FAILED:name,... (details on stderr; the exit status is then 1);
                          skipped_resumed when the run resumed from a checkpoint

NOISE (pinwheel-bench noise --shards P --seconds S): not a job but the floor under heartbeat's tail.
  P threads spin as idle shards do (64 turns, then a yield) and record every gap of more than 5 us
  between two clock reads, i.e. time they did not run:
  engine=pinwheel job=noise threads=P seconds=S not_running_pct=... gaps_over_10us=...
  gaps_over_100us=... gaps_over_1ms=... max_gap_us=... delay_p99_us=... delay_p999_us=...
  shard_runqueue_wait_ms=... shard_preemptions=...
  delay_p99_us delay_p999_us  the delay a record arriving at a uniformly random moment would wait
                          for its thread to run again: no engine on this machine does better for
                          records that must cross to another shard

CHECKS (independent of watermark timing, docs/benchmarks.md):
  count-with-timeout  every key's last output equals its number of events; sum of counts >= N
  window-sum          the sum of the window sums equals sum(i mod 100)
  timer-burst         outputs equal the number of distinct keys; sum equals outputs
  heartbeat           every event was forwarded once; their values add up to sum(i mod 100)

THE STREAM (docs/benchmarks.md): event i (0 <= i < N) has key splitmix64(i) mod K, timestamp i / R ms and value
i mod 100; shard p's partition emits i = p, p+P, p+2P, ... Event-time jobs use
WatermarkStrategy::for_monotonous_timestamps() (watermark = largest timestamp - 1); the end of input
sends the maximum watermark, which fires every remaining event-time timer.";

/// Pinwheel's benchmark driver: one of docs/benchmarks.md's jobs on the standard stream, ending with one
/// key=value result line on stdout (the format of the Flink side, for scripts/compare-flink.sh).
#[derive(Debug, Parser)]
#[command(name = "pinwheel-bench", version, after_long_help = AFTER_HELP)]
struct Cli {
    /// The job (docs/benchmarks.md "The jobs").
    #[arg(value_enum)]
    job: Job,

    /// N: events in the stream [default: 20000000; timer-burst: K, or 2000000 when neither is
    /// given; heartbeat: 2000000]. Numbers may carry `_` or `,` separators.
    #[arg(long, value_name = "N", value_parser = parse_count)]
    events: Option<u64>,

    /// K: keys [default: 1000000; timer-burst: N, or 2000000 when neither is given].
    #[arg(long, value_name = "K", value_parser = parse_count)]
    keys: Option<u64>,

    /// R: events per millisecond of event time (event i has timestamp i / R).
    #[arg(long, value_name = "R", value_parser = parse_count, default_value = "10")]
    events_per_ms: u64,

    /// P: shards, one source partition each (this machine has 2 cores).
    #[arg(long, value_name = "P", value_parser = parse_count, default_value = "2")]
    shards: u64,

    /// heartbeat only: events per second of the rate-limited source, in total over all shards
    /// (each partition emits rate / P per second) [default: 200000]. docs/benchmarks.md runs it at half the
    /// measured maximum throughput.
    #[arg(long, value_name = "EV_PER_S", value_parser = parse_count)]
    rate: Option<u64>,

    /// Pins shard i to core i (default: unpinned shards, scheduled by the operating system).
    #[arg(long)]
    pin: bool,

    /// count-with-timeout: skips the per-key check (and its sinks' 4 bytes per key per shard,
    /// which count in peak_rss_bytes).
    #[arg(long)]
    no_key_check: bool,

    /// Never shows the progress bar (it is shown on stderr only when stderr is a terminal).
    #[arg(long)]
    no_progress: bool,

    /// Watermark alignment across partitions: the most ms of event time a partition may run
    /// ahead of its shard's combined watermark, or `off` [default: the pipeline's default, 1000].
    #[arg(long, value_name = "MS|off", value_parser = parse_alignment)]
    alignment: Option<Alignment>,

    /// heartbeat: writes the latency distribution to FILE as CSV (`series,percentile,
    /// latency_us`: every event, and each shard's second half after warm-up); noise: the delay
    /// distribution (series `all`). For `scripts/plot-latency.py` to draw.
    #[arg(long, value_name = "FILE")]
    latency_csv: Option<std::path::PathBuf>,

    /// noise only: how long its threads spin [default: 20].
    #[arg(long, value_name = "S", value_parser = parse_count)]
    seconds: Option<u64>,

    /// Transparent huge pages for this process: `system` (the system's setting, with the
    /// allocator's advice to use them) or `off` [default: heartbeat: off, the other jobs: system].
    /// A huge page's first touch is one long page fault: good for throughput, bad for a latency
    /// tail.
    #[arg(long, value_name = "MODE")]
    huge_pages: Option<HugePages>,

    /// Checkpoints into DIR (created 0700), and resumes from the newest complete one there: kill
    /// the process at any moment and start the same command again. A resumed run sees only the
    /// output after its checkpoint, so its checks say `skipped_resumed`. count-with-timeout,
    /// window-sum and timer-burst (their source can resume).
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<std::path::PathBuf>,

    /// With --checkpoint-dir: the time from one checkpoint's completion to the next one's
    /// trigger.
    #[arg(long, value_name = "MS", value_parser = parse_count, default_value = "1000")]
    checkpoint_interval_ms: u64,

    /// With --checkpoint-dir: a checkpoint whose barriers have not all been acknowledged this
    /// long after its trigger is abandoned (counted in `checkpoints_timed_out`), and the next
    /// one follows an interval later.
    #[arg(long, value_name = "MS", value_parser = parse_count, default_value = "600000")]
    checkpoint_timeout_ms: u64,

    /// count-with-timeout and window-sum: also writes every output as a line `key,value` into
    /// exactly-once files in DIR (`part-*`, committed with each checkpoint; without
    /// --checkpoint-dir, at the end). With --checkpoint-dir, a run killed at any moment and
    /// started again leaves every output line exactly once in DIR once a run completes.
    #[arg(long, value_name = "DIR")]
    output: Option<std::path::PathBuf>,

    /// Crash tests only: with --checkpoint-dir, the process aborts at the K-th I/O step of its
    /// checkpoint writes (counting from 1, over every shard file and manifest of the run).
    #[arg(long, value_name = "K", hide = true)]
    checkpoint_abort_at_step: Option<u64>,
}

/// A `--alignment` value.
#[derive(Debug, Clone, Copy)]
struct Alignment(Option<i64>);

fn parse_alignment(s: &str) -> Result<Alignment, String> {
    if s == "off" {
        return Ok(Alignment(None));
    }
    s.parse::<i64>()
        .map(|ms| Alignment(Some(ms)))
        .map_err(|_| format!("expected milliseconds or `off`, got `{s}`"))
}

/// docs/benchmarks.md's jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Job {
    /// Flink's CountWithTimeoutFunction: a count per key, emitted after a minute of event time
    /// without an event of the key (a timer per event, never deleted).
    CountWithTimeout,
    /// A one-minute tumbling sum per key built on an event-time timer.
    WindowSum,
    /// Every event registers a timer at i64::MAX - 1; the end of input fires them all at once
    /// (measured: timers fired per second). Run with N = K.
    TimerBurst,
    /// Latency: every event is forwarded at once and re-arms its key's 60 s processing-time
    /// timeout, from a rate-limited source.
    Heartbeat,
    /// Not a job: what this machine takes from P threads that spin as idle shards do (time not
    /// running, and the delay it implies for a record arriving at a random moment), the floor
    /// under heartbeat's tail.
    Noise,
}

impl Job {
    fn name(self) -> &'static str {
        match self {
            Job::CountWithTimeout => "count-with-timeout",
            Job::WindowSum => "window-sum",
            Job::TimerBurst => "timer-burst",
            Job::Heartbeat => "heartbeat",
            Job::Noise => "noise",
        }
    }
}

/// A count with optional `_` or `,` separators.
fn parse_count(s: &str) -> Result<u64, String> {
    s.replace(['_', ','], "").parse().map_err(|e| format!("not a count: {s:?} ({e})"))
}

/// The run's settings, defaults resolved.
#[derive(Debug, Clone)]
struct Settings {
    job: Job,
    stream: StandardStream,
    shards: usize,
    /// heartbeat's rate, events/s in total.
    rate: f64,
    pin: bool,
    key_check: bool,
    alignment: Option<Alignment>,
    progress: bool,
    latency_csv: Option<std::path::PathBuf>,
    /// noise's duration.
    seconds: u64,
    huge_pages: HugePages,
    checkpointing: Option<Checkpointing>,
    output: Option<std::path::PathBuf>,
}

impl Settings {
    fn from_cli(cli: &Cli) -> anyhow::Result<Self> {
        let (events, keys) = match (cli.job, cli.events, cli.keys) {
            (Job::TimerBurst, None, None) => (DEFAULT_BURST, DEFAULT_BURST),
            (Job::TimerBurst, Some(n), None) => (n, n),
            (Job::TimerBurst, None, Some(k)) => (k, k),
            (Job::Heartbeat, n, k) => {
                (n.unwrap_or(DEFAULT_HEARTBEAT_EVENTS), k.unwrap_or(DEFAULT_KEYS))
            }
            (_, n, k) => (n.unwrap_or(DEFAULT_EVENTS), k.unwrap_or(DEFAULT_KEYS)),
        };
        ensure!(events >= 1, "--events must be at least 1");
        ensure!(keys >= 1, "--keys must be at least 1");
        ensure!(usize::try_from(keys).is_ok(), "--keys {keys} does not fit in memory");
        ensure!(cli.events_per_ms >= 1, "--events-per-ms must be at least 1");
        ensure!(cli.shards >= 1, "--shards must be at least 1");
        let shards = usize::try_from(cli.shards).context("--shards")?;
        let rate = match (cli.job, cli.rate) {
            (Job::Heartbeat, r) => r.unwrap_or(DEFAULT_HEARTBEAT_RATE),
            (_, None) => 0,
            (job, Some(_)) => {
                bail!("--rate applies to heartbeat only; {} runs its source flat out", job.name())
            }
        };
        ensure!(cli.job != Job::Heartbeat || rate >= 1, "--rate must be at least 1");
        ensure!(
            cli.output.is_none() || matches!(cli.job, Job::CountWithTimeout | Job::WindowSum),
            "--output applies to count-with-timeout and window-sum only"
        );
        ensure!(
            cli.job == Job::Noise || cli.seconds.is_none(),
            "--seconds applies to noise only; {} runs to the end of its stream",
            cli.job.name()
        );
        Ok(Settings {
            job: cli.job,
            stream: StandardStream { events, keys, events_per_ms: cli.events_per_ms },
            shards,
            rate: rate as f64,
            pin: cli.pin,
            key_check: !cli.no_key_check,
            alignment: cli.alignment,
            progress: !cli.no_progress && std::io::stderr().is_terminal(),
            latency_csv: cli.latency_csv.clone(),
            seconds: cli.seconds.unwrap_or(20),
            huge_pages: cli.huge_pages.unwrap_or(match cli.job {
                Job::Heartbeat => HugePages::Off,
                _ => HugePages::System,
            }),
            checkpointing: cli.checkpoint_dir.as_ref().map(|dir| {
                let faults = match cli.checkpoint_abort_at_step {
                    Some(k) => FaultPlan::inject(FaultTrigger::Step(k), FaultAction::Abort),
                    None => FaultPlan::none(),
                };
                Checkpointing::new(dir)
                    .interval(std::time::Duration::from_millis(cli.checkpoint_interval_ms))
                    .timeout(std::time::Duration::from_millis(cli.checkpoint_timeout_ms))
                    .faults(faults)
            }),
            output: cli.output.clone(),
        })
    }

    fn pipeline(&self) -> Pipeline {
        let mut p = Pipeline::new();
        if let Some(Alignment(drift)) = self.alignment {
            p = p.watermark_alignment(drift);
        }
        if let Some(c) = &self.checkpointing {
            p = p.checkpointing(c.clone());
        }
        if self.pin {
            p.placement(ShardPlacement::Fixed((0..self.shards).collect()))
        } else {
            p.shards(self.shards)
        }
    }

    fn keys(&self) -> usize {
        self.stream.keys as usize
    }
}

/// The result line, field by field.
#[derive(Debug, Default)]
struct Line(Vec<String>);

impl Line {
    fn add(&mut self, key: &str, value: impl Display) {
        self.0.push(format!("{key}={value}"));
    }
}

/// The correctness checks of one run.
#[derive(Debug, Default)]
struct Checks {
    failed: Vec<&'static str>,
    /// The checkpoint the run resumed from: it saw only the output after it, and the checks,
    /// which need the whole output, are skipped.
    resumed: Option<u64>,
}

impl Checks {
    /// The checks of a run that resumed from `resumed`, if it did.
    fn new(resumed: Option<u64>) -> Self {
        Checks { failed: Vec::new(), resumed }
    }

    /// Records one check and says how it went on stderr.
    fn check(&mut self, name: &'static str, ok: bool, what: impl Display) {
        if let Some(c) = self.resumed {
            eprintln!(
                "pinwheel-bench: check {name}: skipped (resumed from checkpoint {c}, the run saw \
                 only the output after it)"
            );
            return;
        }
        eprintln!("pinwheel-bench: check {name}: {what}: {}", if ok { "ok" } else { "MISMATCH" });
        if !ok {
            self.failed.push(name);
        }
    }

    fn field(&self) -> String {
        if self.resumed.is_some() {
            "skipped_resumed".to_string()
        } else if self.failed.is_empty() {
            "ok".to_string()
        } else {
            format!("FAILED:{}", self.failed.join(","))
        }
    }
}

/// What every job reports.
#[derive(Debug)]
struct Common {
    outputs: u64,
    sum: u64,
    /// From the start of the run to the last shard's end of input.
    seconds: f64,
    span: Span,
    peak_rss: Option<u64>,
    checkpoints: Option<CheckpointStats>,
}

impl Common {
    fn new(outputs: u64, sum: u64, start: Instant, returned: Instant, span: Span) -> Self {
        let end = span.finished.unwrap_or(returned);
        Common {
            outputs,
            sum,
            seconds: end.saturating_duration_since(start).as_secs_f64(),
            span,
            peak_rss: peak_rss_bytes(),
            checkpoints: None,
        }
    }

    /// The checks of this run (skipped if it resumed from a checkpoint).
    fn checks(&self) -> Checks {
        Checks::new(self.checkpoints.as_ref().and_then(|c| c.restored_from))
    }

    fn line(&self, s: &Settings) -> Line {
        let mut line = Line::default();
        line.add("engine", "pinwheel");
        line.add("job", s.job.name());
        line.add("events", s.stream.events);
        line.add("keys", s.stream.keys);
        line.add("shards", s.shards);
        line.add("outputs", self.outputs);
        line.add("sum", self.sum);
        line.add("seconds", format!("{:.3}", self.seconds));
        let per_s = if self.seconds > 0.0 { s.stream.events as f64 / self.seconds } else { 0.0 };
        line.add("events_per_s", format!("{per_s:.0}"));
        let span = self.span.seconds();
        line.add("output_span_seconds", format!("{span:.6}"));
        let in_span = if span > 0.0 { self.outputs as f64 / span } else { 0.0 };
        line.add("outputs_per_s_in_span", format!("{in_span:.0}"));
        line.add("peak_rss_bytes", self.peak_rss.map_or(-1, |b| b as i64));
        line.add("huge_pages", s.huge_pages.name());
        if let Some(c) = &self.checkpoints {
            let us = |d: std::time::Duration| d.as_micros();
            line.add("checkpoints", c.completed);
            line.add("checkpoint_stall_p50_us", us(c.stalls.quantile(0.50)));
            line.add("checkpoint_stall_p99_us", us(c.stalls.quantile(0.99)));
            line.add("checkpoint_stall_max_us", us(c.stalls.max()));
            line.add("checkpoint_bytes", c.last_bytes);
            let write = c.write_time.as_secs_f64();
            let rate = if write > 0.0 { c.bytes_written as f64 / write } else { 0.0 };
            line.add("checkpoint_write_bytes_per_s", format!("{rate:.0}"));
            line.add("checkpoints_timed_out", c.timed_out);
            if c.restored_from.is_some() {
                line.add("restore_seconds", format!("{:.3}", c.restore_time.as_secs_f64()));
            }
        }
        line
    }
}

/// The process's peak resident set (`VmHWM`), in bytes.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The shards' progress figures and the bar that shows them.
#[derive(Debug)]
struct Progress {
    slots: Vec<Slot>,
    enabled: bool,
    /// Sum the slots (each shard counts its own events) rather than take the largest (each shard
    /// reports the combined watermark, the same figure for all).
    sum: bool,
}

impl Progress {
    fn new(s: &Settings, sum: bool) -> Self {
        Progress {
            slots: (0..s.shards).map(|_| Slot::default()).collect(),
            enabled: s.progress,
            sum,
        }
    }

    /// Where shard `shard` of an event-time job reports its watermark.
    fn watermark_out(&self, shard: usize, s: &Settings) -> Option<ProgressOut<'_>> {
        self.enabled.then(|| ProgressOut {
            slot: &self.slots[shard],
            events_per_ms: s.stream.events_per_ms,
            events: s.stream.events,
        })
    }

    fn position(&self) -> u64 {
        let values = self.slots.iter().map(|slot| slot.0.load(Ordering::Relaxed));
        if self.sum { values.sum() } else { values.max().unwrap_or(0) }
    }

    /// Runs `f`, showing a bar on stderr meanwhile if enabled.
    fn show_while<R>(&self, s: &Settings, f: impl FnOnce() -> R) -> R {
        if !self.enabled {
            return f();
        }
        let bar =
            ProgressBar::with_draw_target(Some(s.stream.events), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} events ({msg}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(s.job.name());
        let done = AtomicBool::new(false);
        let result = std::thread::scope(|scope| {
            let updater = scope.spawn(|| {
                let started = Instant::now();
                while !done.load(Ordering::Acquire) {
                    let position = self.position();
                    let seconds = started.elapsed().as_secs_f64().max(1e-3);
                    bar.set_position(position);
                    bar.set_message(format!("{:.2} M events/s", position as f64 / seconds / 1e6));
                    std::thread::park_timeout(Duration::from_millis(100));
                }
            });
            let result = f();
            done.store(true, Ordering::Release);
            updater.thread().unpark();
            result
        });
        bar.finish_and_clear();
        result
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(checks) if checks.failed.is_empty() => ExitCode::SUCCESS,
        Ok(checks) => {
            eprintln!("pinwheel-bench: check failed: {}", checks.failed.join(", "));
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("pinwheel-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the job the command line asks for, prints the result line, returns the checks.
fn run() -> anyhow::Result<Checks> {
    let cli = Cli::parse();
    let s = Settings::from_cli(&cli)?;
    s.huge_pages.apply().context("--huge-pages off")?;
    if s.job == Job::Noise {
        eprintln!(
            "pinwheel-bench: noise: {} threads spinning as idle shards for {} s",
            s.shards, s.seconds
        );
    } else {
        eprintln!(
            "pinwheel-bench: job={} N={} K={} R={} P={}{}{} watermarks={}",
            s.job.name(),
            s.stream.events,
            s.stream.keys,
            s.stream.events_per_ms,
            s.shards,
            if s.pin { " pinned" } else { " unpinned" },
            if s.job == Job::Heartbeat { format!(" rate={}/s", s.rate) } else { String::new() },
            if s.job == Job::Heartbeat {
                "none (processing time)"
            } else {
                "for_monotonous_timestamps"
            },
        );
    }
    let (line, checks) = match s.job {
        Job::CountWithTimeout => count_with_timeout(&s)?,
        Job::WindowSum => window_sum(&s)?,
        Job::TimerBurst => timer_burst(&s)?,
        Job::Heartbeat => heartbeat(&s)?,
        Job::Noise => noise(&s)?,
    };
    println!("{}", line.0.join(" "));
    Ok(checks)
}

/// Runs an event-time job on the standard stream, each shard into a [`CountingSink`] that keeps
/// `last_per_key` entries. Returns the sinks, the start and the return instants.
fn run_event_time<'p, F, FF>(
    s: &Settings,
    factory: FF,
    last_per_key: usize,
    progress: &'p Progress,
) -> anyhow::Result<(Vec<CountingSink<'p>>, Instant, Instant, Option<CheckpointStats>)>
where
    F: KeyedProcessFunction<Key = u64, In = Event, Out = (u64, u64)>,
    FF: Fn() -> F + Send + Sync + 'static,
{
    let files = match &s.output {
        Some(dir) => Some(
            ExactlyOnceFiles::new(dir, |&(key, value): &(u64, u64), out: &mut Vec<u8>| {
                let _ = writeln!(out, "{key},{value}");
            })
            .with_context(|| format!("--output {}", dir.display()))?,
        ),
        None => None,
    };
    let mut pipeline = s.pipeline();
    if let Some(files) = &files {
        pipeline = pipeline.exactly_once(files.committer());
    }
    let stream = pipeline
        .from_source(s.stream)
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_monotonous_timestamps()
                .with_timestamp_assigner(|e: &Event, _| e.timestamp),
        )
        .key_by(|e: &Event| e.key)
        .process(factory)
        .name(s.job.name());
    let start = Instant::now();
    let run = progress.show_while(s, || {
        stream.run_sharded(|shard| WithFiles {
            counting: CountingSink::new(last_per_key, progress.watermark_out(shard.index, s)),
            files: files.as_ref().map(|f| f.sink(shard)),
        })
    });
    let returned = Instant::now();
    let mut run = run.with_context(|| format!("{} failed", s.job.name()))?;
    let checkpoints = run.checkpoints.take();
    let sinks = placement_note(run).into_iter().map(|w| w.counting).collect();
    Ok((sinks, start, returned, checkpoints))
}

fn placement_note<S>(run: ShardedRun<S>) -> Vec<S> {
    if let Some(note) = run.placement_note {
        eprintln!("pinwheel-bench: placement: {note}");
    }
    run.sinks
}

/// The shards' figures of an event-time job, merged.
fn merge(
    sinks: &[CountingSink<'_>],
    start: Instant,
    returned: Instant,
    checkpoints: Option<CheckpointStats>,
) -> Common {
    let span = Span::merge(sinks.iter().map(|k| &k.span));
    let outputs = sinks.iter().map(|k| k.outputs).sum();
    let sum = sinks.iter().map(|k| k.sum).sum();
    let mut common = Common::new(outputs, sum, start, returned, span);
    common.checkpoints = checkpoints;
    eprintln!(
        "pinwheel-bench: run took {:.3} s ({:.3} s to the last shard's end of input)",
        returned.saturating_duration_since(start).as_secs_f64(),
        common.seconds
    );
    common
}

/// How outputs compare with the ideal, on stderr.
fn report_ideal(what: &str, got: u64, ideal: u64) {
    eprintln!(
        "pinwheel-bench: {what}: {got}, ideal (watermark one behind every event) {ideal}: {:.3}% of it",
        if ideal > 0 { 100.0 * got as f64 / ideal as f64 } else { 0.0 }
    );
}

fn count_with_timeout(s: &Settings) -> anyhow::Result<(Line, Checks)> {
    // The per-key check keeps a u32 per key in every shard's sink: a count needs N <= u32::MAX.
    let key_check = s.key_check && s.stream.events <= u64::from(u32::MAX);
    if s.key_check && !key_check {
        eprintln!("pinwheel-bench: N > u32::MAX: the per-key check is skipped");
    }
    let progress = Progress::new(s, false);
    let per_key = if key_check { s.keys() } else { 0 };
    let (sinks, start, returned, checkpoints) =
        run_event_time(s, CountWithTimeout::one_minute, per_key, &progress)?;
    let common = merge(&sinks, start, returned, checkpoints);

    let ideal = ideal::compute(&s.stream);
    report_ideal("outputs", common.outputs, ideal.timeouts);
    report_ideal("sum of counts", common.sum, ideal.timeout_sum);
    let mut checks = common.checks();
    checks.check(
        "sum_of_counts",
        common.sum >= s.stream.events,
        format_args!("sum of counts {} >= events {}", common.sum, s.stream.events),
    );
    if key_check {
        let (bad, example) = last_counts_mismatch(&sinks, &ideal);
        checks.check(
            "last_count_per_key",
            bad == 0,
            format_args!(
                "every key's last output equals its number of events ({bad} keys differ{})",
                example.map_or(String::new(), |(k, got, want)| format!(
                    ", e.g. key {k}: last output {got}, events {want}"
                ))
            ),
        );
    }

    let mut line = common.line(s);
    line.add("ideal_outputs", ideal.timeouts);
    line.add("ideal_sum", ideal.timeout_sum);
    line.add("events_per_ms", s.stream.events_per_ms);
    line.add("key_check_bytes", per_key * 4 * sinks.len());
    line.add("check", checks.field());
    Ok((line, checks))
}

/// Keys whose last output (in whichever shard owns them; more than one owner is a mismatch too)
/// differs from their number of events, and the first such key with its figures.
fn last_counts_mismatch(
    sinks: &[CountingSink<'_>],
    ideal: &Ideal,
) -> (u64, Option<(usize, u64, u64)>) {
    let mut bad = 0;
    let mut example = None;
    for (key, &want) in ideal.counts.iter().enumerate() {
        let mut got = 0;
        let mut owners = 0;
        for sink in sinks {
            let v = u64::from(sink.last[key]);
            if v != 0 {
                got = v;
                owners += 1;
            }
        }
        if owners > 1 || got != want {
            bad += 1;
            example.get_or_insert((key, got, want));
        }
    }
    (bad, example)
}

fn window_sum(s: &Settings) -> anyhow::Result<(Line, Checks)> {
    let progress = Progress::new(s, false);
    let (sinks, start, returned, checkpoints) =
        run_event_time(s, WindowSum::one_minute, 0, &progress)?;
    let common = merge(&sinks, start, returned, checkpoints);

    let ideal = ideal::compute(&s.stream);
    report_ideal("outputs", common.outputs, ideal.windows);
    let mut checks = common.checks();
    let want = value_sum(s.stream.events);
    checks.check(
        "window_sums",
        common.sum == want,
        format_args!("sum of window sums {}, sum(i mod 100) {want}", common.sum),
    );

    let mut line = common.line(s);
    line.add("ideal_outputs", ideal.windows);
    line.add("events_per_ms", s.stream.events_per_ms);
    line.add("check", checks.field());
    Ok((line, checks))
}

/// The number of distinct keys of the stream.
fn distinct_keys(stream: &StandardStream) -> u64 {
    let mut seen = vec![0u64; (stream.keys as usize).div_ceil(64)];
    for i in 0..stream.events {
        let k = stream.event(i).key as usize;
        seen[k / 64] |= 1 << (k % 64);
    }
    seen.iter().map(|w| u64::from(w.count_ones())).sum()
}

fn timer_burst(s: &Settings) -> anyhow::Result<(Line, Checks)> {
    if s.stream.events != s.stream.keys {
        eprintln!("pinwheel-bench: note: docs/benchmarks.md runs timer-burst with N = K");
    }
    let progress = Progress::new(s, false);
    let (sinks, start, returned, checkpoints) = run_event_time(s, || TimerBurst, 0, &progress)?;
    let common = merge(&sinks, start, returned, checkpoints);
    eprintln!(
        "pinwheel-bench: burst: {} timers fired in {:.6} s",
        common.outputs,
        common.span.seconds()
    );

    let distinct = distinct_keys(&s.stream);
    let mut checks = common.checks();
    checks.check(
        "outputs_vs_distinct_keys",
        common.outputs == distinct,
        format_args!("outputs {}, distinct keys {distinct}", common.outputs),
    );
    checks.check(
        "sum_vs_outputs",
        common.sum == common.outputs,
        format_args!("sum {}, outputs {}", common.sum, common.outputs),
    );

    // docs/benchmarks.md's figure spans from the first output of any shard to the last of any: on several
    // shards it includes how much later one shard finished its input than another. The burst
    // itself, per shard: the slowest shard's span.
    let shard_span = sinks.iter().map(|k| k.span.seconds()).fold(0.0, f64::max);
    let shard_rate = if shard_span > 0.0 { common.outputs as f64 / shard_span } else { 0.0 };
    eprintln!(
        "pinwheel-bench: per shard: the slowest shard fired its timers in {shard_span:.6} s \
         ({shard_rate:.0} timers/s over all shards)"
    );

    let mut line = common.line(s);
    line.add("events_per_ms", s.stream.events_per_ms);
    line.add("distinct_keys", distinct);
    line.add("max_shard_span_seconds", format!("{shard_span:.6}"));
    line.add("timers_per_s_in_shard_span", format!("{shard_rate:.0}"));
    line.add("check", checks.field());
    Ok((line, checks))
}

/// Writes the latency distributions (nanosecond histograms) as CSV: `series,percentile,latency_us`
/// at the points HdrHistogram's percentile iterator gives (denser towards the tail), then the max.
fn write_latency_csv(
    path: &std::path::Path,
    series: &[(&str, &Histogram<u64>)],
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "series,percentile,latency_us")?;
    for (name, h) in series {
        if h.is_empty() {
            continue;
        }
        for v in h.iter_quantiles(8) {
            let q = v.quantile_iterated_to();
            if q >= 1.0 {
                break;
            }
            writeln!(out, "{name},{:.6},{:.3}", 100.0 * q, v.value_iterated_to() as f64 / 1000.0)?;
        }
        writeln!(out, "{name},100,{:.3}", h.max() as f64 / 1000.0)?;
    }
    out.flush()?;
    Ok(())
}

/// A latency quantile of a histogram in nanoseconds, in microseconds.
fn quantile_us(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() { 0.0 } else { h.value_at_quantile(q) as f64 / 1000.0 }
}

fn heartbeat(s: &Settings) -> anyhow::Result<(Line, Checks)> {
    let epoch = Instant::now();
    let source = PacedStream { stream: s.stream, rate: s.rate, epoch };
    let progress = Progress::new(s, true);
    // Each shard's second half of its (about N / P) forwarded events, after warm-up.
    let warmup = s.stream.events / s.shards as u64 / 2;
    let stream = s
        .pipeline()
        .from_source(source)
        .key_by(|e: &Event| e.key)
        .process(|| Heartbeat::new(MINUTE))
        .name(s.job.name());
    let start = Instant::now();
    let run = progress.show_while(s, || {
        stream.run_sharded(|shard| {
            LatencySink::new(epoch, warmup, progress.enabled.then(|| &progress.slots[shard.index]))
        })
    });
    let returned = Instant::now();
    let sinks = placement_note(run.context("heartbeat failed")?);

    let span = Span::merge(sinks.iter().map(|k| &k.span));
    let forwarded: u64 = sinks.iter().map(|k| k.forwarded).sum();
    let timeouts: u64 = sinks.iter().map(|k| k.timeouts).sum();
    let sum = sinks.iter().map(|k| k.sum).sum();
    let common = Common::new(forwarded + timeouts, sum, start, returned, span);
    let mut all = sinks::latency_histogram();
    let mut later = sinks::latency_histogram();
    for sink in &sinks {
        all.add(&sink.all).context("merging latency histograms")?;
        later.add(&sink.later).context("merging latency histograms")?;
    }

    let achieved = if common.seconds > 0.0 { forwarded as f64 / common.seconds } else { 0.0 };
    eprintln!(
        "pinwheel-bench: source reached {achieved:.0} events/s of the {:.0} asked for",
        s.rate
    );
    if achieved < 0.95 * s.rate {
        eprintln!(
            "pinwheel-bench: WARNING: the shards did not keep up with the rate: the latencies \
             include queueing; use a lower --rate"
        );
    }
    eprintln!(
        "pinwheel-bench: latency over each shard's second half of outputs (after warm-up): \
         p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
        quantile_us(&later, 0.5),
        quantile_us(&later, 0.99),
        quantile_us(&later, 0.999),
        later.max() as f64 / 1000.0
    );

    if let Some(path) = &s.latency_csv {
        write_latency_csv(path, &[("all", &all), ("after_warmup", &later)])
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("pinwheel-bench: latency distribution written to {}", path.display());
    }

    let mut checks = Checks::default();
    checks.check(
        "forwarded",
        forwarded == s.stream.events && all.len() == forwarded,
        format_args!(
            "forwarded events {forwarded} (latencies {}), events {}",
            all.len(),
            s.stream.events
        ),
    );
    let want = value_sum(s.stream.events);
    checks.check(
        "values",
        sum == want,
        format_args!("sum of forwarded values {sum}, sum(i mod 100) {want}"),
    );

    let mut line = common.line(s);
    offcpu_fields(&mut line, sinks.iter().map(|k| k.offcpu));
    line.add("p50_us", format!("{:.1}", quantile_us(&all, 0.5)));
    line.add("p99_us", format!("{:.1}", quantile_us(&all, 0.99)));
    line.add("p999_us", format!("{:.1}", quantile_us(&all, 0.999)));
    line.add("max_us", format!("{:.1}", all.max() as f64 / 1000.0));
    line.add("rate", format!("{:.0}", s.rate));
    line.add("timeouts", timeouts);
    line.add("check", checks.field());
    Ok((line, checks))
}

/// Adds what the operating system took from each shard thread: `shard_runqueue_wait_ms` (time
/// runnable but not running, preempted by other work) and `shard_preemptions`, one figure per
/// shard separated by `/` (absent off Linux).
fn offcpu_fields(line: &mut Line, stats: impl Iterator<Item = Option<offcpu::ThreadStat>>) {
    let stats: Option<Vec<offcpu::ThreadStat>> = stats.collect();
    if let Some(stats) = stats {
        let join = |f: &dyn Fn(&offcpu::ThreadStat) -> String| {
            stats.iter().map(f).collect::<Vec<_>>().join("/")
        };
        line.add("shard_runqueue_wait_ms", join(&|s| format!("{:.1}", s.wait_ns as f64 / 1e6)));
        line.add("shard_preemptions", join(&|s| s.preemptions.to_string()));
    }
}

/// The `noise` measurement: P threads spin for `--seconds` as idle shards do, recording every gap
/// in their running; the result line gives the share of time they did not run, the gaps, and the
/// delay quantiles a record arriving at a random moment would see before its thread runs again.
fn noise(s: &Settings) -> anyhow::Result<(Line, Checks)> {
    let duration = Duration::from_secs(s.seconds);
    let runs: Vec<offcpu::Gaps> = std::thread::scope(|scope| {
        let threads: Vec<_> =
            (0..s.shards).map(|_| scope.spawn(move || offcpu::spin_and_record(duration))).collect();
        threads.into_iter().map(|t| t.join()).collect::<Result<_, _>>()
    })
    .map_err(|_| anyhow::anyhow!("a noise thread panicked"))?;
    let elapsed: u64 = runs.iter().map(|r| r.elapsed_ns).sum();
    let gaps: Vec<u64> = runs.iter().flat_map(|r| r.gaps.iter().copied()).collect();
    let stolen: u64 = gaps.iter().sum();
    let over = |ns: u64| gaps.iter().filter(|&&g| g > ns).count();
    let mut line = Line::default();
    line.add("engine", "pinwheel");
    line.add("job", s.job.name());
    line.add("threads", s.shards);
    line.add("seconds", s.seconds);
    line.add("not_running_pct", format!("{:.3}", 100.0 * stolen as f64 / elapsed.max(1) as f64));
    line.add("gaps_over_10us", over(10_000));
    line.add("gaps_over_100us", over(100_000));
    line.add("gaps_over_1ms", over(1_000_000));
    line.add("max_gap_us", format!("{:.1}", gaps.iter().max().copied().unwrap_or(0) as f64 / 1e3));
    for (name, q) in [("delay_p99_us", 0.99), ("delay_p999_us", 0.999)] {
        let ns = offcpu::delay_quantile_ns(&gaps, elapsed, q);
        line.add(name, format!("{:.1}", ns as f64 / 1e3));
    }
    offcpu_fields(&mut line, runs.iter().map(|r| r.stat));
    if let Some(path) = &s.latency_csv {
        write_delay_csv(path, &gaps, elapsed)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("pinwheel-bench: delay distribution written to {}", path.display());
    }
    Ok((line, Checks::default()))
}

/// Writes the `noise` delay distribution in the format of [`write_latency_csv`] (series
/// `all`), from the 50th percentile to the largest gap, for `scripts/plot-latency.py`.
fn write_delay_csv(path: &std::path::Path, gaps: &[u64], elapsed_ns: u64) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "series,percentile,latency_us")?;
    // 1 - p halves eight times per decade, as hdrhistogram's iter_quantiles(8) steps.
    for step in 0..=48 {
        let q = 1.0 - 0.5 * 10f64.powf(-f64::from(step) / 8.0);
        let ns = offcpu::delay_quantile_ns(gaps, elapsed_ns, q);
        writeln!(out, "all,{:.6},{:.3}", 100.0 * q, ns as f64 / 1000.0)?;
    }
    let max = gaps.iter().max().copied().unwrap_or(0);
    writeln!(out, "all,100,{:.3}", max as f64 / 1000.0)?;
    out.flush()?;
    Ok(())
}
