//! Conversions shared by the wrappers.
use crate::error::{Error, Result, Status};
use crate::sys;
use std::ffi::{c_char, CStr, CString};
use std::path::Path;

/// Size of the error buffers passed to functions without a handle.
pub(crate) const ERRLEN: usize = 512;

/// A C string from Rust text; an interior NUL is an invalid argument.
pub(crate) fn cstring(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::new(Status::InvalidArg, format!("{what} contains a NUL byte")))
}

/// C strings from Rust texts and the array of their pointers (valid while
/// the first vector lives).
pub(crate) fn cstrings(items: &[&str], what: &str) -> Result<(Vec<CString>, Vec<*const c_char>)> {
    let owned = items.iter().map(|s| cstring(s, what)).collect::<Result<Vec<_>>>()?;
    let ptrs = owned.iter().map(|s| s.as_ptr()).collect();
    Ok((owned, ptrs))
}

/// Checks that polygenic scores and their names pair up.
pub(crate) fn check_scores(scores: &[f64], names: &[&str]) -> Result<()> {
    if scores.len() != names.len() {
        return Err(Error::new(
            Status::InvalidArg,
            format!("{} scores but {} names", scores.len(), names.len()),
        ));
    }
    Ok(())
}

/// A C string from a path (its bytes as the OS gives them).
pub(crate) fn path_cstring(p: &Path) -> Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::new(Status::InvalidArg, format!("path {} contains a NUL byte", p.display())))
}

/// A static or handle-owned C string as &str ("" for NULL; invalid UTF-8
/// yields "" too, which the library does not produce for these strings).
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn static_str<'a>(p: *const c_char) -> &'a str {
    if p.is_null() {
        ""
    } else {
        CStr::from_ptr(p).to_str().unwrap_or("")
    }
}

/// Like [`static_str`], but None for NULL.
pub(crate) unsafe fn opt_str<'a>(p: *const c_char) -> Option<&'a str> {
    if p.is_null() {
        None
    } else {
        CStr::from_ptr(p).to_str().ok()
    }
}

/// Takes a library-allocated string: copies it and frees it with
/// mg_string_free (never Rust's allocator).
pub(crate) unsafe fn take_string(p: *mut c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    let s = CStr::from_ptr(p).to_string_lossy().into_owned();
    sys::mg_string_free(p);
    Some(s)
}

/// The message in a caller-supplied error buffer.
pub(crate) fn buf_message(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Ok(()) for MG_OK, else an error with the message from the error buffer.
pub(crate) fn check_buf(code: i32, buf: &[c_char]) -> Result<()> {
    if code == sys::MG_OK {
        Ok(())
    } else {
        Err(Error::new(Status::from_code(code), buf_message(buf)))
    }
}

/// Ok(()) for MG_OK, else an error with the status text as message (for
/// calls that have no handle message).
pub(crate) fn check(code: i32) -> Result<()> {
    if code == sys::MG_OK {
        Ok(())
    } else {
        Err(Error::from_code(code))
    }
}

/// The calling thread's `mg_last_error()` message (mg_context_new,
/// mg_batch_new).
pub(crate) fn last_error() -> String {
    let p = unsafe { sys::mg_last_error() };
    if p.is_null() {
        return String::new();
    }
    unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned()
}
