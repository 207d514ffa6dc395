//! Where the demo declares its state: one slot per component, with a named key, the schema
//! version, the migration of the wizard from version 1 to 2, and the source-location keys the
//! first release of the demo used (as aliases, so its entries are still restored).
//!
//! `DEMO_SCHEMA=1` (the default) runs the demo as "version K": the wizard is read and sealed
//! as version 1 only. `DEMO_SCHEMA=2` runs it as "version K+1": it reads versions 1 and 2 and
//! seals version 2, or version 1 with `DEMO_SEAL_AS=1` (the expand phase of a two-phase
//! deploy, while version-1 workers still serve the same clients).

use state_recovery::{
    state_key, ConfigError, Location, Outcome, Recovered, RecoveryContext, Registry, SealError,
    Slot, StateUpdate,
};

use crate::components::{Counter, Todos, Wizard, WizardV1};

/// Restores and seals one component's state (a slot, or the wizard at either version).
pub(crate) trait Store<C>: Send + Sync {
    fn restore(&self, recovered: &Recovered) -> (C, Outcome);
    fn seal(&self, ctx: &RecoveryContext, value: &C) -> Result<StateUpdate, SealError>;
}

impl<C> Store<C> for Slot<C>
where
    C: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    fn restore(&self, recovered: &Recovered) -> (C, Outcome) {
        Slot::restore(self, recovered)
    }
    fn seal(&self, ctx: &RecoveryContext, value: &C) -> Result<StateUpdate, SealError> {
        Slot::seal(self, ctx, value)
    }
}

/// Version K of the wizard: its slot holds version-1 values; the page works on `Wizard`.
struct WizardAsV1(Slot<WizardV1>);

impl Store<Wizard> for WizardAsV1 {
    fn restore(&self, recovered: &Recovered) -> (Wizard, Outcome) {
        let (v1, outcome) = self.0.restore(recovered);
        (Wizard::from(v1), outcome)
    }
    fn seal(&self, ctx: &RecoveryContext, value: &Wizard) -> Result<StateUpdate, SealError> {
        self.0.seal(ctx, &WizardV1::from(value))
    }
}

/// The demo's slots.
pub(crate) struct Slots {
    pub(crate) counter: Slot<Counter>,
    pub(crate) todos: Slot<Todos>,
    pub(crate) wizard: Box<dyn Store<Wizard>>,
}

/// The keys the first release of the demo derived from `state_key!()`'s file:line:column.
fn first_release(line: u32) -> Location {
    Location::new("examples/demo/components.rs", line, 9)
}

impl Slots {
    /// Declares every slot in `registry` (which refuses two declarations of one key).
    pub(crate) fn declare(registry: &mut Registry) -> Result<Self, ConfigError> {
        let counter = Slot::<Counter>::declare(state_key!("counter"))
            .alias(first_release(79))
            .register(registry)?;
        let todos = Slot::<Todos>::declare(state_key!("todos"))
            .alias(first_release(146))
            .register(registry)?;
        let v1 = Slot::<WizardV1>::declare(state_key!("wizard")).alias(first_release(266));
        let wizard: Box<dyn Store<Wizard>> = if Wizard::current_schema() == 1 {
            Box::new(WizardAsV1(v1.register(registry)?))
        } else {
            let v2 = v1.migrate(2, Wizard::from);
            let v2 = if std::env::var("DEMO_SEAL_AS").as_deref() == Ok("1") {
                v2.seal_as(1, |w: &Wizard| WizardV1::from(w))
            } else {
                v2
            };
            Box::new(v2.register(registry)?)
        };
        Ok(Self {
            counter,
            todos,
            wizard,
        })
    }
}
