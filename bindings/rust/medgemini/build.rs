//! Lets this crate's own tests and examples find the library they were
//! linked against without LD_LIBRARY_PATH (an rpath on this package's test and
//! example binaries; a dependant crate decides its own deployment).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_MEDGEMINI_LIB_DIR");
    if let Ok(dir) = std::env::var("DEP_MEDGEMINI_LIB_DIR") {
        // tests, examples and binaries of this package only (not dependants)
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
