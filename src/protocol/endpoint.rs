//! The server end of the reconnect handshake, for any transport: a reconnect message (or its
//! absence) in, a [`Recovered`] out.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::client_input::{ClientInput, InputLimits};
use super::context::RecoveryContext;
use super::events::{AppliedPayload, APPLIED_SCHEMA, MAX_SEQ};
use super::message::{DropMessage, RecoveredMessage, SaltMessage, ServerMessage};
use crate::bundle::{Bundle, Rejected, Restored, WireStr};
use crate::error::Reason;
use crate::guard::{Guard, GuardLink, GuardPolicy, GuardVerdict, ScopeStatus};
use crate::key::StateKey;
use crate::recovery::{Recovery, Scope};
use crate::registry::Registry;
use crate::secret::Salt;

/// The application's side of the protocol, transport apart: the [`Recovery`], the caps on
/// client input, the registry of declared slots (optional), and whether restored entries are
/// refreshed. Build it once; [`recover`](Self::recover) each connection's first message.
///
/// The axum layer ([`StateRecoveryLayer`](crate::layer::StateRecoveryLayer)) wraps one; a
/// framework with its own transport uses it directly:
///
/// ```
/// use state_recovery::protocol::Endpoint;
/// use state_recovery::{KeyId, KeyRing, Pepper, Recovery};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let recovery = Recovery::builder(KeyRing::single(KeyId::new("k1")?, Pepper::generate())?).build()?;
/// let endpoint = Endpoint::new(recovery);
/// // The first text message of a new connection (here: a client with nothing stashed).
/// let recovered = endpoint.recover(Some(br#"{"type":"recover","salt":null,"entries":[]}"#), None);
/// let replies: Vec<String> = recovered.messages().iter().map(|m| m.to_json()).collect();
/// assert!(replies[0].starts_with(r#"{"type":"salt","#));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Endpoint {
    recovery: Recovery,
    input_limits: InputLimits,
    registry: Option<Arc<Registry>>,
    refresh: bool,
    require_subject: bool,
    guard: Option<Guard>,
    events: bool,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("recovery", &self.recovery)
            .field("input_limits", &self.input_limits)
            .field("registry", &self.registry)
            .field("refresh", &self.refresh)
            .field("require_subject", &self.require_subject)
            .field("guard", &self.guard)
            .field("events", &self.events)
            .finish()
    }
}

impl Endpoint {
    /// An endpoint with default input limits, no registry, refreshing on, anonymous
    /// clients allowed, and no guard.
    #[must_use]
    pub fn new(recovery: Recovery) -> Self {
        Self {
            recovery,
            input_limits: InputLimits::default(),
            registry: None,
            refresh: true,
            require_subject: false,
            guard: None,
            events: false,
        }
    }

    /// Fails closed without an authenticated subject. Without this, a `None` subject means
    /// anonymous, so a misconfigured transport (an auth layer that runs after the recovery
    /// layer, a subject function that reads the wrong extension) silently seals everything
    /// as anonymous. With it, when [`recover`](Self::recover) (or
    /// [`fresh_client`](Self::fresh_client), [`refused`](Self::refused), and their guarded
    /// forms) is given no subject:
    /// - nothing is restored: no entry is opened and no MAC is computed; the message is
    ///   refused whole with the reason `no-subject` ([`Reason::NoSubject`], logged as a
    ///   warning, and returned by [`Recovered::bundle_rejection`]; the client is told one
    ///   rejected entry, as for any message refused whole);
    /// - the client's salt, when it sent a well-formed one, is kept (no `salt` message), so
    ///   its stash is not dropped and comes back once the subject is there again; otherwise
    ///   a fresh salt is issued;
    /// - the client input is dropped;
    /// - the context refuses to seal: every [`RecoveryContext::seal`] (and
    ///   [`Slot::seal`](crate::Slot::seal)) fails with
    ///   [`SealError::NoSubject`](crate::SealError::NoSubject).
    #[must_use]
    pub fn require_subject(mut self) -> Self {
        self.require_subject = true;
        self
    }

    /// Whether the endpoint refuses to restore or seal without a subject
    /// ([`require_subject`](Self::require_subject)).
    #[must_use]
    pub const fn requires_subject(&self) -> bool {
        self.require_subject
    }

