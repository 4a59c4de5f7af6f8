//! `skiff shim`: the hidden per-container process (see skiff-runtime). Runs before any thread
//! or async runtime exists.

use std::ffi::OsString;

pub fn main(args: Vec<OsString>) -> i32 {
    skiff_runtime::container::shim_main(args)
}
