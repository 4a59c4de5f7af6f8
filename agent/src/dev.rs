//! `skiff dev ...`: developer tools used by `cargo xtask` (not a stable interface).

use crate::cli::DevCommand;

pub fn run(command: DevCommand) -> i32 {
    match command {
        DevCommand::BuildTestImage { out } => {
            match skiff_runtime::image::test_image::build_busybox_oci_archive(&out) {
                Ok(built) => {
                    crate::cli::output::note(&format!(
                        "{} {} -> {}",
                        built.reference,
                        built.manifest_digest,
                        out.display()
                    ));
                    0
                }
                Err(e) => {
                    crate::cli::output::error(&format!("build test image: {e}"));
                    1
                }
            }
        }
    }
}
