//! The hooks: Dioxus signals whose value is restored on reconnect and sealed on every write.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use dioxus::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use state_recovery::{Location, Slot, Source, StateKey};

use crate::session::{Scope, SealFn, Shared};

/// The schema version [`use_recoverable`] seals with and accepts. An entry of another version
/// (sealed by a [`use_slot`] with a newer one, say) starts the component fresh; to change a
/// value's type across a deploy, declare a [`Slot`] with a migration and use [`use_slot`].
pub const DEFAULT_SCHEMA: u32 = 1;

/// A signal whose value survives the worker: restored, when the page reconnects (to any worker
/// sharing the secrets), from the entry the browser kept for `location`; otherwise `init()`.
/// Every write that changes its JSON seals a new entry and sends it to the browser before the
/// render that shows it.
///
/// Name it with [`state_key!`](state_recovery::state_key): `state_key!("draft")` is the
/// module and a name, so edits around it, reformatting and moving it within its module keep
/// the entry; renaming the name or the module does not (declare a [`Slot`] with an alias for
/// that). Each instance of a component needs its own key:
/// `state_key!("row", format!("todo/{id}"))`. Two hooks with one key share the entry (the last
/// write wins). For a value whose type changes between deploys, use [`use_slot`].
///
/// Outside a [`LiveviewApp`](crate::LiveviewApp) (a test's `VirtualDom`, plain
/// dioxus-liveview) it is an ordinary signal of `init()`.
///
/// ```no_run
/// use dioxus::prelude::*;
/// use state_recovery::state_key;
/// use state_recovery_dioxus::use_recoverable;
///
/// fn draft() -> Element {
///     let mut text = use_recoverable(state_key!("draft"), String::new);
///     rsx! { textarea { value: "{text}", oninput: move |e| text.set(e.value()) } }
/// }
/// ```
pub fn use_recoverable<T>(location: Location, init: impl FnOnce() -> T) -> Signal<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    use_cell(move |shared| {
        let Some(shared) = shared else {
            return (None, init());
        };
        let key = shared.recovery().state_key(&location);
        let value = match shared.entries().get_schema::<T>(&key, DEFAULT_SCHEMA) {
            Ok(Some(opened)) => {
                shared.record(key, true);
                Some(opened.value)
            }
            Ok(None) => None,
            Err(e) => {
                shared.record(key, false);
                tracing::info!(
                    target: "state_recovery_dioxus",
                    key = %key,
                    reason = e.reason().code(),
                    "restored entry not usable; starting fresh"
                );
                None
            }
        };
        let seal: Sealer<T> = Arc::new(move |value: T| {
            Box::new(move |ctx: &state_recovery::RecoveryContext| {
                ctx.seal(key, ctx.next_revision(key), DEFAULT_SCHEMA, &value)
            }) as SealFn
        });
        (Some((key, seal)), value.unwrap_or_else(init))
    })
}

/// [`use_recoverable`] keyed by where it is called (`file:line:column`, through
/// `#[track_caller]`), for code that has no name to give. **The key changes whenever lines are
/// added above the call or it moves**, so a deploy of edited code starts it fresh: prefer
/// [`use_recoverable`] with a [`state_key!`](state_recovery::state_key) name.
#[track_caller]
pub fn use_recoverable_here<T>(init: impl FnOnce() -> T) -> Signal<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    let at = std::panic::Location::caller();
    use_recoverable(Location::new(at.file(), at.line(), at.column()), init)
}

/// A signal for a declared [`Slot`]: restored through the slot (its schema version, its
/// migrations from older versions, its aliases, its default), sealed as the version it writes
/// (encrypted if it is declared so). Declare slots once, at start-up, in the registry given to
/// the layer ([`StateRecoveryLayer::with_registry`](state_recovery::layer::StateRecoveryLayer::with_registry)).
///
/// ```no_run
/// use dioxus::prelude::*;
/// use serde::{Deserialize, Serialize};
/// use state_recovery::Slot;
/// use state_recovery_dioxus::use_slot;
///
/// #[derive(Clone, Default, Serialize, Deserialize)]
/// struct Todos { items: Vec<String> }
///
/// fn todos(slot: Slot<Todos>) -> Element {
///     let todos = use_slot(&slot);
///     rsx! { "{todos.read().items.len()} to do" }
/// }
/// ```
pub fn use_slot<T>(slot: &Slot<T>) -> Signal<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    let slot = slot.clone();
    use_cell(move |shared| {
        let Some(shared) = shared else {
            return (None, slot.default_value());
        };
        let (value, outcome) = slot.restore(shared);
        if let Some(reason) = outcome.reason() {
            tracing::info!(
                target: "state_recovery_dioxus",
                key = %slot.key(),
                reason = reason.code(),
                "slot starts fresh"
            );
        }
        let key = slot.key();
        let seal: Sealer<T> = Arc::new(move |value: T| {
            let slot = slot.clone();
            Box::new(move |ctx: &state_recovery::RecoveryContext| slot.seal(ctx, &value)) as SealFn
        });
        (Some((key, seal)), value)
    })
}

/// Makes the seal of one value.
type Sealer<T> = Arc<dyn Fn(T) -> SealFn>;

/// One hook's state: its signal, and what it last sealed (or restored) as JSON.
struct Cell<T: 'static> {
    signal: Signal<T>,
    sealing: Option<(Arc<Shared>, StateKey, Sealer<T>)>,
    last: RefCell<Option<String>>,
}

impl<T> Cell<T>
where
    T: Serialize + Clone + 'static,
{
    /// Seals the value if its JSON changed since the last seal.
    fn seal_if_changed(&self) {
        let Some((shared, key, sealer)) = &self.sealing else {
            return;
        };
        let value = self.signal.peek();
        let json = match serde_json::to_string(&*value) {
            Ok(json) => json,
            Err(e) => {
                tracing::warn!(
                    target: "state_recovery_dioxus",
                    key = %key,
                    error = %e,
                    "state does not serialize; not sealed"
                );
                return;
            }
        };
        if self.last.borrow().as_deref() == Some(json.as_str()) {
            return;
        }
        let value = value.clone();
        *self.last.borrow_mut() = Some(json);
        shared.push_seal(*key, sealer(value));
    }
}

fn use_cell<T>(
    make: impl FnOnce(Option<&Shared>) -> (Option<(StateKey, Sealer<T>)>, T),
) -> Signal<T>
where
    T: Serialize + Clone + 'static,
{
    let cell = use_hook(move || {
        let scope = try_consume_context::<Scope>();
        let (sealing, value) = make(scope.as_ref().map(|s| &*s.0));
        let last = serde_json::to_string(&value).ok();
        let sealing = sealing
            .zip(scope)
            .map(|((key, sealer), scope)| (scope.0, key, sealer));
        Rc::new(Cell {
            signal: Signal::new(value),
            sealing,
            last: RefCell::new(last),
        })
    });
    // In the render (so the seal is queued before this render's frame), and in an effect (for
    // writes that do not re-render this component).
    cell.seal_if_changed();
    let watched = cell.clone();
    use_effect(move || {
        drop(watched.signal.read());
        watched.seal_if_changed();
    });
    cell.signal
}
