//! Savepoints: checkpoints the embedding program asks for ([`RunningJob::savepoint`]), written
//! like any other but with the kind `Savepoint` in their manifest, so that retention never
//! deletes them (docs/reliability.md §1.8).
//!
//! A request waits here until the checkpoint thread triggers the next checkpoint as a savepoint
//! (at once if none is in flight, else right after the one that is). The requests outlive a
//! restart: a savepoint that a failure or a timeout cut short is taken again by the next attempt.
//! They are answered when the savepoint's manifest (and the commit of exactly-once output) is
//! written, or when the job ends without one.
//!
//! [`RunningJob::savepoint`]: super::RunningJob::savepoint

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

/// Why a savepoint was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SavepointError {
    /// The pipeline has no checkpointing ([`Pipeline::checkpointing`](super::Pipeline::checkpointing)):
    /// there is no directory to write a savepoint to.
    #[error("the pipeline has no checkpointing, so it cannot take a savepoint")]
    CheckpointingOff,
    /// The job ended (completed, failed or was stopped) before the savepoint was complete.
    #[error("the job ended before the savepoint was complete")]
    JobEnded,
}

/// A savepoint requested from a running job; [`wait`](Self::wait) for its id.
#[derive(Debug)]
pub struct SavepointHandle {
    answer: Receiver<Result<u64, SavepointError>>,
}

impl SavepointHandle {
    /// Waits until the savepoint is complete (its manifest durable in the checkpoint directory)
    /// and returns its id, or why it was not taken.
    ///
    /// # Errors
    ///
    /// [`SavepointError::CheckpointingOff`] or [`SavepointError::JobEnded`].
    pub fn wait(self) -> Result<u64, SavepointError> {
        self.answer.recv().unwrap_or(Err(SavepointError::JobEnded))
    }

    /// As [`wait`](Self::wait), for at most `timeout`; `None` if the savepoint is not complete
    /// by then (the request stands: wait again).
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<u64, SavepointError>> {
        match self.answer.recv_timeout(timeout) {
            Ok(answer) => Some(answer),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(Err(SavepointError::JobEnded)),
        }
    }
}

/// Where a request is answered.
pub(crate) type Waiter = Sender<Result<u64, SavepointError>>;

/// The savepoint requests of a job, shared by the program's handle and every attempt's
/// checkpoint thread.
#[derive(Debug)]
pub(crate) struct Savepoints {
    /// False without checkpointing: requests are refused at once.
    enabled: bool,
    waiting: Mutex<Vec<Waiter>>,
}

impl Savepoints {
    pub(crate) fn new(enabled: bool) -> Self {
        Savepoints { enabled, waiting: Mutex::new(Vec::new()) }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<Waiter>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new request.
    pub(crate) fn request(&self) -> SavepointHandle {
        let (tx, answer) = bounded(1);
        if self.enabled {
            self.waiting().push(tx);
        } else {
            // The receiver is alive: the send cannot fail.
            let _ = tx.send(Err(SavepointError::CheckpointingOff));
        }
        SavepointHandle { answer }
    }

    /// Whether a request waits for a savepoint to be triggered.
    pub(crate) fn is_requested(&self) -> bool {
        !self.waiting().is_empty()
    }

    /// The waiting requests, for the savepoint about to be triggered.
    pub(crate) fn take(&self) -> Vec<Waiter> {
        std::mem::take(&mut *self.waiting())
    }

    /// Requests whose savepoint was cut short: the next checkpoint is a savepoint again.
    pub(crate) fn put_back(&self, waiters: Vec<Waiter>) {
        self.waiting().extend(waiters);
    }

    /// The job has ended: every request still waiting is answered [`SavepointError::JobEnded`].
    pub(crate) fn end(&self) {
        for w in self.take() {
            // A dropped handle is fine.
            let _ = w.send(Err(SavepointError::JobEnded));
        }
    }
}

/// Answers `waiters`: savepoint `id` is complete.
pub(crate) fn answer(waiters: Vec<Waiter>, id: u64) {
    for w in waiters {
        // A dropped handle is fine.
        let _ = w.send(Ok(id));
    }
}
