//! # pinwheel-checkpoint: what a checkpoint directory holds
//!
//! ```text
//! pinwheel-checkpoint inspect DIR
//! ```
//!
//! Lists the checkpoints of DIR, newest first, one block each: its id and kind, whether it is
//! complete (its manifest and every shard file it names validate: sizes, digests, checksums,
//! key-group ranges), the shard count and total bytes, and per shard file its key groups, size,
//! watermark and, per keyed operator, its keys, pending timers and states. An invalid checkpoint
//! says why, naming the file and the offset. Exits 0 if the newest checkpoint is complete, 1 if
//! it is not (or there is none), 2 on a usage or I/O error.

use std::path::Path;
use std::process::ExitCode;

use pinwheel_engine::checkpoint::{CheckpointDir, CheckpointError, keyed_snapshots};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, dir] if cmd == "inspect" => match inspect(Path::new(dir)) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("pinwheel-checkpoint: {e}");
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!("usage: pinwheel-checkpoint inspect DIR");
            ExitCode::from(2)
        }
    }
}

/// Prints DIR's checkpoints; returns whether the newest is complete.
fn inspect(path: &Path) -> Result<bool, CheckpointError> {
    if !path.is_dir() {
        println!("{}: no such directory", path.display());
        return Ok(false);
    }
    let dir = CheckpointDir::open_or_create(path)?;
    let candidates = dir.candidates()?;
    if candidates.is_empty() {
        println!("{}: no checkpoint", path.display());
        return Ok(false);
    }
    // Whether the newest checkpoint (the first candidate) is complete.
    let mut newest_complete = false;
    for (i, c) in candidates.iter().enumerate() {
        let manifest = match &c.manifest {
            Ok(m) => m,
            Err(e) => {
                println!("checkpoint {} INVALID: {e}", c.checkpoint);
                continue;
            }
        };
        let files = match dir.validate_checkpoint(manifest) {
            Ok(files) => files,
            Err(e) => {
                println!("checkpoint {} {:?} INVALID: {e}", c.checkpoint, manifest.kind);
                continue;
            }
        };
        newest_complete |= i == 0;
        let bytes: u64 = manifest.shards.iter().map(|s| s.size).sum();
        println!(
            "checkpoint {} {:?} complete: {} shards, {} key groups, {bytes} bytes, format {}, created {} ms",
            c.checkpoint,
            manifest.kind,
            manifest.shard_count,
            manifest.max_key_groups,
            manifest.format_version,
            manifest.created_unix_ms,
        );
        for (shard, file) in manifest.shards.iter().zip(&files) {
            println!(
                "  shard {} {}: key groups {}..={}, {} bytes, watermark {}",
                shard.shard,
                shard.file,
                shard.key_groups.start().0,
                shard.key_groups.end().0,
                shard.size,
                shard.watermark
            );
            for (operator, snapshot) in keyed_snapshots(&dir.path().join(&shard.file), file)? {
                let states: Vec<&str> = snapshot.states().iter().map(|s| s.name.as_str()).collect();
                println!(
                    "    operator {operator}: {} keys, {} timers, states {states:?}",
                    snapshot.num_keys(),
                    snapshot.num_timers()
                );
            }
        }
    }
    Ok(newest_complete)
}
