//! The process-function traits users implement, and closure shortcuts for small functions.

use std::fmt;
use std::marker::PhantomData;

use pinwheel_engine::key::Key;
use pinwheel_engine::time::Timestamp;

use crate::context::{Context, OnTimerContext, OpenContext, ProcessContext};
use crate::error::FnError;
use crate::output::Collector;

/// Flink's `KeyedProcessFunction`: processes each element of a keyed stream with keyed state and
/// timers scoped to the element's key.
///
/// Only `process_element` is required. The runtime guarantees, per operator instance:
///
/// * `open` runs once before anything else; declare keyed state there.
/// * `process_element` and `on_timer` never run concurrently, and keyed state and
///   `current_key()` are those of the element's key, or of the timer's key in `on_timer`.
/// * All event-time timers `<= W` fire (in timestamp order; equal timestamps in registration
///   order) before the watermark `W` is forwarded, and timers registered from `on_timer` that are
///   due at `W` fire in the same advance (docs/semantics.md A1.10, A2.2).
/// * At the end of input the watermark `i64::MAX` fires every pending event-time timer; pending
///   processing-time timers are dropped unless [`EndOfInputTimers::Fire`](crate::EndOfInputTimers)
///   is set. Then `close` runs.
///
/// An instance lives on one shard: it is built there by the factory given to
/// [`KeyedStream::process`](crate::pipeline::KeyedStream::process), so it need not be `Send`.
pub trait KeyedProcessFunction {
    /// The key type (`Send + Sync`: a checkpoint reads the keys it froze at a barrier off the
    /// shard while the shard goes on).
    type Key: Key + Send + Sync;
    /// The input element type.
    type In;
    /// The output element type.
    type Out;

    /// Called once before the first element; declare state here.
    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        let _ = ctx;
        Ok(())
    }

    /// Processes one element.
    fn process_element(
        &mut self,
        value: Self::In,
        ctx: &mut Context<'_, Self::Key>,
        out: &mut Collector<'_, Self::Out>,
    ) -> Result<(), FnError>;

    /// Called when a timer of the current key fires. `timestamp` is the timer's timestamp.
    fn on_timer(
        &mut self,
        timestamp: Timestamp,
        ctx: &mut OnTimerContext<'_, Self::Key>,
        out: &mut Collector<'_, Self::Out>,
    ) -> Result<(), FnError> {
        let _ = (timestamp, ctx, out);
        Ok(())
    }

    /// Called once after the last element and timer.
    fn close(&mut self) -> Result<(), FnError> {
        Ok(())
    }
}

/// Flink's (non-keyed) `ProcessFunction`: no keyed state and no timers, but the element's
/// timestamp, the current watermark and processing time, and side outputs.
pub trait ProcessFunction {
    /// The input element type.
    type In;
    /// The output element type.
    type Out;

    /// Called once before the first element. Declaring keyed state here fails with
    /// [`StateError::NoKeyedContext`](pinwheel_engine::state::StateError::NoKeyedContext).
    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        let _ = ctx;
        Ok(())
    }

    /// Processes one element.
    fn process_element(
        &mut self,
        value: Self::In,
        ctx: &mut ProcessContext<'_>,
        out: &mut Collector<'_, Self::Out>,
    ) -> Result<(), FnError>;

    /// Called once after the last element.
    fn close(&mut self) -> Result<(), FnError> {
        Ok(())
    }
}

/// A keyed process function made of closures; see [`process_fn`].
pub struct KeyedFn<K, I, O, P, T> {
    on_element: P,
    on_timer: T,
    _types: PhantomData<fn(K, I) -> O>,
}

/// The `on_timer` of a [`KeyedFn`] without one.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTimers;

/// A keyed process function from a closure: `process_fn(|value, ctx, out| { ...; Ok(()) })`.
///
/// Add an `on_timer` with [`KeyedFn::on_timer`]. For state, implement [`KeyedProcessFunction`]
/// (state is declared in `open`).
///
/// ```
/// use pinwheel_operators::{process_fn, Context, Collector, FnError};
/// let f = process_fn(|v: u64, ctx: &mut Context<'_, u64>, out: &mut Collector<'_, u64>| {
///     let ts = ctx.timestamp().unwrap_or(0);
///     ctx.timer_service().register_event_time_timer(ts.saturating_add(1_000))?;
///     out.collect(v * 2);
///     Ok::<(), FnError>(())
/// });
/// # let _ = f;
/// ```
pub fn process_fn<K, I, O, P>(on_element: P) -> KeyedFn<K, I, O, P, NoTimers>
where
    K: Key,
    P: FnMut(I, &mut Context<'_, K>, &mut Collector<'_, O>) -> Result<(), FnError>,
{
    KeyedFn { on_element, on_timer: NoTimers, _types: PhantomData }
}

impl<K, I, O, P> KeyedFn<K, I, O, P, NoTimers> {
    /// Adds an `on_timer` closure.
    pub fn on_timer<T>(self, on_timer: T) -> KeyedFn<K, I, O, P, T>
    where
        T: FnMut(
            Timestamp,
            &mut OnTimerContext<'_, K>,
            &mut Collector<'_, O>,
        ) -> Result<(), FnError>,
    {
        KeyedFn { on_element: self.on_element, on_timer, _types: PhantomData }
    }
}

impl<K, I, O, P, T> fmt::Debug for KeyedFn<K, I, O, P, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedFn").finish_non_exhaustive()
    }
}

/// The timer half of a [`KeyedFn`].
pub trait TimerCallback<K, O> {
    /// Runs the callback.
    fn call(
        &mut self,
        timestamp: Timestamp,
        ctx: &mut OnTimerContext<'_, K>,
        out: &mut Collector<'_, O>,
    ) -> Result<(), FnError>;
}

impl<K, O> TimerCallback<K, O> for NoTimers {
    fn call(
        &mut self,
        _: Timestamp,
        _: &mut OnTimerContext<'_, K>,
        _: &mut Collector<'_, O>,
    ) -> Result<(), FnError> {
        Ok(())
    }
}

impl<K, O, T> TimerCallback<K, O> for T
where
    T: FnMut(Timestamp, &mut OnTimerContext<'_, K>, &mut Collector<'_, O>) -> Result<(), FnError>,
{
    fn call(
        &mut self,
        timestamp: Timestamp,
        ctx: &mut OnTimerContext<'_, K>,
        out: &mut Collector<'_, O>,
    ) -> Result<(), FnError> {
        self(timestamp, ctx, out)
    }
}

impl<K, I, O, P, T> KeyedProcessFunction for KeyedFn<K, I, O, P, T>
where
    K: Key + Send + Sync,
    P: FnMut(I, &mut Context<'_, K>, &mut Collector<'_, O>) -> Result<(), FnError>,
    T: TimerCallback<K, O>,
{
    type Key = K;
    type In = I;
    type Out = O;

    #[inline]
    fn process_element(
        &mut self,
        value: I,
        ctx: &mut Context<'_, K>,
        out: &mut Collector<'_, O>,
    ) -> Result<(), FnError> {
        (self.on_element)(value, ctx, out)
    }

    fn on_timer(
        &mut self,
        timestamp: Timestamp,
        ctx: &mut OnTimerContext<'_, K>,
        out: &mut Collector<'_, O>,
    ) -> Result<(), FnError> {
        self.on_timer.call(timestamp, ctx, out)
    }
}
