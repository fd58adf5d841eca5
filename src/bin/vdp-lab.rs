//! `vdp-lab` binary: reference controller, leaf simulator, operator commands.
//! Dispatches to `vdp_agent::lab::*`. Each subcommand owner adds its arm.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("bench") => vdp_agent::lab::bench::main(&args[1..]),
        Some("leaf") => vdp_agent::lab::leaf::main(&args[1..]),
        Some("leaf-ctl") => vdp_agent::lab::leaf::ctl_main(&args[1..]),
        Some("--version") => {
            println!("vdp-lab {}", vdp_agent::VERSION);
            0
        }
        Some("server") => vdp_agent::lab::server::cli::server_main(&args[1..]),
        Some("port") => vdp_agent::lab::server::cli::port_main(&args[1..]),
        _ => {
            eprintln!("usage: vdp-lab server|leaf|port|bench ... (see README)");
            2
        }
    };
    std::process::exit(code);
}