    /// Checks every reconnect against `guard`'s shared store (revocation and rollback; see
    /// [`guard`](crate::guard)) and queues a high-water mark for every seal.
    ///
    /// Use the guarded (async) forms then: [`recover_guarded`](Self::recover_guarded),
    /// [`recover_first_guarded`](Self::recover_first_guarded),
    /// [`fresh_client_guarded`](Self::fresh_client_guarded),
    /// [`refused_guarded`](Self::refused_guarded) (the axum layer does). The synchronous
    /// forms cannot consult the store, so on an endpoint with a guard they never restore
    /// unguarded: whatever the [policy](crate::guard::GuardPolicy), they fail closed (every
    /// verified entry rejected as `guard-unavailable`, the client's salt kept, nothing
    /// sealed) and log a warning naming the mistake.
    #[must_use]
    pub fn with_guard(mut self, guard: Guard) -> Self {
        self.guard = Some(guard);
        self
    }

    /// Delivers numbered client messages exactly once (see
    /// [events exactly once](super#events-exactly-once)): every context it makes
    /// [tracks events](RecoveryContext::with_events), with the last applied sequence restored
    /// from the client's applied-events entry ([`Recovery::applied_key`]), which is then
    /// neither counted in `recovered` nor reported unclaimed; `recovered` announces
    /// `"applied":N` (when the context can seal), so the JS client numbers its messages and
    /// resends those not acknowledged. Off by default: without it nothing changes (no message
    /// is parsed, no entry sealed, `recovered` is as before), and a client that sends an
    /// applied-events entry anyway sees it treated as any unclaimed entry.
    #[must_use]
    pub fn with_events(mut self) -> Self {
        self.events = true;
        self
    }

    /// Whether the endpoint deduplicates numbered messages ([`with_events`](Self::with_events)).
    #[must_use]
    pub const fn events(&self) -> bool {
        self.events
    }

    /// The guard, if any.
    #[must_use]
    pub fn guard(&self) -> Option<&Guard> {
        self.guard.as_ref()
    }

    /// True when a subject is required and `subject` is `None`.
    fn subject_missing(&self, subject: Option<&str>) -> bool {
        self.require_subject && subject.is_none()
    }

    /// A context for the client's `salt`, or (`None`) for a salt issued to it, drawn when
    /// first needed, carrying the endpoint's refresh and subject settings.
    fn context(&self, salt: Option<Salt>, issued: bool, subject: Option<&str>) -> RecoveryContext {
        let subject = subject.map(str::to_owned);
        let context = match salt {
            Some(salt) if !issued => RecoveryContext::new(self.recovery.clone(), salt, subject),
            salt => RecoveryContext::issued(self.recovery.clone(), salt, subject),
        };
        let context = if self.refresh {
            context
        } else {
            context.without_refresh()
        };
        let context = if self.events {
            context.with_events()
        } else {
            context
        };
        if self.require_subject {
            context.require_subject()
        } else {
            context
        }
    }

