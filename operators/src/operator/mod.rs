//! Operators: user functions on their backends, with contexts, outputs and errors.
//!
//! * [`keyed`]: a keyed process function on the engine's keyed backend;
//! * [`process`]: a non-keyed process function;
//! * [`site`]: which operator's user code a shard runs, for panic reports.

pub(crate) mod keyed;
pub(crate) mod process;
pub(crate) mod site;

pub(crate) use keyed::{ADVANCE_CHUNK, KeyedInput, KeyedOperator};
pub(crate) use process::ProcessOperator;
