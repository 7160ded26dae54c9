//! Shard placement: how many shard threads run, and which core each one is pinned to.
//!
//! Placement is data ([`ShardPlacement`], glommio's `Placement` idea):
//! the runtime turns it into a [`PlacementPlan`] with [`ShardPlacement::plan`], starts one thread per
//! shard, and each thread pins itself with [`pin_current_thread`].
//!
//! **Degrade, don't fail.** Every placement that names at least one shard can run: where a core
//! asked for is not available to this process (it does not exist, or the process's affinity mask
//! excludes it), or where the cores cannot be listed at all, the shard runs unpinned and the plan's
//! [`note`](PlacementPlan::note) says so, for the runtime to log or print. A test box or a laptop
//! with 2 cores therefore runs any configuration. Only a placement with no shard at all is an error.
//!
//! Pinning is the process's business, so it is opt-in: the library pins only the shard threads it
//! starts, only as the placement says, and never the caller's thread.

use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Where the shard threads run.
///
/// The default is [`ShardPlacement::PerCore`]: one shard per core available to the process, each
/// pinned to its core.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ShardPlacement {
    /// This many shards, none pinned; the operating system schedules them. The right choice when
    /// the machine is shared (CI, a laptop, a container with a CPU quota but no cpuset).
    Unpinned(usize),
    /// One shard per listed core id, shard `i` pinned to core `ids[i]`, in order. A core that is
    /// not available leaves its shard unpinned (with a note). Listing a core twice puts two shards
    /// on it (with a note).
    Fixed(Vec<usize>),
    /// One shard per core available to the process (its affinity mask), each pinned to its core.
    /// If the cores cannot be listed, as many unpinned shards as
    /// `std::thread::available_parallelism` reports (at least 1), with a note.
    #[default]
    PerCore,
}

/// What a [`ShardPlacement`] comes to on this machine: the shard count, the core of each shard,
/// and a note when that differs from what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementPlan {
    /// The number of shards (at least 1).
    pub shards: usize,
    /// For each shard, in shard order, the core to pin it to, or `None` to leave it unpinned.
    /// Always `shards` long.
    pub cores: Vec<Option<usize>>,
    /// Why the plan differs from what was asked (cores missing or not listable, a core shared by
    /// several shards), for the runtime to log; `None` when it is exactly what was asked.
    pub note: Option<String>,
}

/// A placement that cannot run at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlacementError {
    /// `Unpinned(0)`: a job needs at least one shard.
    #[error("the placement asks for no shard: Unpinned(n) needs n >= 1")]
    NoShards,
    /// `Fixed(vec![])`: a job needs at least one shard.
    #[error("the placement lists no core: Fixed(ids) needs at least one core id")]
    NoCores,
}

impl ShardPlacement {
    /// Plans this placement against the cores available to the calling thread (from
    /// `core_affinity::get_core_ids`, i.e. the thread's affinity mask on Linux).
    ///
    /// Call it from a thread that has not been pinned (typically the one that builds the engine):
    /// a pinned thread's mask lists only its own core.
    ///
    /// # Errors
    ///
    /// [`PlacementError::NoShards`] for `Unpinned(0)`, [`PlacementError::NoCores`] for
    /// `Fixed(vec![])`. Missing cores are not errors (see the [module docs](self)).
    pub fn plan(&self) -> Result<PlacementPlan, PlacementError> {
        let available = core_affinity::get_core_ids()
            .map(|ids| ids.into_iter().map(|c| c.id).collect::<Vec<_>>());
        self.plan_for(available.as_deref())
    }