    /// The application's declared slots: verified entries no slot claims are counted and
    /// logged as `unclaimed`, and only entries under a slot's current key are refreshed.
    #[must_use]
    pub fn with_registry(mut self, registry: Arc<Registry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Caps on the untrusted client input.
    #[must_use]
    pub fn with_input_limits(mut self, limits: InputLimits) -> Self {
        self.input_limits = limits;
        self
    }

    /// Does not re-seal restored entries from an older time step or under a rotated key (on by
    /// default: without it, state in a tab that keeps reconnecting ages out after the window,
    /// and a rotation leaves entries under the old key until it is removed).
    #[must_use]
    pub fn without_refresh(mut self) -> Self {
        self.refresh = false;
        self
    }

    /// The recovery.
    #[must_use]
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The caps on client input.
    #[must_use]
    pub fn input_limits(&self) -> &InputLimits {
        &self.input_limits
    }

    /// The registry, if any.
    #[must_use]
    pub fn registry(&self) -> Option<&Arc<Registry>> {
        self.registry.as_ref()
    }

    /// Processes a reconnect message (its JSON text), or its absence, for the authenticated
    /// `subject`: checks its size, parses its envelope once, opens its entries one by one,
    /// reads its client input separately, logs each rejection with `tracing`, continues the
    /// revisions of rejected entries, and re-seals restored entries that are due. Never fails:
    /// a message that cannot be used is refused whole (counted as one rejected entry) and the
    /// client starts fresh with a new salt; no message is a new client.
    ///
    /// On an endpoint [with a guard](Self::with_guard) this cannot consult the store and
    /// fails closed (`guard-unavailable`): use [`recover_guarded`](Self::recover_guarded).
    #[must_use]
    pub fn recover(&self, message: Option<&[u8]>, subject: Option<&str>) -> Recovered {
        let stage = self.stage(message, subject);
        self.finish_sync(stage, subject)
    }

    /// [`recover`](Self::recover), then, when the endpoint has a guard, one round trip to its
    /// store (bounded by the guard's timeout): entries of a revoked scope are rejected as
    /// `revoked` and the client is given a fresh salt; entries below their high-water mark
    /// are rejected as `rolled-back` (the others restore); the context's revisions continue
    /// above every mark of the scope; a fresh salt is registered in the same round trip. When
    /// the store fails or is slow, the guard's [policy](crate::guard::GuardPolicy) decides.
    /// Without a guard it is `recover`, with nothing awaited.
    pub async fn recover_guarded(
        &self,
        message: Option<&[u8]>,
        subject: Option<&str>,
    ) -> Recovered {
        let stage = self.stage(message, subject);
        self.finish_guarded(stage, subject).await
    }

    /// A WebSocket's first text message, parsed once: `Some` when it is a reconnect message
    /// (`"type":"recover"`, handled as [`recover`](Self::recover) does) or not JSON at all
    /// (refused, `malformed`); `None` when it is JSON of another type, the application's own
    /// message (treat the client as new and hand the message to the application).
    ///
    /// On an endpoint with a guard it fails closed, as `recover` does: use
    /// [`recover_first_guarded`](Self::recover_first_guarded).
    #[must_use]
    pub fn recover_first(&self, message: &[u8], subject: Option<&str>) -> Option<Recovered> {
        let stage = self.first_stage(message, subject)?;
        Some(self.finish_sync(stage, subject))
    }

    /// [`recover_first`](Self::recover_first) with the guard's round trip, as
    /// [`recover_guarded`](Self::recover_guarded).
    pub async fn recover_first_guarded(
        &self,
        message: &[u8],
        subject: Option<&str>,
    ) -> Option<Recovered> {
        let stage = self.first_stage(message, subject)?;
        Some(self.finish_guarded(stage, subject).await)
    }

    /// A new client: fresh salt, nothing restored. (Without a subject on an endpoint that
    /// [requires one](Self::require_subject), refused as `no-subject`.) On an endpoint with a
    /// guard, the context seals nothing: use [`fresh_client_guarded`](Self::fresh_client_guarded).
    #[must_use]
    pub fn fresh_client(&self, subject: Option<&str>) -> Recovered {
        let stage = self.fresh_stage(None, subject);
        self.finish_sync(stage, subject)
    }

    /// [`fresh_client`](Self::fresh_client), registering the fresh salt with the guard.
    pub async fn fresh_client_guarded(&self, subject: Option<&str>) -> Recovered {
        let stage = self.fresh_stage(None, subject);
        self.finish_guarded(stage, subject).await
    }

    /// A reconnect message refused whole by the transport or here (`too-large` over the
    /// bundle cap, `malformed` when it is not a reconnect message): counted as one rejected
    /// entry; the client starts fresh with a new salt. (Without a subject on an endpoint that
    /// [requires one](Self::require_subject), the reason is `no-subject`.) On an endpoint with
    /// a guard, the context seals nothing: use [`refused_guarded`](Self::refused_guarded).
    #[must_use]
    pub fn refused(&self, reason: Reason, subject: Option<&str>) -> Recovered {
        let stage = self.fresh_stage(Some(reason), subject);
        self.finish_sync(stage, subject)
    }

    /// [`refused`](Self::refused), registering the fresh salt with the guard.
    pub async fn refused_guarded(&self, reason: Reason, subject: Option<&str>) -> Recovered {
        let stage = self.fresh_stage(Some(reason), subject);
        self.finish_guarded(stage, subject).await
    }

    /// What a message is, and (for a bundle) its entries opened: everything but the guard.
    fn stage<'m>(&self, message: Option<&'m [u8]>, subject: Option<&str>) -> Stage<'m> {
        if self.subject_missing(subject) {
            return Stage::Done(Box::new(self.without_subject(message)));
        }
        let Some(message) = message else {
            return Stage::fresh(None, ClientInput::default());
        };
        if message.len() > self.recovery.limits().max_bundle_bytes() {
            // Refused before parsing anything, let alone computing a MAC.
            return Stage::fresh(Some(Reason::TooLarge), ClientInput::default());
        }
        match serde_json::from_slice::<Envelope<'_>>(message) {
            Ok(e) if matches!(e.kind.as_deref(), None | Some("recover")) => {
                self.stage_envelope(e, subject)
            }
            _ => Stage::fresh(Some(Reason::Malformed), ClientInput::default()),
        }
    }

    /// [`stage`](Self::stage) of a WebSocket's first message; `None` for the application's own.
    pub(crate) fn first_stage<'m>(
        &self,
        message: &'m [u8],
        subject: Option<&str>,
    ) -> Option<Stage<'m>> {
        if self.subject_missing(subject)
            || message.len() > self.recovery.limits().max_bundle_bytes()
        {
            // `recover` refuses these without opening anything; an application message (never
            // one over the cap) still goes to the application.
            if self.is_application_message(message) {
                return None;
            }
            return Some(self.stage(Some(message), subject));
        }
        match serde_json::from_slice::<Envelope<'_>>(message) {
            Ok(e) if e.kind.as_deref() == Some("recover") => Some(self.stage_envelope(e, subject)),
            Ok(_) => None,
            // Only on the error path: JSON of another type whose fields do not fit the
            // envelope is still the application's; anything else is a broken message.
            Err(_) if self.is_application_message(message) => None,
            Err(_) => Some(self.fresh_stage(Some(Reason::Malformed), subject)),
        }
    }

    /// A new client (or one refused whole), unless a required subject is missing.
    pub(crate) fn fresh_stage(
        &self,
        rejection: Option<Reason>,
        subject: Option<&str>,
    ) -> Stage<'static> {
        if self.subject_missing(subject) {
            return Stage::Done(Box::new(self.without_subject(None)));
        }
        Stage::fresh(rejection, ClientInput::default())
    }

    /// JSON whose `type` is not `recover` (bounded by the bundle cap before parsing).
    fn is_application_message(&self, message: &[u8]) -> bool {
        message.len() <= self.recovery.limits().max_bundle_bytes()
            && serde_json::from_slice::<Kind<'_>>(message)
                .is_ok_and(|k| k.kind.as_deref() != Some("recover"))
    }

    /// The rest of [`stage`](Self::stage), on the parsed envelope: the bundle, opened.
    fn stage_envelope<'m>(&self, envelope: Envelope<'m>, subject: Option<&str>) -> Stage<'m> {
        let input = ClientInput::from_input(envelope.input, &self.input_limits);
        if let Some(e) = input.error() {
            tracing::info!(target: "state_recovery", reason = e.code(), "client input dropped");
        }
        let Some(salt) = envelope.salt else {
            return Stage::fresh(None, input);
        };
        let bundle = match Bundle::from_raw_parts(salt, envelope.entries, self.recovery.limits()) {
            Ok(b) => b,
            Err(e) => return Stage::fresh(Some(e.reason()), input),
        };
        let scope = Scope::new(bundle.salt()).with_optional_subject(subject);
        let restored = bundle.open(&self.recovery, &scope);
        Stage::Opened {
            bundle,
            restored,
            input,
        }
    }

    /// The synchronous end: without a guard, what the stage says; with one, fail closed.
    pub(crate) fn finish_sync(&self, stage: Stage<'_>, subject: Option<&str>) -> Recovered {
        match (&self.guard, stage) {
            (_, Stage::Done(r)) => *r,
            (None, stage) => self.finish(stage, subject, Guarding::off()),
            (Some(guard), stage) => {
                guard.bypassed();
                self.finish(stage, subject, Guarding::closed(None))
            }
        }
    }

    /// Whether [`finish_guarded`](Self::finish_guarded) of `stage` waits for the guard's store
    /// (a guard, and a stage that is not final). The layer's admission asks it.
    #[cfg(feature = "axum")]
    pub(crate) fn awaits_guard(&self, stage: &Stage<'_>) -> bool {
        self.guard.is_some() && !matches!(stage, Stage::Done(_))
    }

    /// The guarded end: one round trip to the store, then what its answer (or the policy)
    /// says.
    pub(crate) async fn finish_guarded(
        &self,
        stage: Stage<'_>,
        subject: Option<&str>,
    ) -> Recovered {
        let Some(guard) = &self.guard else {
            return self.finish_sync(stage, subject);
        };
        let presented = match &stage {
            Stage::Done(_) => return self.finish_sync(stage, subject),
            Stage::Fresh { .. } => None,
            Stage::Opened { bundle, .. } => Some(guard.scope_ids(bundle.salt(), subject)),
        };
        let fresh_salt = Salt::generate();
        let fresh = guard.scope_ids(&fresh_salt, subject);
        let answer = guard.check(presented.as_ref(), fresh.subject, &fresh).await;
        let guarding = match answer {
            Ok(reply) => match (reply.status, presented) {
                (ScopeStatus::Revoked, _) => Guarding {
                    verdict: GuardVerdict::Revoked,
                    link: Some(guard.link(fresh)),
                    marks: Vec::new(),
                    blocked: false,
                    fresh_salt: Some(fresh_salt),
                },
                (_, Some(ids)) => Guarding {
                    verdict: GuardVerdict::Checked,
                    link: Some(guard.link(ids)),
                    marks: reply.marks,
                    blocked: false,
                    fresh_salt: Some(fresh_salt),
                },
                (_, None) => Guarding {
                    verdict: GuardVerdict::Checked,
                    link: Some(guard.link(fresh)),
                    marks: Vec::new(),
                    blocked: false,
                    fresh_salt: Some(fresh_salt),
                },
            },
            Err(e) => match guard.unavailable(&e) {
                GuardPolicy::FailClosed => Guarding::closed(Some(fresh_salt)),
                GuardPolicy::FailOpen => Guarding {
                    verdict: GuardVerdict::Unavailable(GuardPolicy::FailOpen),
                    // Seals still queue their marks (and register the scope) for later.
                    link: Some(guard.link(presented.unwrap_or(fresh))),
                    marks: Vec::new(),
                    blocked: false,
                    fresh_salt: Some(fresh_salt),
                },
            },
        };
        self.finish(stage, subject, guarding)
    }

    /// Builds the [`Recovered`] of a stage, as the guard decided.
    fn finish(&self, stage: Stage<'_>, subject: Option<&str>, g: Guarding) -> Recovered {
        match stage {
            Stage::Done(r) => *r,
            Stage::Fresh { rejection, input } => self.fresh(subject, rejection, input, g),
            Stage::Opened {
                bundle,
                mut restored,
                input,
            } => match g.verdict {
                GuardVerdict::Revoked => {
                    let n = restored.reject_where(Reason::Revoked, |_| true);
                    tracing::info!(
                        target: "state_recovery",
                        reason = Reason::Revoked.code(),
                        entries = n,
                        "scope revoked: every entry refused, the client gets a fresh salt"
                    );
                    for r in restored.rejected() {
                        log_rejected(r);
                    }
                    // The client starts over: its input goes with its stash.
                    let mut fresh = self.fresh(subject, None, ClientInput::default(), g);
                    fresh.restored = restored;
                    fresh
                }
                GuardVerdict::Unavailable(GuardPolicy::FailClosed) => {
                    restored.reject_where(Reason::GuardUnavailable, |_| true);
                    for r in restored.rejected() {
                        log_rejected(r);
                    }
                    // The client's salt is kept (no `salt` message): its stash survives.
                    let context = self
                        .context(Some(bundle.salt().clone()), false, subject)
                        .guard_blocked();
                    Recovered {
                        restored,
                        input,
                        context,
                        rejection: None,
                        unclaimed: 0,
                        registry: self.registry.clone(),
                        pending: Vec::new(),
                        body: None,
                        guard: g.verdict,
                    }
                }
                _ => {
                    if !g.marks.is_empty() {
                        let marks: BTreeMap<StateKey, u64> = g.marks.iter().copied().collect();
                        let n = restored.reject_where(Reason::RolledBack, |e| {
                            marks.get(&e.key).is_some_and(|m| e.revision < *m)
                        });
                        if let (Some(guard), true) = (&self.guard, n > 0) {
                            guard.rolled_back(n);
                        }
                    }
                    self.open(&bundle, restored, subject, input, g)
                }
            },
        }
    }

    fn open(
        &self,
        bundle: &Bundle<'_>,
        mut restored: Restored,
        subject: Option<&str>,
        input: ClientInput,
        g: Guarding,
    ) -> Recovered {
        let mut context = self.context(Some(bundle.salt().clone()), false, subject);
        if let Some(link) = g.link {
            context = context.with_guard(link);
        }
        // Every mark of the scope, not only those of the entries carried: the next seal of a
        // key the client dropped must still be above its mark.
        for (key, rev) in &g.marks {
            context.observe_revision(*key, *rev);
        }
        if self.events {
            self.restore_applied(bundle, &mut restored, &context);
        }
        let mut pending: Vec<ServerMessage> = Vec::new();
        if restored.overflow() > 0 {
            tracing::info!(
                target: "state_recovery",
                count = restored.overflow(),
                reason = Reason::TooLarge.code(),
                "state entries past the entry cap not read"
            );
        }
        for r in restored.rejected() {
            log_rejected(r);
            if let (Some(key), Some(rev)) = (r.claimed_key, r.claimed_revision) {
                context.observe_revision(key, rev);
                if r.reason == Reason::Expired && restored.raw(&key).is_none() {
                    pending.push(DropMessage::new(key).into());
                }
            }
        }
        for entry in restored.accepted() {
            context.observe_revision(entry.key, entry.revision);
            let claimed = self
                .registry
                .as_ref()
                .map_or(true, |r| r.is_slot_key(&entry.key));
            let text = restored.index_of(&entry.key).and_then(|i| bundle.entry(i));
            if let Some(text) = text {
                context.hold(entry.key, text, entry.step, entry.primary, claimed);
            }
        }
        let unclaimed = self
            .registry
            .as_ref()
            .map_or(0, |r| r.report_unclaimed(&restored));
        // The context knows whether this endpoint refreshes (and then returns nothing).
        pending.splice(0..0, context.refresh().into_iter().map(Into::into));
        tracing::debug!(
            target: "state_recovery",
            accepted = restored.len(),
            rejected = restored.rejected().len(),
            unclaimed,
            refreshed = pending.len(),
            "reconnect message opened"
        );
        Recovered {
            restored,
            input,
            context,
            rejection: None,
            unclaimed,
            registry: self.registry.clone(),
            pending,
            body: None,
            guard: g.verdict,
        }
    }

    /// Takes the client's applied-events entry out of the restored entries (it is the
    /// protocol's, not the application's: neither counted nor unclaimed) and restores its
    /// sequence into the context, which holds it (budget, refresh). An authentic entry whose
    /// payload is not a sequence is rejected with its reason; a rejected or missing one
    /// leaves nothing recorded.
    fn restore_applied(
        &self,
        bundle: &Bundle<'_>,
        restored: &mut Restored,
        context: &RecoveryContext,
    ) {
        let key = self.recovery.applied_key();
        let Some(entry) = restored.raw(&key) else {
            return;
        };
        let seq = if entry.schema > APPLIED_SCHEMA {
            Err(Reason::NewerSchema)
        } else if entry.schema < APPLIED_SCHEMA {
            Err(Reason::Outdated)
        } else {
            serde_json::from_str::<AppliedPayload>(entry.value.get())
                .ok()
                .map(|p| p.seq)
                .filter(|s| (1..=MAX_SEQ).contains(s))
                .ok_or(Reason::InvalidPayload)
        };
        match seq {
            Ok(seq) => {
                if let Some((entry, index)) = restored.take_accepted(&key) {
                    context.observe_revision(key, entry.revision);
                    if let Some(text) = bundle.entry(index) {
                        context.hold(key, text, entry.step, entry.primary, true);
                    }
                    context.restore_applied(seq);
                }
            }
            Err(reason) => {
                restored.reject_where(reason, |e| e.key == key);
            }
        }
    }

    /// No subject, and one is required: nothing is opened, the message counts as one
    /// rejection (`no-subject`), the client's well-formed salt is kept (so its stash
    /// survives), and the context refuses to seal.
    fn without_subject(&self, message: Option<&[u8]>) -> Recovered {
        tracing::warn!(
            target: "state_recovery",
            reason = Reason::NoSubject.code(),
            "no authenticated subject, and the endpoint requires one: nothing restored, nothing \
             will be sealed (is the auth layer added outside the recovery layer?)"
        );
        let salt = message
            .filter(|m| m.len() <= self.recovery.limits().max_bundle_bytes())
            .and_then(|m| serde_json::from_slice::<Envelope<'_>>(m).ok())
            .filter(|e| matches!(e.kind.as_deref(), None | Some("recover")))
            .and_then(|e| e.salt)
            .and_then(|s| s.verbatim().and_then(|s| Salt::decode(s).ok()));
        let context = match salt {
            Some(salt) => self.context(Some(salt), false, None),
            None => self.context(None, true, None),
        };
        Recovered {
            restored: Restored::default(),
            input: ClientInput::default(),
            context,
            rejection: Some(Reason::NoSubject),
            unclaimed: 0,
            registry: self.registry.clone(),
            pending: Vec::new(),
            body: None,
            guard: GuardVerdict::Off,
        }
    }

    fn fresh(
        &self,
        subject: Option<&str>,
        rejection: Option<Reason>,
        input: ClientInput,
        g: Guarding,
    ) -> Recovered {
        if let Some(reason) = rejection {
            tracing::info!(
                target: "state_recovery",
                reason = reason.code(),
                "reconnect message rejected; treating the client as new"
            );
        }
        // Without a guard the salt is drawn when something needs it (a seal, the salt
        // message or header); a request that seals nothing draws none.
        let mut context = self.context(g.fresh_salt, true, subject);
        if let Some(link) = g.link {
            context = context.with_guard(link);
        }
        if g.blocked {
            context = context.guard_blocked();
        }
        Recovered {
            restored: Restored::default(),
            input,
            context,
            rejection,
            unclaimed: 0,
            registry: self.registry.clone(),
            pending: Vec::new(),
            body: None,
            guard: g.verdict,
        }
    }
}

