//! Peak heap while opening reconnect bundles, measured with a counting global allocator
//! (peak_alloc). `cargo run --release -p state-recovery-bench --example bundle_memory`.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::arithmetic_side_effects
)]

use peak_alloc::PeakAlloc;
use serde::Serialize;
use state_recovery::{reconnect_message, KeyId, KeyRing, Location, Pepper, Recovery, Salt, Scope};

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

#[derive(Serialize)]
struct Todo {
    id: u32,
    text: String,
    done: bool,
}

#[derive(Serialize)]
struct State {
    title: String,
    todos: Vec<Todo>,
}

fn main() {
    let ring = KeyRing::single(
        KeyId::new("k1").unwrap(),
        Pepper::try_from_bytes(&std::array::from_fn::<u8, 32, _>(|i| {
            7 ^ (i as u8).wrapping_mul(37)
        }))
        .unwrap(),
    )
    .unwrap();
    let r = Recovery::builder(ring).build().unwrap();
    let salt = Salt::from_bytes([0x5A; 16]);
    let scope = Scope::new(&salt).with_subject("user-42");
    // About 200 bytes of JSON, as in the benches.
    let value = State {
        title: "Groceries and chores for the week".into(),
        todos: (0..2)
            .map(|id| Todo {
                id,
                text: format!("write the benchmark report, part {id}"),
                done: id % 2 == 0,
            })
            .collect(),
    };
    println!(
        "payload: {} B of JSON per entry",
        serde_json::to_vec(&value).unwrap().len()
    );
    println!("| entries | bundle B | peak extra heap B | peak / bundle | kept (Restored) B |");
    println!("|---:|---:|---:|---:|---:|");
    for n in [10, 100, 1000, 1024] {
        let tokens: Vec<String> = (0..n)
            .map(|i| {
                let key =
                    r.state_key(&Location::new("src/todo.rs", 12, 9).with_instance(format!("{i}")));
                r.seal(&scope, key, 1, 1, &value).unwrap().into_string()
            })
            .collect();
        let json = reconnect_message(&salt, tokens.iter().map(String::as_str)).into_bytes();
        // Warm the step-key cache so its one-time entry is not counted.
        drop(r.open_bundle(Some("user-42"), &json).unwrap());
        let before = HEAP.current_usage();
        HEAP.reset_peak_usage();
        let restored = r.open_bundle(Some("user-42"), &json).unwrap();
        let peak = HEAP.peak_usage().saturating_sub(before);
        let kept = HEAP.current_usage().saturating_sub(before);
        assert_eq!(restored.len(), n);
        println!(
            "| {n} | {} | {peak} | {:.2} | {kept} |",
            json.len(),
            peak as f64 / json.len() as f64
        );
        drop(restored);
    }
}
