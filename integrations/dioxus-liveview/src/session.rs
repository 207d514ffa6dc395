//! One connection: state-recovery's session (the verified reconnect message, refresh, drain,
//! caps) on one side, dioxus-liveview's event loop on the other, and between them the seals
//! the app's hooks queue.
//!
//! A `VirtualDom` is not `Send`: each connection runs on one thread of a pool of
//! single-threaded runtimes (as in dioxus-liveview's own pool), as **one task** that polls both
//! dioxus-liveview's event loop (`dioxus_liveview::run`, unchanged) and the session: the
//! `LiveViewSocket` Dioxus talks to is a pair of bounded channels to the session side, which
//! owns the real WebSocket through the [`RecoverySession`]. It hands the client's texts to
//! Dioxus, and sends Dioxus's frames (binary) after the state updates sealed before them
//! (text), so a render never reaches the client ahead of the state it shows. One task, one
//! thread: the channels never wake another thread (click → frame costs what it costs without
//! the adapter plus the seal; `examples/click_latency.rs`).

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ws::Message;
use dioxus::prelude::VirtualDom;
use dioxus_liveview::LiveViewError;
use futures_util::{Sink, Stream, StreamExt as _};
use state_recovery::layer::{RecoverySession, ServerMessage};
use state_recovery::{
    Recovery, RecoveryContext, Restored, SealError, Source, StateKey, StateUpdate,
};
use tokio::sync::{mpsc, Notify};

/// Makes each connection's `VirtualDom`.
pub(crate) type MakeDom = Arc<dyn Fn() -> VirtualDom + Send + Sync>;

/// Where connections run: one single-threaded runtime per core.
#[derive(Clone)]
pub(crate) struct Pool(tokio_util::task::LocalPoolHandle);

impl Pool {
    pub(crate) fn new() -> Self {
        // What dioxus-liveview's `LiveViewPool::new` does besides making its pool: it installs
        // dioxus-html's converter for serialized events (a process-wide setting).
        drop(dioxus_liveview::LiveViewPool::new());
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        Self(tokio_util::task::LocalPoolHandle::new(threads))
    }

    /// Serves one recovered connection on the pool, until it ends.
    pub(crate) async fn serve(&self, session: RecoverySession, make: MakeDom) {
        // An `Err` is a panic in the app (logged by the runtime): the socket is closed by then.
        let _ = self.0.spawn_pinned(move || serve(session, make)).await;
    }
}

/// A seal the app's hook asked for, run on this connection's context (which the session
/// owns) when it is sent.
pub(crate) type SealFn = Box<dyn FnOnce(&RecoveryContext) -> Result<StateUpdate, SealError> + Send>;

/// How many frames (and client texts) wait between Dioxus and the socket before the sender
/// waits: Dioxus's event loop feels the client's back-pressure, as it does on its own socket.
const CHANNEL: usize = 16;

/// How long the session waits for the first render before it announces `recovered` anyway.
const FIRST_RENDER_WAIT: Duration = Duration::from_secs(2);

/// What a connection's components share with its session: the verified entries (a copy: the
/// session keeps its own), which of them the components used, and the seals they queued.
pub(crate) struct Shared {
    restored: Restored,
    recovery: Recovery,
    /// (key, used) as the components restored, for `recovered`'s honest counts.
    usage: Mutex<Vec<(StateKey, bool)>>,
    /// The newest seal per key not yet sent: at most one per key, so a client that does not
    /// read costs at most one pending value per piece of state.
    seals: Mutex<Vec<(StateKey, SealFn)>>,
    wake: Notify,
}

