//! State descriptors (a state's name, types, functions and TTL) and the user functions that
//! reducing and aggregating state apply.

use std::fmt;
use std::marker::PhantomData;
use std::rc::Rc;

use super::ttl::StateTtlConfig;

/// The combining function of a [`ReducingState`](super::ReducingState) (Flink's `ReduceFunction`).
///
/// Every `Fn(T, T) -> T` closure is one; implement it on a named type to get a reducing state
/// whose function call is monomorphized (see
/// [`ReducingStateDescriptor::from_reduce_function`]).
pub trait ReduceFunction<T> {
    /// Folds `value` into `accumulator`: `accumulator` is what the state holds, `value` is what
    /// `add` was given.
    fn reduce(&self, accumulator: T, value: T) -> T;
}

impl<T, F: Fn(T, T) -> T> ReduceFunction<T> for F {
    #[inline]
    fn reduce(&self, accumulator: T, value: T) -> T {
        self(accumulator, value)
    }
}

/// A boxed reduce function: the default function type of [`ReducingState`](super::ReducingState),
/// so that `ReducingState<T>` can be named in a struct field whatever closure it was declared with.
/// Its call is one indirect call per `add`.
pub struct ReduceFn<T>(Rc<dyn Fn(T, T) -> T>);

impl<T> ReduceFn<T> {
    /// Boxes `f`.
    pub fn new(f: impl Fn(T, T) -> T + 'static) -> Self {
        ReduceFn(Rc::new(f))
    }
}

impl<T> ReduceFunction<T> for ReduceFn<T> {
    #[inline]
    fn reduce(&self, accumulator: T, value: T) -> T {
        (self.0)(accumulator, value)
    }
}

impl<T> Clone for ReduceFn<T> {
    fn clone(&self) -> Self {
        ReduceFn(Rc::clone(&self.0))
    }
}

impl<T> fmt::Debug for ReduceFn<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReduceFn(..)")
    }
}

/// The function of an [`AggregatingState`](super::AggregatingState) (Flink's `AggregateFunction`
/// without `merge`, which only session windows need): values of type `In` are added to an
/// accumulator, and reads return `result(&accumulator)`.
///
/// ```
/// use pinwheel_engine::state::AggregateFunction;
///
/// /// The average of the values added.
/// struct Average;
///
/// impl AggregateFunction for Average {
///     type In = i64;
///     type Acc = (i64, u64);
///     type Out = f64;
///
///     fn create_accumulator(&self) -> (i64, u64) {
///         (0, 0)
///     }
///     fn add(&self, value: i64, acc: &mut (i64, u64)) {
///         acc.0 += value;
///         acc.1 += 1;
///     }
///     fn result(&self, acc: &(i64, u64)) -> f64 {
///         acc.0 as f64 / acc.1 as f64
///     }
/// }
/// ```
pub trait AggregateFunction {
    /// What `add` takes.
    type In;
    /// The accumulator stored per key.
    type Acc: Clone;
    /// What `get` returns.
    type Out;

    /// A fresh accumulator: called by the first `add` for a key (and the first after a `clear` or
    /// an expiry).
    fn create_accumulator(&self) -> Self::Acc;
    /// Adds `value` to `acc`, in place.
    fn add(&self, value: Self::In, acc: &mut Self::Acc);
    /// The result for `acc`.
    fn result(&self, acc: &Self::Acc) -> Self::Out;
}

/// Implements the shared parts of a descriptor: `with_ttl`, `name`, `ttl`.
macro_rules! descriptor_common {
    ($ty:ident < $($p:ident),* >) => {
        impl<$($p),*> $ty<$($p),*> {
            /// Gives the state a time-to-live (docs/semantics.md A3.10). A config whose update type is
            /// [`UpdateType::Disabled`](super::UpdateType::Disabled) means no TTL.
            pub fn with_ttl(mut self, ttl: StateTtlConfig) -> Self {
                self.ttl = Some(ttl);
                self
            }

            /// The state's name, unique within its operator.
            pub fn name(&self) -> &str {
                &self.name
            }

            /// The TTL configuration, if any.
            pub fn ttl(&self) -> Option<&StateTtlConfig> {
                self.ttl.as_ref()
            }
        }
    };
}

/// Describes a [`ValueState<T>`](super::ValueState): one value per key.
///
/// ```
/// use pinwheel_engine::state::ValueStateDescriptor;
/// let count = ValueStateDescriptor::<u64>::new("count");
/// assert_eq!(count.name(), "count");
/// ```
pub struct ValueStateDescriptor<T> {
    pub(super) name: String,
    pub(super) ttl: Option<StateTtlConfig>,
    _type: PhantomData<fn() -> T>,
}

impl<T> ValueStateDescriptor<T> {
    /// A value state called `name`, without TTL.
    pub fn new(name: impl Into<String>) -> Self {
        ValueStateDescriptor { name: name.into(), ttl: None, _type: PhantomData }
    }
}

descriptor_common!(ValueStateDescriptor<T>);

/// Describes a [`ListState<T>`](super::ListState): a list of values per key.
pub struct ListStateDescriptor<T> {
    pub(super) name: String,
    pub(super) ttl: Option<StateTtlConfig>,
    _type: PhantomData<fn() -> T>,
}

impl<T> ListStateDescriptor<T> {
    /// A list state called `name`, without TTL.
    pub fn new(name: impl Into<String>) -> Self {
        ListStateDescriptor { name: name.into(), ttl: None, _type: PhantomData }
    }
}

