//! Dioxus LiveView apps whose state survives a killed worker.
//!
//! [dioxus-liveview](https://docs.rs/dioxus-liveview/0.7.10) keeps each connection's UI on the
//! server, in a `VirtualDom`, and has no reconnect: when the socket drops (a killed worker, a
//! deploy, a proxy's idle timeout) the page is dead and everything in it is gone. This crate
//! puts [state-recovery](state_recovery) under it:
//!
//! - [`use_recoverable`] (and [`use_slot`], [`use_recoverable_here`]) is a Dioxus signal whose
//!   value is sealed into a signed entry on every write and handed to the browser, and restored
//!   from the browser's entries when a (new) worker renders the app after a reconnect;
//! - [`LiveviewApp`] serves the app like `LiveviewRouter::with_app`, with a WebSocket route
//!   that first verifies the browser's entries (state-recovery's axum layer: origin check,
//!   caps, guard, drain, refresh), then runs dioxus-liveview's own event loop, and a page whose
//!   script reconnects with backoff and lets the new connection re-render the page.
//!
//! ```no_run
//! use dioxus::prelude::*;
//! use state_recovery::layer::StateRecoveryLayer;
//! use state_recovery::{state_key, RecoveryBuilder};
//! use state_recovery_dioxus::{use_recoverable, LiveviewApp};
//!
//! fn app() -> Element {
//!     let mut count = use_recoverable(state_key!("count"), || 0_u64);
//!     rsx! { button { onclick: move |_| count += 1, "clicked {count} times" } }
//! }
//!
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! let recovery = RecoveryBuilder::from_env()?.build()?; // the same secrets on every worker
//! let router = LiveviewApp::new(StateRecoveryLayer::new(recovery)).router(app)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, router).await?;
//! # Ok(()) }
//! ```
//!
//! What is and is not recovered, and the version pin: see the crate's README.

mod glue;
mod hook;
mod session;

use std::sync::Arc;

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use dioxus::prelude::{Element, VirtualDom};
use state_recovery::layer::{RecoverySocket, StateRecoveryLayer, CLIENT_JS};

pub use glue::GlueError;
pub use hook::{use_recoverable, use_recoverable_here, use_slot, DEFAULT_SCHEMA};

/// Where the adapter's own routes are (the socket and the scripts); the app's page is at `/`
/// and at every path under it that no other route takes.
pub const ASSET_PREFIX: &str = "/_state_recovery";

/// The adapter's script (`assets/state-recovery-dioxus.js`).
const ADAPTER_JS: &str = include_str!("../assets/state-recovery-dioxus.js");

/// A Dioxus LiveView app served with state recovery: build it from the state-recovery layer
/// (its endpoint, subject, guard, drain and origin policy apply to the app's socket), then
/// make the axum router with [`router`](Self::router).
#[derive(Clone)]
pub struct LiveviewApp {
    layer: StateRecoveryLayer,
    title: String,
}

impl std::fmt::Debug for LiveviewApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveviewApp")
            .field("title", &self.title)
            .finish_non_exhaustive()
    }
}

impl LiveviewApp {
    /// An app recovering its state through `layer`.
    #[must_use]
    pub fn new(layer: StateRecoveryLayer) -> Self {
        Self {
            layer,
            title: "Dioxus LiveView".to_owned(),
        }
    }

    /// The page's title.
    #[must_use]
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// The router for the root component `app`: the page at `/` (and any path under it no
    /// other route takes), the socket and scripts under [`ASSET_PREFIX`]. Merge it with the
    /// rest of the server's routes.
    ///
    /// # Errors
    /// [`GlueError`] if dioxus-liveview's script is not the one this adapter wraps (another
    /// version than the pinned one).
    pub fn router(self, app: fn() -> Element) -> Result<Router, GlueError> {
        self.router_with_virtual_dom(move || VirtualDom::new(app))
    }

    /// [`router`](Self::router) with a function that makes each connection's `VirtualDom` (to
    /// give it props or root contexts, as dioxus-liveview's `with_virtual_dom`).
    ///
    /// # Errors
    /// As [`router`](Self::router).
    pub fn router_with_virtual_dom(
        self,
        make: impl Fn() -> VirtualDom + Send + Sync + 'static,
    ) -> Result<Router, GlueError> {
        let ws_path = format!("{ASSET_PREFIX}/ws");
        let glue: Arc<str> = glue::script(&ws_path)?.into();
        let page: Arc<str> = glue::page(&self.title, ASSET_PREFIX).into();
        let pool = session::Pool::new();
        let make: session::MakeDom = Arc::new(make);
        let index = move || {
            let page = page.clone();
            async move { Html(page.to_string()) }
        };
        let socket = move |socket: RecoverySocket| {
            let (pool, make) = (pool.clone(), make.clone());
            async move { socket.on_upgrade(move |s| async move { pool.serve(s, make).await }) }
        };
        Ok(Router::new()
            .route("/", get(index.clone()))
            .route("/{*route}", get(index))
            .route(&ws_path, get(socket))
            .route(
                &format!("{ASSET_PREFIX}/glue.js"),
                get(move || {
                    let glue = glue.clone();
                    async move { script(glue.to_string()) }
                }),
            )
            .route(
                &format!("{ASSET_PREFIX}/state-recovery-dioxus.js"),
                get(|| async { script(ADAPTER_JS.to_owned()) }),
            )
            .route(
                &format!("{ASSET_PREFIX}/state-recovery.js"),
                get(|| async { script(CLIENT_JS.to_owned()) }),
            )
            .layer(self.layer))
    }
}

/// A script, revalidated on every load (so a deploy's new script is used at once).
fn script(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