impl Shared {
    pub(crate) fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Queues a seal of `key`, replacing one not sent yet.
    pub(crate) fn push_seal(&self, key: StateKey, seal: SealFn) {
        let mut seals = self.seals.lock().unwrap_or_else(PoisonError::into_inner);
        match seals.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = seal,
            None => seals.push((key, seal)),
        }
        drop(seals);
        self.wake.notify_one();
    }

    fn take_seals(&self) -> Vec<(StateKey, SealFn)> {
        std::mem::take(&mut *self.seals.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn take_usage(&self) -> Vec<(StateKey, bool)> {
        std::mem::take(&mut *self.usage.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Source for Shared {
    fn entries(&self) -> &Restored {
        &self.restored
    }
    fn record(&self, key: StateKey, used: bool) {
        self.usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((key, used));
    }
}

/// The root context the hooks find: this connection's [`Shared`].
#[derive(Clone)]
pub(crate) struct Scope(pub(crate) Arc<Shared>);

/// The `LiveViewSocket` Dioxus runs on: the client's texts in, frames out.
struct DioxusSocket {
    input: mpsc::Receiver<Vec<u8>>,
    frames: futures_channel::mpsc::Sender<Vec<u8>>,
}

impl Stream for DioxusSocket {
    type Item = Result<Vec<u8>, LiveViewError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.input.poll_recv(cx).map(|m| m.map(Ok))
    }
}

impl Sink<Vec<u8>> for DioxusSocket {
    type Error = LiveViewError;
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.frames)
            .poll_ready(cx)
            .map_err(|_| LiveViewError::SendingFailed)
    }
    fn start_send(mut self: Pin<&mut Self>, item: Vec<u8>) -> Result<(), Self::Error> {
        Pin::new(&mut self.frames)
            .start_send(item)
            .map_err(|_| LiveViewError::SendingFailed)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.frames)
            .poll_flush(cx)
            .map_err(|_| LiveViewError::SendingFailed)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.frames)
            .poll_close(cx)
            .map_err(|_| LiveViewError::SendingFailed)
    }
}

/// Serves one recovered connection until the client goes, the worker drains, or the app ends.
async fn serve(mut session: RecoverySession, make: MakeDom) {
    let shared = Arc::new(Shared {
        restored: session.restored().clone(),
        recovery: session.context().recovery().clone(),
        usage: Mutex::new(Vec::new()),
        seals: Mutex::new(Vec::new()),
        wake: Notify::new(),
    });
    let (input_tx, input) = mpsc::channel(CHANNEL);
    let (frames, mut frames_rx) = futures_channel::mpsc::channel(CHANNEL);
    let vdom = make().with_root_context(Scope(shared.clone()));
    let dom = dioxus_liveview::run(vdom, DioxusSocket { input, frames });
    tokio::pin!(dom);
    let first_render = tokio::time::sleep(FIRST_RENDER_WAIT);
    tokio::pin!(first_render);
    // `recovered` goes out with the first render (its counts are what the render used); the
    // client's texts are read only after it.
    let mut started = false;
    let mut text: Option<Vec<u8>> = None;
    loop {
        tokio::select! {
            biased;
            _ = &mut dom => break,
            frame = frames_rx.next() => {
                let Some(frame) = frame else { break };
                started = true;
                let mut out = pending(&session, &shared);
                out.push(Message::Binary(frame.into()));
                if session.send_all(out).await.is_err() {
                    break;
                }
            }
            () = shared.wake.notified(), if started => {
                let out = pending(&session, &shared);
                if session.send_all(out).await.is_err() {
                    break;
                }
            }
            permit = input_tx.reserve(), if text.is_some() => {
                let (Ok(permit), Some(t)) = (permit, text.take()) else { break };
                permit.send(t);
            }
            m = session.recv(), if started && text.is_none() => match m {
                // Dioxus's events and pings.
                Some(Ok(Message::Text(t))) => text = Some(t.as_str().as_bytes().to_vec()),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            () = &mut first_render, if !started => {
                started = true;
                let out = pending(&session, &shared);
                if session.send_all(out).await.is_err() {
                    break;
                }
            }
        }
    }
    // Dropping the channels ends Dioxus's loop (its stream ends, its sends fail).
}

/// The usage the components recorded (given to the session, so `recovered` counts honestly),
/// then the state updates their seals make, as frames.
fn pending(session: &RecoverySession, shared: &Shared) -> Vec<Message> {
    for (key, used) in shared.take_usage() {
        Source::record(session.recovered(), key, used);
    }
    let ctx = session.context();
    shared
        .take_seals()
        .into_iter()
        .filter_map(|(key, seal)| match seal(ctx) {
            Ok(update) => Some(Message::Text(ServerMessage::from(update).to_json().into())),
            Err(e) => {
                // The client keeps its previous entry for the key.
                tracing::warn!(
                    target: "state_recovery_dioxus",
                    key = %key,
                    error = %e,
                    "state not sealed; the client keeps the previous entry"
                );
                None
            }
        })
        .collect()
}
