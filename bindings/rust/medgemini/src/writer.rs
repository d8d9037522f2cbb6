//! Writing .mgm model files.
use crate::error::{Error, Result, Status};
use crate::model::Dtype;
use crate::sys;
use crate::util::{check_buf, cstring, path_cstring, static_str, ERRLEN};
use std::cell::Cell;
use std::ffi::{c_char, c_void};
use std::marker::PhantomData;
use std::path::Path;
use std::ptr::{self, NonNull};

/// Writes an .mgm file: set metadata and declare every tensor first, then
/// write their data in any order, then [`finish`](Writer::finish). Dropping
/// an unfinished writer removes the file. `Send`, not `Sync`.
pub struct Writer {
    ptr: NonNull<sys::mg_writer>,
    _not_sync: PhantomData<Cell<()>>,
}

// SAFETY: a writer is used by one thread at a time; moving it is fine.
unsafe impl Send for Writer {}

impl Drop for Writer {
    fn drop(&mut self) {
        unsafe { sys::mg_writer_free(self.ptr.as_ptr()) }
    }
}

impl Writer {
    /// Creates `path`; `compress` stores every tensor zstd-compressed.
    pub fn create(path: impl AsRef<Path>, compress: bool) -> Result<Writer> {
        let c = path_cstring(path.as_ref())?;
        let mut err = [0 as c_char; ERRLEN];
        let mut out = ptr::null_mut();
        let flags = if compress { sys::MG_WRITE_COMPRESS } else { 0 };
        let rc = unsafe { sys::mg_writer_open(&mut out, c.as_ptr(), flags, err.as_mut_ptr(), ERRLEN) };
        check_buf(rc, &err)?;
        let ptr = NonNull::new(out).ok_or_else(|| Error::new(Status::Internal, "NULL writer"))?;
        Ok(Writer { ptr, _not_sync: PhantomData })
    }

    fn w(&self) -> *mut sys::mg_writer {
        self.ptr.as_ptr()
    }

    fn check(&self, rc: i32) -> Result<()> {
        if rc == sys::MG_OK {
            return Ok(());
        }
        let status = Status::from_code(rc);
        let msg = unsafe { static_str(sys::mg_writer_errmsg(self.w())) };
        Err(Error::new(status, if msg.is_empty() { status.description() } else { msg }))
    }

    pub fn set_int(&mut self, key: &str, v: i64) -> Result<()> {
        let k = cstring(key, "key")?;
        let rc = unsafe { sys::mg_writer_set_int(self.w(), k.as_ptr(), v) };
        self.check(rc)
    }

    pub fn set_float(&mut self, key: &str, v: f64) -> Result<()> {
        let k = cstring(key, "key")?;
        let rc = unsafe { sys::mg_writer_set_float(self.w(), k.as_ptr(), v) };
        self.check(rc)
    }

    pub fn set_string(&mut self, key: &str, v: &str) -> Result<()> {
        let k = cstring(key, "key")?;
        let s = cstring(v, "value")?;
        let rc = unsafe { sys::mg_writer_set_string(self.w(), k.as_ptr(), s.as_ptr()) };
        self.check(rc)
    }

    pub fn set_int_array(&mut self, key: &str, v: &[i64]) -> Result<()> {
        let k = cstring(key, "key")?;
        let rc = unsafe { sys::mg_writer_set_int_array(self.w(), k.as_ptr(), v.as_ptr(), v.len() as u64) };
        self.check(rc)
    }

    pub fn set_float_array(&mut self, key: &str, v: &[f64]) -> Result<()> {
        let k = cstring(key, "key")?;
        let rc = unsafe { sys::mg_writer_set_float_array(self.w(), k.as_ptr(), v.as_ptr(), v.len() as u64) };
        self.check(rc)
    }

    pub fn set_string_array<S: AsRef<str>>(&mut self, key: &str, v: &[S]) -> Result<()> {
        let k = cstring(key, "key")?;
        let cs = v.iter().map(|s| cstring(s.as_ref(), "value")).collect::<Result<Vec<_>>>()?;
        let ptrs: Vec<*const c_char> = cs.iter().map(|s| s.as_ptr()).collect();
        let rc = unsafe { sys::mg_writer_set_string_array(self.w(), k.as_ptr(), ptrs.as_ptr(), ptrs.len() as u64) };
        self.check(rc)
    }

    /// Declares a tensor (`dims[0]` varies fastest; 1 to 4 dims).
    pub fn add_tensor(&mut self, name: &str, dtype: Dtype, dims: &[u64], compress: bool) -> Result<()> {
        let n = cstring(name, "tensor name")?;
        let n_dims = u32::try_from(dims.len()).map_err(|_| Error::new(Status::InvalidArg, "too many dims"))?;
        let flags = if compress { sys::MG_WRITE_COMPRESS } else { 0 };
        let rc = unsafe { sys::mg_writer_add_tensor(self.w(), n.as_ptr(), dtype.code(), n_dims, dims.as_ptr(), flags) };
        self.check(rc)
    }

    /// Writes a declared tensor's bytes, already in its dtype's layout.
    pub fn write_tensor(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let n = cstring(name, "tensor name")?;
        let rc = unsafe {
            sys::mg_writer_write_tensor(self.w(), n.as_ptr(), data.as_ptr() as *const c_void, data.len() as u64)
        };
        self.check(rc)
    }

    /// Converts f32 values to the tensor's dtype and writes them.
    pub fn write_tensor_f32(&mut self, name: &str, data: &[f32]) -> Result<()> {
        let n = cstring(name, "tensor name")?;
        let rc = unsafe { sys::mg_writer_write_tensor_f32(self.w(), n.as_ptr(), data.as_ptr(), data.len() as u64) };
        self.check(rc)
    }

    /// Completes the file (table and checksums).
    pub fn finish(&mut self) -> Result<()> {
        let rc = unsafe { sys::mg_writer_finish(self.w()) };
        self.check(rc)
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}
