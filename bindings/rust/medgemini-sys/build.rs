//! Finds libmedgemini for linking, in this order:
//!  1. the directory named by the environment variable MG_LIB_DIR;
//!  2. the in-tree build: `lib/` of the source tree holding this crate
//!     (the nearest ancestor of CARGO_MANIFEST_DIR with include/medgemini.h
//!     and lib/libmedgemini.so);
//!  3. `pkg-config --libs medgemini` (an installed copy; PKG_CONFIG_PATH is
//!     honoured by pkg-config itself).
//!
//! The directory found is passed on to dependants as DEP_MEDGEMINI_LIB_DIR.
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn has_lib(dir: &Path) -> bool {
    dir.join("libmedgemini.so").exists() || dir.join("libmedgemini.a").exists()
}

fn in_tree() -> Option<PathBuf> {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR")?);
    for dir in manifest.ancestors() {
        if dir.join("include").join("medgemini.h").exists() && has_lib(&dir.join("lib")) {
            return Some(dir.join("lib"));
        }
    }
    None
}

fn pkg_config() -> Option<Vec<String>> {
    let out = Command::new("pkg-config").args(["--libs", "medgemini"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.split_whitespace().map(str::to_owned).collect())
}

fn main() {
    println!("cargo:rerun-if-env-changed=MG_LIB_DIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-changed=build.rs");

    let dir = match env::var_os("MG_LIB_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if !has_lib(&d) {
                panic!("MG_LIB_DIR={} holds no libmedgemini.so", d.display());
            }
            Some(d)
        }
        _ => in_tree(),
    };
    if let Some(dir) = dir {
        println!("cargo:rustc-link-search=native={}", dir.display());
        println!("cargo:rustc-link-lib=dylib=medgemini");
        println!("cargo:lib_dir={}", dir.display());
        // this crate's own unit tests run without LD_LIBRARY_PATH
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
        return;
    }
    match pkg_config() {
        Some(flags) => {
            for f in &flags {
                if let Some(d) = f.strip_prefix("-L") {
                    println!("cargo:rustc-link-search=native={d}");
                    println!("cargo:lib_dir={d}");
                    println!("cargo:rustc-link-arg=-Wl,-rpath,{d}");
                } else if let Some(l) = f.strip_prefix("-l") {
                    println!("cargo:rustc-link-lib={l}");
                }
            }
        }
        None => panic!(
            "libmedgemini not found: build it (make) in the source tree, set MG_LIB_DIR to the \
             directory holding libmedgemini.so, or install it where pkg-config finds medgemini.pc"
        ),
    }
}
