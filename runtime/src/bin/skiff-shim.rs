//! Stand-alone shim binary (`skiff-shim run --state-root <dir> --id <id>`), used by tests and
//! by anyone embedding the runtime without the `skiff` binary.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(skiff_runtime::container::shim_main(args));
}