    /// Plans this placement against an explicit list of available core ids (`None`: the cores could
    /// not be listed). [`plan`](Self::plan) calls it with the real list; tests and tools call it
    /// to see what a placement does on another machine.
    ///
    /// # Errors
    ///
    /// As for [`plan`](Self::plan).
    pub fn plan_for(&self, available: Option<&[usize]>) -> Result<PlacementPlan, PlacementError> {
        match self {
            ShardPlacement::Unpinned(0) => Err(PlacementError::NoShards),
            &ShardPlacement::Unpinned(n) => {
                Ok(PlacementPlan { shards: n, cores: vec![None; n], note: None })
            }
            ShardPlacement::Fixed(ids) if ids.is_empty() => Err(PlacementError::NoCores),
            ShardPlacement::Fixed(ids) => Ok(plan_fixed(ids, available)),
            ShardPlacement::PerCore => Ok(plan_per_core(available)),
        }
    }
}

fn plan_fixed(ids: &[usize], available: Option<&[usize]>) -> PlacementPlan {
    let shards = ids.len();
    let Some(available) = available else {
        return PlacementPlan {
            shards,
            cores: vec![None; shards],
            note: Some(format!(
                "cannot list the cores available to this process; running all {shards} shards unpinned"
            )),
        };
    };
    let mut cores = Vec::with_capacity(shards);
    let mut missing = Vec::new();
    for (shard, &id) in ids.iter().enumerate() {
        if available.contains(&id) {
            cores.push(Some(id));
        } else {
            cores.push(None);
            missing.push((shard, id));
        }
    }
    let mut notes = Vec::new();
    if !missing.is_empty() {
        let mut s = String::new();
        for (k, (shard, id)) in missing.iter().enumerate() {
            let sep = if k == 0 { "" } else { ", " };
            let _ = write!(s, "{sep}shard {shard} (core {id})");
        }
        notes.push(format!(
            "cores not available to this process (available: {}); running unpinned: {s}",
            list(available)
        ));
    }
    let mut shared = Vec::new();
    for (k, &id) in ids.iter().enumerate() {
        let count = ids.iter().filter(|&&other| other == id).count();
        if count > 1 && !ids[..k].contains(&id) && available.contains(&id) {
            shared.push(format!("core {id} runs {count} shards"));
        }
    }
    if !shared.is_empty() {
        notes.push(shared.join(", "));
    }
    let note = if notes.is_empty() { None } else { Some(notes.join("; ")) };
    PlacementPlan { shards, cores, note }
}

fn plan_per_core(available: Option<&[usize]>) -> PlacementPlan {
    match available {
        Some(ids) if !ids.is_empty() => PlacementPlan {
            shards: ids.len(),
            cores: ids.iter().map(|&id| Some(id)).collect(),
            note: None,
        },
        _ => {
            let shards = std::thread::available_parallelism().map_or(1, |n| n.get());
            PlacementPlan {
                shards,
                cores: vec![None; shards],
                note: Some(format!(
                    "cannot list the cores available to this process; running {shards} unpinned shards \
                     (available parallelism)"
                )),
            }
        }
    }
}

fn list(ids: &[usize]) -> String {
    if ids.is_empty() {
        return "none".to_string();
    }
    ids.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
}

/// The largest core id the Linux CPU-set API can name (`CPU_SETSIZE`); `core_affinity` indexes a
/// fixed-size set with the id and would panic past it.
const CPU_SET_SIZE: usize = 1024;

