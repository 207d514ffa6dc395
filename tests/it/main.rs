//! The integration tests: one binary, one module per concern.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    missing_docs,
    unreachable_pub
)]

#[cfg(feature = "axum")]
mod admission;
mod adversarial;
mod bundles;
#[cfg(feature = "cli")]
mod cli;
mod common;
mod encrypted;
mod events;
mod guard;
#[cfg(feature = "redis")]
mod guard_redis;
mod kat;
#[cfg(feature = "axum")]
mod layer;
mod lifecycle;
#[cfg(feature = "axum")]
mod reconnect;
mod regressions;
mod roundtrip;
mod slots;
mod transport;
mod vectors;
