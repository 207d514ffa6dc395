//! Nothing: the benches are in `benches/`, the measuring tools in `examples/` (see
//! BENCHMARKS.md for what each measures and how to run it).
