//! The shard driver: the loop a shard thread runs. The shard's work is a list of [`Task`]s (in a
//! pipeline, one per sink, each pulling its chain of stages: sources, exchange rings, operators);
//! every loop turn reads the clock once and gives each unfinished task one turn.
//!
//! When no task has anything to do, the shard idles in three steps ([`IdlePolicy`]): it spins for
//! a few turns, then yields its core for a while (still looking for work between yields, which
//! keeps latency at a few microseconds under light but steady load), then **parks until work
//! arrives**: a peer pushing into one of its rings, a push source, a moved manual clock or a stop
//! request wakes it through its [`ShardWaker`](super::ShardWaker). A parked shard also wakes for
//! the earliest processing-time instant a task asked for ([`Turn::wake_at`]), and at the latest
//! after [`IdlePolicy::max_park`], a backstop for custom sources that wait on something the engine
//! cannot see.

use std::time::{Duration, Instant};

// The stop flag is a plain `std` atomic: it is read once per turn, not a protocol to model-check.
use std::sync::atomic::{AtomicBool, Ordering};

use super::waker::{Parker, ShardWaker};
use crate::time::{Clock, Timestamp};

/// What one turn of a task came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    /// It made progress, or may have more to do right away: give it another turn soon.
    Busy,
    /// Nothing to do until input arrives or time passes (after asking, if it must be woken at a
    /// given processing time, with [`Turn::wake_at`]).
    Idle,
    /// It has ended; it gets no more turns.
    Done,
}

/// What a task sees of the loop turn it runs in: the processing time, read once per turn, and
/// where to ask for a wake-up.
#[derive(Debug)]
pub struct Turn {
    now: Timestamp,
    wake_at: Option<Timestamp>,
    waker: ShardWaker,
}

impl Turn {
    /// A turn at processing time `now`, on the shard that `waker` wakes.
    pub fn new(now: Timestamp, waker: ShardWaker) -> Self {
        Turn { now, wake_at: None, waker }
    }

    /// Processing time (epoch milliseconds), read once per loop turn.
    #[inline]
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Starts the next turn at `now`.
    pub fn restart(&mut self, now: Timestamp) {
        self.now = now;
        self.wake_at = None;
    }

    /// Asks the shard to look again no later than processing time `t` (a pending timer, a source
    /// pacing itself). `t <= now()` means "keep looking": the shard spins and yields but does not
    /// park.
    #[inline]
    pub fn wake_at(&mut self, t: Timestamp) {
        self.wake_at = Some(self.wake_at.map_or(t, |w| w.min(t)));
    }

    /// The earliest wake-up asked for during this turn.
    pub fn next_wake(&self) -> Option<Timestamp> {
        self.wake_at
    }

    /// This shard's waker: hand it to whatever produces a source's data on another thread.
    pub fn waker(&self) -> &ShardWaker {
        &self.waker
    }
}

/// A shard's unit of work: it gets one turn per loop turn until it is done.
pub trait Task {
    /// What a turn can fail with.
    type Error;

    /// Does a bounded amount of work.
    fn turn(&mut self, cx: &mut Turn) -> Result<TaskStatus, Self::Error>;
}

impl<T: Task + ?Sized> Task for Box<T> {
    type Error = T::Error;

    #[inline]
    fn turn(&mut self, cx: &mut Turn) -> Result<TaskStatus, Self::Error> {
        (**self).turn(cx)
    }
}

/// How a shard with nothing to do waits for work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdlePolicy {
    /// Idle turns spent spinning before yielding.
    pub spin_turns: u32,
    /// How long the shard keeps yielding (and looking for work between yields) after its last
    /// work before it parks. Longer keeps latency lower under light load, at the price of a core
    /// busy with yields.
    pub yield_for: Duration,
    /// The longest single park: the backstop for tasks that wait on something that does not wake
    /// the shard.
    pub max_park: Duration,
}

