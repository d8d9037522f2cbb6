//! Tokenizers: the one inside a model, or one loaded from tokenizer.json.
use crate::error::{Error, Result, Status};
use crate::model::Model;
use crate::sys;
use crate::util::{check_buf, opt_str, path_cstring, ERRLEN};
use std::ffi::c_char;
use std::path::Path;
use std::ptr::{self, NonNull};

/// A byte-pair tokenizer. Immutable: any number of threads may use one.
pub struct Tokenizer {
    ptr: NonNull<sys::mg_tokenizer>,
    /// Some(model) when borrowed from a model (kept alive here; never
    /// freed by us); None when loaded from a file (ours to free).
    owner: Option<Model>,
}

// SAFETY: tokenizers are immutable and thread-safe (medgemini.h).
unsafe impl Send for Tokenizer {}
unsafe impl Sync for Tokenizer {}

impl Drop for Tokenizer {
    fn drop(&mut self) {
        if self.owner.is_none() {
            unsafe { sys::mg_tokenizer_free(self.ptr.as_ptr()) }
        }
    }
}

/// Roles of special tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialToken {
    Bos,
    Eos,
    Pad,
    Unk,
    StartOfTurn,
    EndOfTurn,
    StartOfImage,
    EndOfImage,
    Image,
}

impl SpecialToken {
    fn code(self) -> i32 {
        match self {
            SpecialToken::Bos => sys::MG_TOKEN_BOS,
            SpecialToken::Eos => sys::MG_TOKEN_EOS,
            SpecialToken::Pad => sys::MG_TOKEN_PAD,
            SpecialToken::Unk => sys::MG_TOKEN_UNK,
            SpecialToken::StartOfTurn => sys::MG_TOKEN_START_OF_TURN,
            SpecialToken::EndOfTurn => sys::MG_TOKEN_END_OF_TURN,
            SpecialToken::StartOfImage => sys::MG_TOKEN_START_OF_IMAGE,
            SpecialToken::EndOfImage => sys::MG_TOKEN_END_OF_IMAGE,
            SpecialToken::Image => sys::MG_TOKEN_IMAGE,
        }
    }
}

impl Tokenizer {
    pub(crate) fn borrowed(ptr: NonNull<sys::mg_tokenizer>, model: Model) -> Tokenizer {
        Tokenizer { ptr, owner: Some(model) }
    }

    /// Loads a Hugging Face tokenizer.json (BPE with byte fallback).
    pub fn from_json(path: impl AsRef<Path>) -> Result<Tokenizer> {
        let c = path_cstring(path.as_ref())?;
        let mut err = [0 as c_char; ERRLEN];
        let mut out = ptr::null_mut();
        let rc = unsafe { sys::mg_tokenizer_load_json(&mut out, c.as_ptr(), err.as_mut_ptr(), ERRLEN) };
        check_buf(rc, &err)?;
        let ptr = NonNull::new(out).ok_or_else(|| Error::new(Status::Internal, "NULL tokenizer"))?;
        Ok(Tokenizer { ptr, owner: None })
    }

    /// Number of token ids (vocabulary plus added tokens).
    pub fn vocab_size(&self) -> u32 {
        unsafe { sys::mg_tokenizer_vocab_size(self.ptr.as_ptr()) }
    }

    /// The stored piece of a token id ("▁" for a space, "<0x0A>" for a byte
    /// token), None when out of range.
    pub fn piece(&self, id: i32) -> Option<&str> {
        unsafe { opt_str(sys::mg_tokenizer_piece(self.ptr.as_ptr(), id)) }
    }

    /// The id of a special token, None when the tokenizer has none.
    pub fn special(&self, role: SpecialToken) -> Option<i32> {
        let id = unsafe { sys::mg_tokenizer_special(self.ptr.as_ptr(), role.code()) };
        (id >= 0).then_some(id)
    }

    /// Encodes text. `add_bos` prepends BOS; `parse_special` turns the text
    /// of special tokens ("<start_of_turn>") into those tokens.
    pub fn tokenize(&self, text: &str, add_bos: bool, parse_special: bool) -> Result<Vec<i32>> {
        let mut flags = 0;
        if add_bos {
            flags |= sys::MG_TOKENIZE_ADD_BOS;
        }
        if parse_special {
            flags |= sys::MG_TOKENIZE_PARSE_SPECIAL;
        }
        self.tokenize_bytes(text.as_bytes(), flags)
    }

    /// Encodes arbitrary bytes (invalid UTF-8 becomes byte tokens) with
    /// `MG_TOKENIZE_*` flags.
    pub fn tokenize_bytes(&self, text: &[u8], flags: u32) -> Result<Vec<i32>> {
        // One token per byte plus BOS is enough for a byte-fallback BPE; the
        // size negotiation below covers anything else.
        let mut ids = vec![0i32; text.len() + 2];
        loop {
            let mut n = 0usize;
            let rc = unsafe {
                sys::mg_tokenize(ids.as_mut_ptr(), ids.len(), &mut n, self.ptr.as_ptr(),
                                 text.as_ptr() as *const c_char, text.len(), flags)
            };
            if rc == sys::MG_E_BUFFER_TOO_SMALL && n > ids.len() {
                ids.resize(n, 0);
                continue;
            }
            crate::util::check(rc)?;
            ids.truncate(n);
            return Ok(ids);
        }
    }

    /// Decodes ids into bytes (byte tokens fused, word-boundary markers
    /// turned into spaces). `skip_special` leaves out control tokens.
    pub fn detokenize_bytes(&self, ids: &[i32], skip_special: bool) -> Result<Vec<u8>> {
        let flags = if skip_special { sys::MG_DETOKENIZE_SKIP_SPECIAL } else { 0 };
        let mut buf = vec![0 as c_char; 16 * ids.len() + 16];
        loop {
            let mut n = 0usize;
            let rc = unsafe {
                sys::mg_detokenize(buf.as_mut_ptr(), buf.len(), &mut n, self.ptr.as_ptr(),
                                   ids.as_ptr(), ids.len(), flags)
            };
            if rc == sys::MG_E_BUFFER_TOO_SMALL && n >= buf.len() {
                buf.resize(n + 1, 0);
                continue;
            }
            crate::util::check(rc)?;
            return Ok(buf[..n].iter().map(|&c| c as u8).collect());
        }
    }

    /// Decodes ids into text; bytes that do not form UTF-8 become U+FFFD.
    pub fn detokenize(&self, ids: &[i32], skip_special: bool) -> Result<String> {
        let b = self.detokenize_bytes(ids, skip_special)?;
        Ok(String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer").field("vocab_size", &self.vocab_size()).finish()
    }
}