descriptor_common!(ListStateDescriptor<T>);

/// Describes a [`MapState<K, V>`](super::MapState): a map per key.
pub struct MapStateDescriptor<K, V> {
    pub(super) name: String,
    pub(super) ttl: Option<StateTtlConfig>,
    _type: PhantomData<fn() -> (K, V)>,
}

impl<K, V> MapStateDescriptor<K, V> {
    /// A map state called `name`, without TTL.
    pub fn new(name: impl Into<String>) -> Self {
        MapStateDescriptor { name: name.into(), ttl: None, _type: PhantomData }
    }
}

descriptor_common!(MapStateDescriptor<K, V>);

/// Describes a [`ReducingState<T, F>`](super::ReducingState): one value per key, into which every
/// `add` folds its argument with the reduce function `F`.
///
/// [`new`](ReducingStateDescriptor::new) takes any closure and boxes it (`F` is then
/// [`ReduceFn<T>`], so the state's type is simply `ReducingState<T>`);
/// [`from_reduce_function`](ReducingStateDescriptor::from_reduce_function) keeps the function's
/// own type, for a monomorphized call.
///
/// ```
/// use pinwheel_engine::state::ReducingStateDescriptor;
/// let sum = ReducingStateDescriptor::new("sum", |a: i64, b: i64| a + b);
/// assert_eq!(sum.name(), "sum");
/// ```
pub struct ReducingStateDescriptor<T, F = ReduceFn<T>> {
    pub(super) name: String,
    pub(super) ttl: Option<StateTtlConfig>,
    pub(super) function: F,
    _type: PhantomData<fn(T, T) -> T>,
}

impl<T: 'static> ReducingStateDescriptor<T> {
    /// A reducing state called `name` that folds with `reduce(accumulator, value)`, without TTL.
    pub fn new(name: impl Into<String>, reduce: impl Fn(T, T) -> T + 'static) -> Self {
        ReducingStateDescriptor::from_reduce_function(name, ReduceFn::new(reduce))
    }
}

impl<T, F: ReduceFunction<T>> ReducingStateDescriptor<T, F> {
    /// A reducing state called `name` whose function keeps its own type `F`, so that `add` calls
    /// it directly; the state is a `ReducingState<T, F>`.
    pub fn from_reduce_function(name: impl Into<String>, function: F) -> Self {
        ReducingStateDescriptor { name: name.into(), ttl: None, function, _type: PhantomData }
    }
}

descriptor_common!(ReducingStateDescriptor<T, F>);

/// Describes an [`AggregatingState<A>`](super::AggregatingState): one accumulator per key, built by
/// the [`AggregateFunction`] `A`.
pub struct AggregatingStateDescriptor<A> {
    pub(super) name: String,
    pub(super) ttl: Option<StateTtlConfig>,
    pub(super) function: A,
}

impl<A: AggregateFunction> AggregatingStateDescriptor<A> {
    /// An aggregating state called `name` that aggregates with `function`, without TTL.
    pub fn new(name: impl Into<String>, function: A) -> Self {
        AggregatingStateDescriptor { name: name.into(), ttl: None, function }
    }
}

descriptor_common!(AggregatingStateDescriptor<A>);

// Debug and Clone by hand: the derives would require `T: Debug`/`T: Clone` of the value types,
// which a descriptor does not hold.

impl<T> fmt::Debug for ValueStateDescriptor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValueStateDescriptor")
            .field("name", &self.name)
            .field("type", &std::any::type_name::<T>())
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl<T> Clone for ValueStateDescriptor<T> {
    fn clone(&self) -> Self {
        ValueStateDescriptor { name: self.name.clone(), ttl: self.ttl, _type: PhantomData }
    }
}

impl<T> fmt::Debug for ListStateDescriptor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListStateDescriptor")
            .field("name", &self.name)
            .field("type", &std::any::type_name::<T>())
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl<T> Clone for ListStateDescriptor<T> {
    fn clone(&self) -> Self {
        ListStateDescriptor { name: self.name.clone(), ttl: self.ttl, _type: PhantomData }
    }
}

impl<K, V> fmt::Debug for MapStateDescriptor<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapStateDescriptor")
            .field("name", &self.name)
            .field("key_type", &std::any::type_name::<K>())
            .field("value_type", &std::any::type_name::<V>())
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl<K, V> Clone for MapStateDescriptor<K, V> {
    fn clone(&self) -> Self {
        MapStateDescriptor { name: self.name.clone(), ttl: self.ttl, _type: PhantomData }
    }
}

impl<T, F> fmt::Debug for ReducingStateDescriptor<T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReducingStateDescriptor")
            .field("name", &self.name)
            .field("type", &std::any::type_name::<T>())
            .field("function", &std::any::type_name::<F>())
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl<T, F: Clone> Clone for ReducingStateDescriptor<T, F> {
    fn clone(&self) -> Self {
        ReducingStateDescriptor {
            name: self.name.clone(),
            ttl: self.ttl,
            function: self.function.clone(),
            _type: PhantomData,
        }
    }
}

impl<A> fmt::Debug for AggregatingStateDescriptor<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggregatingStateDescriptor")
            .field("name", &self.name)
            .field("function", &std::any::type_name::<A>())
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl<A: Clone> Clone for AggregatingStateDescriptor<A> {
    fn clone(&self) -> Self {
        AggregatingStateDescriptor {
            name: self.name.clone(),
            ttl: self.ttl,
            function: self.function.clone(),
        }
    }
}