impl Default for IdlePolicy {
    /// Spin 64 turns, yield for 1 ms, park for at most 50 ms at a time.
    fn default() -> Self {
        IdlePolicy {
            spin_turns: 64,
            yield_for: Duration::from_millis(1),
            max_park: Duration::from_millis(50),
        }
    }
}

/// Why [`drive`] returned before every task was done.
#[derive(Debug, PartialEq, Eq)]
pub enum DriveError<E> {
    /// A task failed.
    Task(E),
    /// The stop flag was raised.
    Stopped,
}

/// Runs `tasks` on the calling thread until every one is done, the stop flag is raised, or a task
/// fails (the first error is returned; the other tasks get no more turns). `waker` is this shard's
/// waker: the calling thread becomes the thread it wakes. See the [shard module docs](super).
pub fn drive<T: Task>(
    tasks: &mut [T],
    clock: &dyn Clock,
    waker: &ShardWaker,
    stop: &AtomicBool,
    policy: IdlePolicy,
) -> Result<(), DriveError<T::Error>> {
    let parker = waker.parker();
    clock.notify_on_change(waker);
    let mut done = vec![false; tasks.len()];
    let mut open = tasks.len();
    let mut cx = Turn::new(clock.now(), waker.clone());
    let mut idle = Idle::default();
    while open > 0 {
        cx.restart(clock.now());
        let busy = turn_all(tasks, &mut done, &mut open, &mut cx)?;
        if stop.load(Ordering::Relaxed) {
            return Err(DriveError::Stopped);
        }
        if busy || open == 0 {
            idle = Idle::default();
            continue;
        }
        match idle.step(&policy) {
            Step::Spin => std::hint::spin_loop(),
            Step::Yield => std::thread::yield_now(),
            Step::Park => {
                park(tasks, &mut done, &mut open, &mut cx, clock, &parker, stop, &policy)?;
                idle = Idle::default();
            }
        }
    }
    Ok(())
}

/// One turn of every unfinished task; returns whether any was busy (a task that finished counts).
#[inline]
fn turn_all<T: Task>(
    tasks: &mut [T],
    done: &mut [bool],
    open: &mut usize,
    cx: &mut Turn,
) -> Result<bool, DriveError<T::Error>> {
    let mut busy = false;
    for (task, done) in tasks.iter_mut().zip(done.iter_mut()) {
        if *done {
            continue;
        }
        match task.turn(cx).map_err(DriveError::Task)? {
            TaskStatus::Busy => busy = true,
            TaskStatus::Idle => {}
            TaskStatus::Done => {
                *done = true;
                *open -= 1;
                busy = true;
            }
        }
    }
    Ok(busy)
}

/// Announces the park, looks for work once more, and parks if there is none (until woken, the
/// earliest wake-up asked for, or the backstop).
#[allow(clippy::too_many_arguments)] // the loop's own state, split out of `drive` for clarity
fn park<T: Task>(
    tasks: &mut [T],
    done: &mut [bool],
    open: &mut usize,
    cx: &mut Turn,
    clock: &dyn Clock,
    parker: &Parker,
    stop: &AtomicBool,
    policy: &IdlePolicy,
) -> Result<(), DriveError<T::Error>> {
    parker.prepare();
    cx.restart(clock.now());
    let busy = match turn_all(tasks, done, open, cx) {
        Ok(busy) => busy,
        Err(e) => {
            parker.cancel();
            return Err(e);
        }
    };
    if busy || *open == 0 || stop.load(Ordering::Relaxed) {
        parker.cancel();
        return Ok(());
    }
    let timeout = match cx.next_wake() {
        Some(t) if t <= cx.now() => {
            // Something is due now: stay awake.
            parker.cancel();
            std::thread::yield_now();
            return Ok(());
        }
        Some(t) => {
            let ms = u64::try_from(t.saturating_sub(cx.now())).unwrap_or(u64::MAX);
            Duration::from_millis(ms).min(policy.max_park)
        }
        None => policy.max_park,
    };
    parker.park(timeout);
    Ok(())
}

