//! scripts/setup.sh decides whether to install libclang-dev by asking
//! `have_libclang` (scripts/libclang.sh). A fresh machine has only
//! `libclang-cpp.so` (LLVM's C++ API), which bindgen cannot load: taking it
//! for libclang made the README's test command fail in RocksDB's build
//! ("Unable to find libclang"). Checked here on fake library trees.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

fn have_libclang(root: &Path) -> Result<bool> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/libclang.sh");
    let status = Command::new("bash")
        .arg("-c")
        .arg(r#". "$1" && have_libclang "$2""#)
        .args(["have_libclang", script])
        .arg(root)
        .env_remove("LIBCLANG_PATH")
        .status()?;
    Ok(status.success())
}

fn touch(root: &Path, rel: &str) -> Result<()> {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap_or(root))?;
    std::fs::write(p, b"")?;
    Ok(())
}

#[test]
fn only_a_library_bindgen_can_load_counts_as_libclang() -> Result<()> {
    // A fresh machine: LLVM's shared library and the C++ API only.
    let fresh = tempfile::tempdir()?;
    touch(fresh.path(), "usr/lib/x86_64-linux-gnu/libclang-cpp.so.14")?;
    touch(fresh.path(), "usr/lib/llvm-14/lib/libclang-cpp.so")?;
    touch(fresh.path(), "usr/lib/llvm-14/lib/libLLVM-14.so")?;
    anyhow::ensure!(
        !have_libclang(fresh.path())?,
        "libclang-cpp.so was taken for libclang"
    );
    // What libclang-dev / libclang1 install, in their usual places.
    for lib in [
        "usr/lib/llvm-14/lib/libclang.so",
        "usr/lib/llvm-14/lib/libclang.so.1",
        "usr/lib/x86_64-linux-gnu/libclang-14.so.14",
        "usr/lib/x86_64-linux-gnu/libclang-14.so.1",
    ] {
        let root = tempfile::tempdir()?;
        touch(root.path(), "usr/lib/x86_64-linux-gnu/libclang-cpp.so.14")?;
        touch(root.path(), lib)?;
        anyhow::ensure!(have_libclang(root.path())?, "{lib} not found");
    }
    Ok(())
}