/// A reconnect message before the guard: already final, a new client, or opened entries.
pub(crate) enum Stage<'m> {
    /// Final: a required subject is missing (nothing to guard).
    Done(Box<Recovered>),
    /// A new client, or a message refused whole: a fresh salt, nothing restored.
    Fresh {
        rejection: Option<Reason>,
        input: ClientInput,
    },
    /// A bundle whose entries were opened (verified), not yet guarded.
    Opened {
        bundle: Bundle<'m>,
        restored: Restored,
        input: ClientInput,
    },
}

impl Stage<'_> {
    const fn fresh(rejection: Option<Reason>, input: ClientInput) -> Self {
        Self::Fresh { rejection, input }
    }
}

/// What the guard decided for one reconnect.
struct Guarding {
    verdict: GuardVerdict,
    /// Where the context queues its marks.
    link: Option<GuardLink>,
    /// The scope's high-water marks.
    marks: Vec<(StateKey, u64)>,
    /// The context seals nothing.
    blocked: bool,
    /// The salt a new (or revoked) client gets, registered by the check (`None`: one is
    /// drawn when needed).
    fresh_salt: Option<Salt>,
}

impl Guarding {
    /// No guard.
    fn off() -> Self {
        Self {
            verdict: GuardVerdict::Off,
            link: None,
            marks: Vec::new(),
            blocked: false,
            fresh_salt: None,
        }
    }

