//! Shards: the threads the engine runs on, the loop each one runs, and how an idle one is woken.
//!
//! A shard owns everything it touches on the data path (its operators' keys, state and timers,
//! its ends of the exchange rings); shards talk only through the exchange rings.
//!
//! * [`threads`](run_shards): one thread per shard, pinned per the placement, joined, with panics
//!   turned into typed errors naming the shard;
//! * [`driver`](drive): the loop on each shard thread: tasks taking turns, the clock read once
//!   per turn, and the idle policy (spin, yield, park);
//! * [`waker`](ShardWaker): parking until work arrives, without lost wake-ups.

mod driver;
mod threads;
mod waker;

pub use driver::{DriveError, IdlePolicy, Task, TaskStatus, Turn, drive};
pub use threads::{ShardContext, ShardError, ShardRun, panic_message, run_shards};
pub use waker::{Parker, ShardWaker};
