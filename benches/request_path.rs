//! Placeholder; replaced by the request-path benchmark.
fn main() {}