    /// The store is out of reach and the guard fails closed.
    fn closed(fresh_salt: Option<Salt>) -> Self {
        Self {
            verdict: GuardVerdict::Unavailable(GuardPolicy::FailClosed),
            link: None,
            marks: Vec::new(),
            blocked: true,
            fresh_salt,
        }
    }
}

/// The reconnect message's top-level fields, parsed once: the bundle and the client input are
/// handed, as raw JSON, to the one module that reads each.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    /// Written without escapes, or `malformed` (a second spelling of the same salt).
    #[serde(borrow, default)]
    salt: Option<WireStr<'a>>,
    #[serde(borrow, default)]
    entries: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
}

/// Whether `message` is a JSON object whose `type` is `recover` (a WebSocket's first message
/// may be the application's own otherwise).
#[must_use]
pub fn is_reconnect_message(message: &[u8]) -> bool {
    serde_json::from_slice::<Kind<'_>>(message).is_ok_and(|k| k.kind.as_deref() == Some("recover"))
}

/// Just the `type` of a message.
#[derive(Deserialize)]
struct Kind<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
}

/// One event per rejected entry: the state key it claims (hex) and the reason code. Never the
/// token, payload, salt or any secret.
fn log_rejected(r: &Rejected) {
    let key = r
        .claimed_key
        .map_or_else(|| "-".to_owned(), |k| k.to_string());
    tracing::info!(
        target: "state_recovery",
        key = %key,
        index = r.index,
        reason = r.reason.code(),
        "state entry not restored"
    );
}