/// Where an idle shard is in the spin → yield → park sequence.
#[derive(Debug, Default)]
struct Idle {
    turns: u32,
    /// When the yielding started.
    yielding_since: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Spin,
    Yield,
    Park,
}

impl Idle {
    fn step(&mut self, policy: &IdlePolicy) -> Step {
        self.turns = self.turns.saturating_add(1);
        if self.turns <= policy.spin_turns {
            return Step::Spin;
        }
        let since = *self.yielding_since.get_or_insert_with(Instant::now);
        if since.elapsed() < policy.yield_for { Step::Yield } else { Step::Park }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::time::ManualClock;

    /// Counts down, idling (with a wake-up request) every other turn.
    struct Countdown {
        left: u32,
        turns: u32,
    }

    impl Task for Countdown {
        type Error = String;
        fn turn(&mut self, cx: &mut Turn) -> Result<TaskStatus, String> {
            self.turns += 1;
            if self.left == 0 {
                return Ok(TaskStatus::Done);
            }
            self.left -= 1;
            if self.left == 7 {
                return Err("seven".to_string());
            }
            if self.turns % 2 == 0 {
                cx.wake_at(cx.now());
                return Ok(TaskStatus::Idle);
            }
            Ok(TaskStatus::Busy)
        }
    }

    #[test]
    fn every_task_runs_until_done() {
        let mut tasks = vec![Countdown { left: 3, turns: 0 }, Countdown { left: 5, turns: 0 }];
        let stop = AtomicBool::new(false);
        drive(&mut tasks, &ManualClock::new(0), &ShardWaker::new(), &stop, IdlePolicy::default())
            .unwrap();
        assert!(tasks.iter().all(|t| t.left == 0));
    }

    #[test]
    fn the_first_error_stops_the_shard() {
        let mut tasks = vec![Countdown { left: 9, turns: 0 }];
        let stop = AtomicBool::new(false);
        let r =
            drive(&mut tasks, &ManualClock::new(0), &ShardWaker::new(), &stop, Default::default());
        assert_eq!(r, Err(DriveError::Task("seven".to_string())));
    }

    /// Idle until a flag is raised by another thread, which then wakes the shard.
    struct WaitFor(Arc<AtomicBool>);

    impl Task for WaitFor {
        type Error = ();
        fn turn(&mut self, _: &mut Turn) -> Result<TaskStatus, ()> {
            Ok(if self.0.load(Ordering::Acquire) { TaskStatus::Done } else { TaskStatus::Idle })
        }
    }

    #[test]
    fn a_parked_shard_wakes_for_work_not_for_the_backstop() {
        let flag = Arc::new(AtomicBool::new(false));
        let waker = ShardWaker::new();
        let (w, f) = (waker.clone(), flag.clone());
        let producer = std::thread::spawn(move || {
            while !w.is_parked() {
                std::thread::yield_now();
            }
            f.store(true, Ordering::Release);
            w.wake();
        });
        // A backstop of an hour: the test only ends because the producer's wake is not lost.
        let policy = IdlePolicy {
            spin_turns: 1,
            yield_for: Duration::ZERO,
            max_park: Duration::from_secs(3600),
        };
        let stop = AtomicBool::new(false);
        drive(&mut [WaitFor(flag)], &ManualClock::new(0), &waker, &stop, policy).unwrap();
        producer.join().unwrap();
    }

    #[test]
    fn a_stop_request_ends_the_loop() {
        let stop = AtomicBool::new(true);
        let r = drive(
            &mut [WaitFor(Arc::new(AtomicBool::new(false)))],
            &ManualClock::new(0),
            &ShardWaker::new(),
            &stop,
            IdlePolicy::default(),
        );
        assert_eq!(r, Err(DriveError::Stopped));
    }
}
