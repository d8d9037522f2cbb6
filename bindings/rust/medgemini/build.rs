//! Lets this crate's own tests and examples find the library they were
//! linked against without LD_LIBRARY_PATH (an rpath on test and example
//! binaries only; a dependant crate decides its own deployment).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_MEDGEMINI_LIB_DIR");
    if let Ok(dir) = std::env::var("DEP_MEDGEMINI_LIB_DIR") {
        println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{dir}");
        println!("cargo:rustc-link-arg-examples=-Wl,-rpath,{dir}");
    }
}
