//! Shard threads: one thread per shard, pinned per the [`ShardPlacement`], each running the same
//! closure on its own shard index.
//!
//! This module only starts, pins and joins the threads and turns a panic into a typed error naming
//! the shard; what a shard does on its thread is the [driver](super::driver)'s business.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::placement::{PlacementError, ShardPlacement, pin_current_thread};

/// What a shard knows about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardContext {
    /// This shard's index, `0..count`.
    pub index: usize,
    /// The number of shards.
    pub count: usize,
    /// The core this shard is pinned to, if it is pinned.
    pub core: Option<usize>,
}

/// Errors of the shard runner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// The placement cannot be satisfied.
    #[error(transparent)]
    Placement(#[from] PlacementError),
    /// The operating system refused to start a thread.
    #[error("cannot start the thread of shard {shard}: {message}")]
    Spawn {
        /// The shard.
        shard: usize,
        /// The OS error.
        message: String,
    },
    /// A shard's closure panicked.
    #[error("shard {shard} panicked: {message}")]
    Panicked {
        /// The shard.
        shard: usize,
        /// The panic message, if it was a string.
        message: String,
    },
}

/// The outcome of [`run_shards`]: each shard's result, in shard order, and the placement note
/// (where pinning degraded, it says so).
#[derive(Debug)]
pub struct ShardRun<R> {
    /// Each shard's result.
    pub results: Vec<Result<R, ShardError>>,
    /// Why the placement differs from what was asked, if it does.
    pub placement_note: Option<String>,
}

/// Runs `f` on every shard of `placement`, each on its own (pinned, where possible) thread, and
/// waits for all of them. A panic in one shard becomes [`ShardError::Panicked`] for that shard; the
/// others run on (the closure is expected to watch a shared stop flag).
pub fn run_shards<R, F>(
    placement: &ShardPlacement,
    name: &str,
    f: F,
) -> Result<ShardRun<R>, ShardError>
where
    R: Send,
    F: Fn(ShardContext) -> R + Sync,
{
    let plan = placement.plan()?;
    let count = plan.shards;
    let f = &f;
    let results = std::thread::scope(|scope| {
        let mut handles = Vec::with_capacity(count);
        for (index, core) in plan.cores.iter().copied().enumerate() {
            let builder = std::thread::Builder::new().name(format!("{name}-shard-{index}"));
            let handle = builder.spawn_scoped(scope, move || {
                let core = core.filter(|&c| pin_current_thread(c));
                let cx = ShardContext { index, count, core };
                catch_unwind(AssertUnwindSafe(|| f(cx)))
                    .map_err(|p| ShardError::Panicked { shard: index, message: panic_message(&*p) })
            });
            handles.push(
                handle.map_err(|e| ShardError::Spawn { shard: index, message: e.to_string() }),
            );
        }
        handles
            .into_iter()
            .enumerate()
            .map(|(shard, h)| match h {
                Ok(h) => h.join().unwrap_or_else(|p| {
                    Err(ShardError::Panicked { shard, message: panic_message(&*p) })
                }),
                Err(e) => Err(e),
            })
            .collect()
    });
    Ok(ShardRun { results, placement_note: plan.note })
}

/// The message of a panic payload, if it is a string.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shard_runs_once_with_its_index() {
        let run = run_shards(&ShardPlacement::Unpinned(4), "t", |cx| (cx.index, cx.count)).unwrap();
        let got: Vec<_> = run.results.into_iter().map(Result::unwrap).collect();
        assert_eq!(got, vec![(0, 4), (1, 4), (2, 4), (3, 4)]);
    }

    #[test]
    fn a_panic_is_reported_for_its_shard_only() {
        let run = run_shards(&ShardPlacement::Unpinned(2), "t", |cx| {
            if cx.index == 1 {
                panic!("boom in shard 1");
            }
            cx.index
        })
        .unwrap();
        assert_eq!(run.results[0], Ok(0));
        assert_eq!(
            run.results[1],
            Err(ShardError::Panicked { shard: 1, message: "boom in shard 1".to_string() })
        );
    }
}
