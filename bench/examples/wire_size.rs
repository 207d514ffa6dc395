//! Wire size: token length against payload length, for the key id lengths an operator might
//! pick. Prints a Markdown table; `cargo run --release -p state-recovery-bench --example wire_size`.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::arithmetic_side_effects
)]

use state_recovery::{KeyId, KeyRing, Location, Pepper, Recovery, Salt, Scope};

/// A JSON string value of exactly `n` bytes (n ≥ 2).
fn payload(n: usize) -> String {
    "x".repeat(n - 2)
}

fn main() {
    let salt = Salt::from_bytes([0x5A; 16]);
    let scope = Scope::new(&salt).with_subject("user-42");
    println!("| key id | payload B | token B | token − payload | token / payload |");
    println!("|---|---:|---:|---:|---:|");
    for id in ["k1", "2025-06", "a-32-character-long-key-id-12345"] {
        let ring = KeyRing::single(
            KeyId::new(id).unwrap(),
            Pepper::try_from_bytes(&std::array::from_fn::<u8, 32, _>(|i| {
                7 ^ (i as u8).wrapping_mul(37)
            }))
            .unwrap(),
        )
        .unwrap();
        let r = Recovery::builder(ring).build().unwrap();
        let key = r.state_key(&Location::new("src/app.rs", 1, 1));
        let mut points = Vec::new();
        for n in [2, 16, 64, 200, 1024, 4096, 16_384, 48_000] {
            let token = r.seal(&scope, key, 1, 1, &payload(n)).unwrap();
            let t = token.as_str().len();
            points.push((n as f64, t as f64));
            println!(
                "| `{id}` ({} B) | {n} | {t} | {} | {:.3} |",
                id.len(),
                t - n,
                t as f64 / n as f64
            );
        }
        // Least-squares line: token = fixed + slope × payload.
        let k = points.len() as f64;
        let (sx, sy) = points
            .iter()
            .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
        let (sxx, sxy) = points
            .iter()
            .fold((0.0, 0.0), |(a, b), (x, y)| (a + x * x, b + x * y));
        let slope = (k * sxy - sx * sy) / (k * sxx - sx * sx);
        let fixed = (sy - slope * sx) / k;
        println!("| `{id}` fit | token ≈ {fixed:.1} B + {slope:.4} × payload | | | |",);
    }
}