/// What one reconnect message restored: signed state (verified entry by entry), untrusted
/// client input (separately), the [`RecoveryContext`] to seal new state with, and the
/// messages the client must be sent.
pub struct Recovered {
    restored: Restored,
    input: ClientInput,
    context: RecoveryContext,
    rejection: Option<Reason>,
    unclaimed: usize,
    registry: Option<Arc<Registry>>,
    pending: Vec<ServerMessage>,
    body: Option<Vec<u8>>,
    guard: GuardVerdict,
}

impl fmt::Debug for Recovered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recovered")
            .field("restored", &self.restored)
            .field("input", &self.input)
            .field("context", &self.context)
            .field("rejection", &self.rejection)
            .field("unclaimed", &self.unclaimed)
            .field("pending", &self.pending.len())
            .field("guard", &self.guard)
            // The body may hold anything the user typed: its length only.
            .field("body_len", &self.body.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

impl Recovered {
    /// The restored value for `key` as a `T`; `None` if there was no accepted entry for it or
    /// its JSON is not a `T` (logged as `invalid-payload`). Prefer
    /// [`Slot::restore`](crate::Slot::restore), which migrates older versions.
    #[must_use]
    pub fn get<T: DeserializeOwned>(&self, key: StateKey) -> Option<T> {
        self.used(key, self.restored.get(&key)).map(|o| o.value)
    }

    /// As [`get`](Self::get), but an entry sealed with another `schema` version is `None`
    /// too (logged as `outdated`): the component starts fresh.
    #[must_use]
    pub fn get_schema<T: DeserializeOwned>(&self, key: StateKey, schema: u32) -> Option<T> {
        self.used(key, self.restored.get_schema(&key, schema))
            .map(|o| o.value)
    }

    fn used<T>(
        &self,
        key: StateKey,
        got: Result<Option<crate::Opened<T>>, crate::Rejection>,
    ) -> Option<crate::Opened<T>> {
        match got {
            Ok(Some(o)) => {
                self.context.record_use(key, true);
                Some(o)
            }
            Ok(None) => None,
            Err(e) => {
                self.context.record_use(key, false);
                tracing::info!(
                    target: "state_recovery",
                    key = %key,
                    reason = e.reason().code(),
                    "restored entry not usable"
                );
                None
            }
        }
    }

    /// Every accepted entry, and the rejected ones.
    #[must_use]
    pub fn restored(&self) -> &Restored {
        &self.restored
    }

    /// The entries that were not restored, with their reasons (for the server only).
    #[must_use]
    pub fn rejected(&self) -> &[Rejected] {
        self.restored.rejected()
    }

    /// Why the whole message was refused (`malformed`, `too-large`, or `no-subject` on an
    /// endpoint that [requires a subject](Endpoint::require_subject)), if it was.
    #[must_use]
    pub fn bundle_rejection(&self) -> Option<Reason> {
        self.rejection
    }

    /// What the [guard](crate::guard) made of this reconnect ([`GuardVerdict::Off`] without
    /// one). The rejected entries say which were `revoked`, `rolled-back` or
    /// `guard-unavailable`.
    #[must_use]
    pub const fn guard_verdict(&self) -> GuardVerdict {
        self.guard
    }

    /// How many verified entries no declared slot claims (counted when the endpoint has a
    /// registry).
    #[must_use]
    pub const fn unclaimed(&self) -> usize {
        self.unclaimed
    }

    /// The client input: **untrusted**, validate it as any user input.
    #[must_use]
    pub fn input(&self) -> &ClientInput {
        &self.input
    }

    /// The context to seal new state with.
    #[must_use]
    pub fn context(&self) -> &RecoveryContext {
        &self.context
    }

    /// The last event sequence the restored state has applied (0: none recorded), when the
    /// endpoint [tracks events](Endpoint::with_events).
    #[must_use]
    pub fn applied_seq(&self) -> u64 {
        self.context.applied_seq()
    }

    /// `{"type":"salt",...}` if a salt was issued (send it first, before any state update).
    #[must_use]
    pub fn salt_message(&self) -> Option<SaltMessage> {
        self.context
            .salt_issued()
            .then(|| self.context.salt_message())
    }

    /// `{"type":"recovered",...}` with the counts as they stand: an accepted entry counts as
    /// restored when the application used it (through a [`Slot`](crate::Slot) or
    /// [`get`](Self::get)), or did not say but a slot claims it (or there is no registry);
    /// everything else is rejected, and a message refused whole counts as one. Build it after
    /// restoring the application's state. On an endpoint [with events](Endpoint::with_events)
    /// whose context can seal, it carries `applied`, the last event sequence the restored state
    /// has (the applied-events entry itself is not counted).
    #[must_use]
    pub fn recovered_message(&self) -> RecoveredMessage {
        let mut restored = 0usize;
        let mut rejected = self
            .restored
            .rejected()
            .len()
            .saturating_add(self.restored.overflow());
        for entry in self.restored.accepted() {
            let used = self.context.usage(&entry.key).unwrap_or_else(|| {
                self.registry
                    .as_ref()
                    .map_or(true, |r| r.claims(&entry.key))
            });
            if used {
                restored = restored.saturating_add(1);
            } else {
                rejected = rejected.saturating_add(1);
            }
        }
        let announce = self.context.events_enabled() && self.context.can_seal();
        RecoveredMessage {
            restored,
            rejected: rejected.saturating_add(usize::from(self.rejection.is_some())),
            limits: self.context.recovery().limits().into(),
            applied: announce.then(|| self.context.applied_seq()),
        }
    }

    /// The state updates of refreshed entries and the `drop` messages for expired ones, to
    /// send after `recovered`.
    #[must_use]
    pub fn pending(&self) -> &[ServerMessage] {
        &self.pending
    }

    /// Everything the client must be told, in order: `salt` (if one was issued), `recovered`,
    /// then the [`pending`](Self::pending) updates. Call it after restoring the application's
    /// state, so the counts are honest.
    #[must_use]
    pub fn messages(&self) -> Vec<ServerMessage> {
        let salt = self.salt_message().map(ServerMessage::from);
        salt.into_iter()
            .chain([self.recovered_message().into()])
            .chain(self.pending.iter().cloned())
            .collect()
    }

    /// The request body the transport read to find the message (the HTTP extractor's JSON
    /// body), if any.
    #[must_use]
    pub fn body(&self) -> Option<&[u8]> {
        self.body.as_deref()
    }

    /// Keeps the request body the message came in.
    #[must_use]
    pub fn with_body(mut self, body: Vec<u8>) -> Self {
        self.body = Some(body);
        self
    }

    /// The [`pending`](Self::pending) messages, taken (for a transport that sends them once,
    /// after `recovered`).
    pub fn take_pending(&mut self) -> Vec<ServerMessage> {
        std::mem::take(&mut self.pending)
    }

    /// The parts, for handlers that keep them apart.
    #[must_use]
    pub fn into_parts(self) -> (Restored, ClientInput, RecoveryContext) {
        (self.restored, self.input, self.context)
    }
}