/// Pins the calling thread to core `core`. Returns `false`, and leaves the thread as it was, if
/// the core does not exist, is not available to the process, or pinning is not supported here;
/// never panics.
pub fn pin_current_thread(core: usize) -> bool {
    if core >= CPU_SET_SIZE {
        return false;
    }
    // `core_affinity` is not documented as panic-free on every platform; a failure to pin must
    // degrade to running unpinned, never take the shard thread down.
    catch_unwind(AssertUnwindSafe(|| {
        core_affinity::set_for_current(core_affinity::CoreId { id: core })
    }))
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_per_core() {
        assert_eq!(ShardPlacement::default(), ShardPlacement::PerCore);
    }

    #[test]
    fn no_shards_is_an_error() {
        assert_eq!(ShardPlacement::Unpinned(0).plan(), Err(PlacementError::NoShards));
        assert_eq!(ShardPlacement::Fixed(vec![]).plan(), Err(PlacementError::NoCores));
        assert_eq!(ShardPlacement::Fixed(vec![]).plan_for(None), Err(PlacementError::NoCores));
    }

    #[test]
    fn unpinned_pins_nothing() {
        let plan = ShardPlacement::Unpinned(4).plan().unwrap();
        assert_eq!(plan, PlacementPlan { shards: 4, cores: vec![None; 4], note: None });
    }

    #[test]
    fn fixed_with_a_missing_core_degrades_with_a_note() {
        // A 2-core machine asked for cores 0, 1 and 5.
        let plan = ShardPlacement::Fixed(vec![0, 1, 5]).plan_for(Some(&[0, 1])).unwrap();
        assert_eq!(plan.shards, 3);
        assert_eq!(plan.cores, [Some(0), Some(1), None]);
        assert_eq!(
            plan.note.as_deref(),
            Some(
                "cores not available to this process (available: 0, 1); running unpinned: shard 2 (core 5)"
            )
        );
    }

    #[test]
    fn fixed_on_this_machine_with_an_impossible_core() {
        // Whatever this machine has, core 1_000_000 is not among it.
        let plan = ShardPlacement::Fixed(vec![1_000_000]).plan().unwrap();
        assert_eq!(plan.shards, 1);
        assert_eq!(plan.cores, [None]);
        assert!(plan.note.unwrap().contains("shard 0 (core 1000000)"));
    }

    #[test]
    fn fixed_all_present_has_no_note() {
        let plan = ShardPlacement::Fixed(vec![1, 0]).plan_for(Some(&[0, 1])).unwrap();
        assert_eq!(plan, PlacementPlan { shards: 2, cores: vec![Some(1), Some(0)], note: None });
    }

    #[test]
    fn fixed_with_a_shared_core_notes_it() {
        let plan = ShardPlacement::Fixed(vec![0, 0, 1]).plan_for(Some(&[0, 1])).unwrap();
        assert_eq!(plan.cores, [Some(0), Some(0), Some(1)]);
        assert_eq!(plan.note.as_deref(), Some("core 0 runs 2 shards"));
    }

    #[test]
    fn cores_not_listable_degrade_to_unpinned() {
        let plan = ShardPlacement::Fixed(vec![0, 1]).plan_for(None).unwrap();
        assert_eq!(plan.cores, [None, None]);
        assert!(plan.note.unwrap().contains("unpinned"));
        let plan = ShardPlacement::PerCore.plan_for(None).unwrap();
        assert!(plan.shards >= 1);
        assert_eq!(plan.cores, vec![None; plan.shards]);
        assert!(plan.note.is_some());
        let plan = ShardPlacement::PerCore.plan_for(Some(&[])).unwrap();
        assert!(plan.shards >= 1 && plan.note.is_some());
    }

    #[test]
    fn per_core_uses_every_available_core() {
        let plan = ShardPlacement::PerCore.plan_for(Some(&[0, 2, 3])).unwrap();
        assert_eq!(
            plan,
            PlacementPlan { shards: 3, cores: vec![Some(0), Some(2), Some(3)], note: None }
        );
        // On this machine: at least one shard, one per listed core.
        let plan = ShardPlacement::PerCore.plan().unwrap();
        assert!(plan.shards >= 1);
        assert_eq!(plan.cores.len(), plan.shards);
    }

    #[test]
    fn pinning_an_available_core_works_and_a_missing_one_fails() {
        // On a spawned thread, so the test runner's threads stay unpinned.
        std::thread::spawn(|| {
            assert!(!pin_current_thread(1_000_000));
            assert!(!pin_current_thread(usize::MAX));
            if let Some(first) = core_affinity::get_core_ids().and_then(|ids| ids.first().copied())
            {
                assert!(
                    pin_current_thread(first.id),
                    "pinning to available core {} failed",
                    first.id
                );
                let now = core_affinity::get_core_ids().unwrap();
                assert_eq!(now, [first]);
            }
        })
        .join()
        .unwrap();
    }
}
