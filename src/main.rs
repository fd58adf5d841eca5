//! `vdp-agent` binary: CLI (CONTRACT §2) → config → `daemon::run`.
//! TODO(core helper).
fn main() {
    println!("vdp-agent {}", vdp_agent::VERSION);
}
