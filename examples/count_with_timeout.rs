//! The seeds' count-with-timeout job on the standard generated stream (docs/benchmarks.md), on one shard:
//! prints a few results, checks them, and reports throughput.
//!
//! ```text
//! cargo run --release -p pinwheel-examples --example count_with_timeout -- [--events N] [--keys K] [--events-per-ms R] [--shards P]
//! ```
//!
//! The function itself is [`pinwheel_examples::CountWithTimeout`] (examples/src/lib.rs).

use std::time::Instant;

use anyhow::{Context as _, bail};
use pinwheel::pipeline::{Pipeline, WatermarkStrategy};
use pinwheel_examples::{CountWithTimeout, Event, StandardStream};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// docs/benchmarks.md's ideal output count and sum of counts at the default sizes.
const IDEAL_OUTPUTS: u64 = 11_098_824;
const IDEAL_SUM: u64 = 123_293_855;

fn parse_args() -> anyhow::Result<(StandardStream, usize)> {
    let mut s = StandardStream::default();
    let mut shards = 1;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || -> anyhow::Result<u64> {
            let v = args.next().with_context(|| format!("{flag} needs a value"))?;
            v.replace('_', "").parse().with_context(|| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "--events" => s.events = value()?,
            "--keys" => s.keys = value()?.max(1),
            "--events-per-ms" => s.events_per_ms = value()?.max(1),
            "--shards" => shards = value()?.max(1) as usize,
            "-h" | "--help" => {
                println!(
                    "usage: count_with_timeout [--events N] [--keys K] [--events-per-ms R] [--shards P]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other} (try --help)"),
        }
    }
    Ok((s, shards))
}

fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn main() -> anyhow::Result<()> {
    let (stream, shards) = parse_args()?;
    println!(
        "count-with-timeout: {} events, {} keys, {} events/ms of event time, {shards} shard(s)",
        stream.events, stream.keys, stream.events_per_ms
    );

    let mut last_count = vec![0u64; stream.keys as usize];
    let (mut outputs, mut sum) = (0u64, 0u64);
    let mut first = Vec::new();
    let started = Instant::now();
    Pipeline::new()
        .shards(shards)
        .from_source(stream)
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_monotonous_timestamps()
                .with_timestamp_assigner(|e: &Event, _| e.timestamp),
        )
        .key_by(|e: &Event| e.key)
        .process(CountWithTimeout::one_minute)
        .for_each(|(key, count)| {
            outputs += 1;
            sum += count;
            last_count[key as usize] = count;
            if first.len() < 5 {
                first.push((key, count));
            }
        })?;
    let seconds = started.elapsed().as_secs_f64();

    for (key, count) in &first {
        println!("  key {key:>7}: {count} events, then a quiet minute");
    }
    let mut expected = vec![0u64; stream.keys as usize];
    for i in 0..stream.events {
        expected[stream.event(i).key as usize] += 1;
    }
    let ok = last_count == expected;
    println!("outputs: {outputs}, sum of counts: {sum}");
    if stream == StandardStream::default() {
        println!(
            "ideal (watermark one behind every event): {IDEAL_OUTPUTS} outputs ({:+.3}%), sum {IDEAL_SUM} ({:+.3}%)",
            (outputs as f64 / IDEAL_OUTPUTS as f64 - 1.0) * 100.0,
            (sum as f64 / IDEAL_SUM as f64 - 1.0) * 100.0
        );
    }
    println!(
        "every key's last output equals its number of events: {}",
        if ok { "yes" } else { "NO" }
    );
    println!(
        "{:.3} s, {:.0} events/s, peak RSS {} MiB",
        seconds,
        stream.events as f64 / seconds,
        peak_rss_bytes().map_or("?".to_string(), |b| (b >> 20).to_string())
    );
    if !ok {
        bail!("per-key final counts do not match the input");
    }
    Ok(())
}
