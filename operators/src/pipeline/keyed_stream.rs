//! [`KeyedStream`]: a stream partitioned by key.

use std::sync::Arc;

use super::builder::Env;
use super::datastream::DataStream;
use super::process::KeyedProcessPlan;
use super::side::SideCallbacks;
use super::stage::StagePlan;
use crate::function::KeyedProcessFunction;

/// A stream partitioned by key: the records of one key go to one shard, where a keyed function
/// sees them with that key's state and timers.
#[derive(Debug)]
pub struct KeyedStream<P, KS> {
    pub(crate) plan: P,
    pub(crate) key_selector: Arc<KS>,
    pub(crate) exchange_id: u64,
    pub(crate) env: Env,
}

impl<P: StagePlan, KS> KeyedStream<P, KS> {
    /// Applies a keyed process function. `factory` builds one instance per shard, on the shard
    /// (so the function need not be `Send`): pass `MyFn::default` or `|| MyFn::new(..)`.
    pub fn process<FF, F>(self, factory: FF) -> DataStream<KeyedProcessPlan<P, KS, FF>>
    where
        KS: Fn(&P::Item) -> F::Key + Send + Sync + 'static,
        FF: Fn() -> F + Send + Sync + 'static,
        F: KeyedProcessFunction<In = P::Item>,
    {
        let plan = KeyedProcessPlan {
            upstream: self.plan,
            exchange_id: self.exchange_id,
            key_selector: self.key_selector,
            factory: Arc::new(factory),
            name: Arc::from("keyed-process"),
            side: SideCallbacks::default(),
        };
        DataStream { plan, env: self.env }
    }
}
