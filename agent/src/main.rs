//! The `skiff` binary: agent, shim and CLI entry point.
fn main() {
    skiff_agent::placeholder();
}
