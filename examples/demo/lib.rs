//! Nothing: the demo is the example `demo` (`main.rs`); see the main crate's README.
