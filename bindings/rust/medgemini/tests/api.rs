//! Tests of the safe API against the real library: a tiny random-weight
//! model made by the CLI (`medgemini mkmodel`), the repository's chest
//! X-ray, a PLINK set written here with hand-computed scores, and the
//! decoder's reference checkpoint for conversion. Expectations come from
//! the CLI (a peer over the same C API), the PNG header, hand arithmetic,
//! or round trips.
use medgemini::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

fn repo_root() -> PathBuf {
    // bindings/rust/medgemini -> repository root
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..").canonicalize().unwrap()
}

fn cli() -> PathBuf {
    std::env::var_os("MG_CLI").map(PathBuf::from).unwrap_or_else(|| repo_root().join("bin/medgemini"))
}

/// A fresh directory under the system temp dir, unique per process and call.
fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let d = std::env::temp_dir().join(format!(
        "mg-rs-{tag}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Removes its directory when dropped.
struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tiny random-weight model made by the CLI (12 ms, 230 KB) in a fresh
/// directory that is removed when the guard is dropped.
fn tiny_file() -> (TempDir, PathBuf) {
    tiny_file_with(&[])
}

/// [`tiny_file`] with more `mkmodel` arguments (`--no-vision`, ...).
fn tiny_file_with(extra: &[&str]) -> (TempDir, PathBuf) {
    let d = TempDir(temp_dir("model"));
    let p = d.0.join("tiny.mgm");
    let st = Command::new(cli())
        .args(["mkmodel", "--shape", "tiny", "--dtype", "q8_0", "-o"])
        .arg(&p)
        .args(extra)
        .output()
        .expect("run medgemini mkmodel (set MG_CLI)");
    assert!(st.status.success(), "mkmodel failed: {}", String::from_utf8_lossy(&st.stderr));
    (d, p)
}

/// The tiny model, loaded (mapped) before its file is removed.
fn tiny() -> Model {
    let (_dir, p) = tiny_file();
    Model::load(&p).expect("load tiny model")
}

fn cxr_path() -> PathBuf {
    repo_root().join("examples/data/cxr_nih_00006585_008.png")
}

fn opts1() -> ContextOptions {
    ContextOptions::default().n_threads(1)
}

/// Runs the CLI and returns stdout without its final newline.
fn cli_out(args: &[&str]) -> String {
    let o = Command::new(cli()).args(args).output().unwrap();
    assert!(o.status.success(), "cli {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
    if s.ends_with('\n') {
        s.pop();
    }
    s
}

#[test]
fn version_matches_header() {
    assert_eq!(version_number(), sys::MG_VERSION_NUMBER);
    assert_eq!(version(), sys::MG_VERSION_STRING);
    assert!(build_info().contains("version=0.1.0"), "{}", build_info());
    assert!(!matches!(simd_level(), SimdLevel::Other(_)));
    assert_eq!(Status::from_code(4), Status::Io);
    assert_eq!(Status::Io.code(), sys::MG_E_IO);
    assert_eq!(Status::from_code(999), Status::Unknown(999));
}

#[test]
fn model_info_metadata_tensors() {
    let m = tiny();
    let i = m.info();
    assert_eq!(i.name, "random-tiny-q8_0");
    assert_eq!(i.architecture, "gemma3");
    assert!(i.has_text && i.has_vision);
    assert_eq!(i.n_vocab, 512);
    assert_eq!(m.meta_int("text.vocab_size").unwrap(), 512);
    assert_eq!(m.meta_float("text.vocab_size").unwrap(), 512.0);
    assert_eq!(m.meta_string("prompt.report_instruction").unwrap(), "Describe this X-ray.");
    assert_eq!(m.meta_count(), i.n_metadata);
    let entries = m.meta_entries();
    assert_eq!(entries.len() as u64, i.n_metadata);
    assert!(entries.iter().any(|e| e.key == "text.hidden_size" && e.kind == MetaType::Int));
    let arr = entries.iter().find(|e| e.kind == MetaType::Array).expect("an array entry");
    assert_eq!(m.meta_string_array(arr.key).map(|v| v.len() as u64).or_else(|_| m
        .meta_int_array(arr.key).map(|v| v.len() as u64)).or_else(|_| m.meta_float_array(arr.key).map(|v| v.len() as u64)).unwrap(),
        arr.n_elems);

    let e = m.meta_int("no.such.key").unwrap_err();
    assert_eq!(e.status(), Status::NotFound);
    assert!(e.message().contains("no.such.key"), "{e}");
    assert_eq!(m.meta_int("general.name").unwrap_err().status(), Status::Type);

    assert_eq!(m.tensor_count(), i.n_tensors);
    let mut bytes = 0;
    for k in 0..m.tensor_count() {
        let t = m.tensor(k).unwrap();
        assert_eq!(t.data.len() as u64, t.n_bytes);
        assert_eq!(t.dims.iter().product::<u64>(), t.n_elems);
        let same = m.tensor_by_name(t.name).unwrap();
        assert_eq!(same.file_offset, t.file_offset);
        bytes += t.n_bytes;
    }
    assert_eq!(bytes, i.n_bytes);
    assert_eq!(m.tensor(i.n_tensors).unwrap_err().status(), Status::NotFound);
    assert_eq!(m.tensor_by_name("nope").unwrap_err().status(), Status::NotFound);
    assert_eq!(Dtype::Q8_0.name(), Some("q8_0"));
}

#[test]
fn load_errors() {
    let (_model_dir, model_file) = tiny_file();
    let d = TempDir(temp_dir("loaderr"));
    let e = Model::load(d.0.join("missing.mgm")).unwrap_err();
    assert_eq!(e.status(), Status::Io);
    assert!(!e.message().is_empty());
    assert!(e.to_string().contains("status 4"), "{e}");
    let junk = d.0.join("junk.mgm");
    std::fs::write(&junk, b"this is not a model file at all, just text").unwrap();
    assert_eq!(Model::load(&junk).unwrap_err().status(), Status::ModelFormat);
    assert_eq!(Model::load("a\0b").unwrap_err().status(), Status::InvalidArg);
    // verifying checksums of a good file works
    Model::load_with(model_file.as_path(), &LoadOptions::default().verify_checksums(true).no_mmap(true)).unwrap();
    Model::load_with(model_file.as_path(), &LoadOptions::default().mmap(true)).unwrap();
    assert_eq!(
        Model::load_with(model_file.as_path(), &LoadOptions::default().max_memory(1000)).unwrap_err().status(),
        Status::Limit
    );
    // error values behave as std errors
    let boxed: Box<dyn std::error::Error> = Box::new(e);
    assert!(!boxed.to_string().is_empty());
}

#[test]
fn image_loading() {
    let bytes = std::fs::read(cxr_path()).unwrap();
    // Independent expectation: the PNG IHDR chunk.
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    let (depth, color) = (bytes[24], bytes[25]);
    assert_eq!((depth, color), (8, 0), "the sample is 8-bit greyscale");
    let img = Image::open(cxr_path()).unwrap();
    let info = img.info();
    assert_eq!((info.width, info.height), (w, h));
    assert_eq!(info.format, PixelFormat::Gray8);
    assert_eq!(info.source, ImageSource::Png);
    assert_eq!(img.attribute("photometric"), Some("MONOCHROME2"));
    assert_eq!(img.attribute("no-such-key"), None);
    let px = img.pixels().unwrap();
    assert_eq!(px.len(), (w * h) as usize);
    let same = Image::from_bytes(&bytes).unwrap();
    assert_eq!(same.pixels().unwrap(), px);
    // pixels round trip, with a stride
    let (pw, ph) = (5u32, 3u32);
    let stride = 8usize;
    let mut buf = vec![0u8; stride * 2 + 5];
    for y in 0..3 {
        for x in 0..5 {
            buf[y * stride + x] = (y * 10 + x) as u8;
        }
    }
    let small = Image::from_pixels(&buf, pw, ph, stride, PixelFormat::Gray8).unwrap();
    let back = small.pixels().unwrap();
    assert_eq!(back, (0..3).flat_map(|y| (0..5).map(move |x| (y * 10 + x) as u8)).collect::<Vec<_>>());
    assert_eq!(small.info().source, ImageSource::Pixels);
}

#[test]
fn image_errors() {
    let d = TempDir(temp_dir("imgerr"));
    assert_eq!(Image::open(d.0.join("none.png")).unwrap_err().status(), Status::Io);
    let e = Image::from_bytes(b"definitely not an image").unwrap_err();
    assert_eq!(e.status(), Status::ImageFormat);
    assert!(!e.message().is_empty());
    let bytes = std::fs::read(cxr_path()).unwrap();
    assert_eq!(Image::from_bytes(&bytes[..bytes.len() / 2]).unwrap_err().status(), Status::ImageFormat);
    assert_eq!(
        Image::from_bytes_with(&bytes, &ImageOptions::default().max_pixels(1000)).unwrap_err().status(),
        Status::Limit
    );
    // a short buffer is refused before the library could read past it
    let e = Image::from_pixels(&[0u8; 10], 4, 4, 0, PixelFormat::Rgb8).unwrap_err();
    assert_eq!(e.status(), Status::InvalidArg);
    assert_eq!(Image::from_pixels(&[0u8; 16], 4, 4, 2, PixelFormat::Gray8).unwrap_err().status(), Status::InvalidArg);
}

#[test]
fn report_and_vqa_match_the_cli() {
    let (_model_dir, model_file) = tiny_file();
    let m = tiny();
    let img = Image::open(cxr_path()).unwrap();
    let mut ctx = Context::new(&m, &opts1()).unwrap();
    let o = GenOptions::default().max_tokens(8);
    let report = ctx.report(&[&img], &o).unwrap();
    let cxr = cxr_path();
    let cxr = cxr.to_str().unwrap();
    let model = model_file.as_path().to_str().unwrap();
    assert_eq!(report, cli_out(&["report", cxr, "-m", model, "-n", "8", "--threads", "1"]));
    // deterministic, and the stream concatenates to the same text
    let mut pieces = Vec::new();
    let streamed = ctx.report_stream(&[&img], &o, |p| {
        pieces.push(p.to_owned());
        true
    }).unwrap();
    assert_eq!(streamed, report);
    assert!(!pieces.is_empty());
    assert_eq!(pieces.concat(), report);
    // instruction and system prompt reach the prompt (same as the CLI's)
    let o2 = o.clone().instruction("Any effusion?").system_prompt("");
    assert_eq!(
        ctx.report(&[&img], &o2).unwrap(),
        cli_out(&["report", cxr, "-m", model, "-n", "8", "--threads", "1", "--instruction", "Any effusion?", "--system", ""])
    );
    // two images in one study
    let two = ctx.report(&[&img, &img], &o).unwrap();
    assert_eq!(two, cli_out(&["report", cxr, cxr, "-m", model, "-n", "8", "--threads", "1"]));

    let q = "Is there a pneumothorax?";
    let ans = ctx.vqa(&[&img], q, &o).unwrap();
    assert_eq!(ans, cli_out(&["vqa", cxr, "-q", q, "-m", model, "-n", "8", "--threads", "1"]));
    let mut n = 0;
    let streamed = ctx.vqa_stream(&[&img], q, &o, |_| {
        n += 1;
        true
    }).unwrap();
    assert_eq!(streamed, ans);
    assert!(n >= 1);

    // seeded sampling repeats
    let s = GenOptions::default().max_tokens(8).temperature(0.9).seed(7);
    assert_eq!(ctx.report(&[&img], &s).unwrap(), ctx.report(&[&img], &s).unwrap());
}

#[test]
fn generate_tokenize_and_stop() {
    let (_model_dir, model_file) = tiny_file();
    let m = tiny();
    let model = model_file.as_path().to_str().unwrap();
    let mut ctx = m.context(&opts1()).unwrap();
    let o = GenOptions::default().max_tokens(12);
    let text = ctx.generate("Hello there", &o).unwrap();
    assert_eq!(text, cli_out(&["generate", "-m", model, "-n", "12", "--threads", "1", "Hello there"]));
    let raw = ctx.generate("Hello there", &o.clone().raw_prompt(true)).unwrap();
    assert_eq!(raw, cli_out(&["generate", "-m", model, "-n", "12", "--threads", "1", "--raw", "Hello there"]));

    // the closure stops the stream: Ok with the text so far
    let mut calls = 0;
    let first = ctx.generate_stream("Hello there", &o, |_| {
        calls += 1;
        false
    }).unwrap();
    assert_eq!(calls, 1);
    assert!(!first.is_empty() && text.starts_with(&first), "{first:?} vs {text:?}");

    // tokenizer against the CLI
    let tok = m.tokenizer().expect("model tokenizer");
    assert_eq!(tok.vocab_size(), 512);
    let ids = tok.tokenize("the heart", true, false).unwrap();
    let cli_ids: Vec<i32> = {
        let out = Command::new(cli()).args(["tokenize", "-m", model, "--bos"]).stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped()).spawn().and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(b"the heart\n")?;
                c.wait_with_output()
            }).unwrap();
        String::from_utf8(out.stdout).unwrap().split_whitespace().map(|s| s.parse().unwrap()).collect()
    };
    assert_eq!(ids, cli_ids);
    assert_eq!(ids[0], tok.special(SpecialToken::Bos).unwrap());
    assert_eq!(tok.detokenize(&ids, true).unwrap(), "the heart");
    assert!(tok.piece(ids[0]).is_some());
    assert!(tok.piece(100_000).is_none());
    // generating from the same ids: as the CLI's --ids
    let ids_s = ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    assert_eq!(
        ctx.generate_ids(&ids, &o).unwrap(),
        cli_out(&["generate", "-m", model, "-n", "12", "--threads", "1", "--ids", &ids_s])
    );
    // a stop string cuts the text before it
    if let Some(pos) = text.char_indices().nth(3).map(|(i, _)| i) {
        let stop: String = text[pos..].chars().take(2).collect();
        let cut = ctx.generate("Hello there", &o.clone().stop(stop.clone())).unwrap();
        assert_eq!(cut, text[..text.find(&stop).unwrap()]);
    }
    // bytes that are not UTF-8 round-trip through byte tokens
    let raw_bytes = [0x66u8, 0xff, 0x6f];
    let b = tok.tokenize_bytes(&raw_bytes, 0).unwrap();
    assert_eq!(tok.detokenize_bytes(&b, false).unwrap(), raw_bytes);
}

/// `draft_ngram` changes nothing but speed: greedy generation gives the same
/// text, streamed pieces, sequence and last logits as without it (prompts
/// that repeat themselves, so that drafts are made and kept, and a stop
/// string); with a temperature above 0 the same seed gives the same text.
#[test]
fn draft_ngram_same_as_without() {
    let (_dir, p) = tiny_file_with(&["--no-vision"]);
    let m = Model::load(&p).unwrap();
    assert!(m.info().has_text && !m.info().has_vision);
    // text, streamed pieces, the context's sequence, its last logits (as bits)
    type Run = (String, Vec<String>, Vec<i32>, Vec<u32>);
    let run = |prompt: &str, o: &GenOptions| -> Run {
        let mut ctx = m.context(&opts1()).unwrap();
        let mut pieces = Vec::new();
        let text = ctx.generate_stream(prompt, o, |s| {
            pieces.push(s.to_owned());
            true
        }).unwrap_or_else(|e| panic!("{prompt:?}: {e}"));
        let logits = ctx.logits().unwrap().iter().map(|x| x.to_bits()).collect();
        (text, pieces, ctx.tokens().unwrap(), logits)
    };
    let g = GenOptions::default().max_tokens(40);
    let cases = [
        ("hello there", g.clone()),
        ("the heart the heart the heart the heart the heart", g.clone()),
        ("No acute findings. No acute findings. No acute findings.", g.clone()),
        ("a b c d a b c d a b c d a b c d a b c d", g.clone().raw_prompt(true)),
        ("lungs are clear, lungs are clear, lungs are clear", g.clone().raw_prompt(true).max_tokens(7)),
    ];
    for (prompt, o) in cases {
        let want = run(prompt, &o);
        assert!(!want.1.is_empty(), "{prompt:?}: nothing generated");
        assert_eq!(run(prompt, &o.clone().draft_ngram(true)), want, "{prompt:?}");
        // a stop string inside the text cuts it at the same place
        let chars: Vec<char> = want.0.chars().collect();
        if chars.len() > 4 {
            let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
            let so = o.clone().stop(stop.clone());
            assert_eq!(run(prompt, &so.clone().draft_ngram(true)), run(prompt, &so), "{prompt:?}, stop {stop:?}");
        }
        // sampling: the same distribution (another text for a seed than
        // without the option), the same text for the same seed
        let sampled = o.clone().temperature(0.8).seed(11).draft_ngram(true);
        assert_eq!(run(prompt, &sampled), run(prompt, &sampled), "{prompt:?} sampled");
    }
    // the field and the builder are the same setting
    let mut f = GenOptions::default();
    assert!(!f.draft_ngram);
    f.draft_ngram = true;
    assert_eq!(f, GenOptions::default().draft_ngram(true));
}

/// A draft model attached with `set_draft` changes nothing but speed for
/// greedy generation; a draft with another vocabulary is refused.
#[test]
fn draft_model_same_as_without() {
    let (_dir, p) = tiny_file_with(&["--no-vision"]);
    let (_ddir, dp) = tiny_file_with(&["--no-vision", "--seed", "9", "--layers", "1"]);
    let (_odir, op) = tiny_file_with(&["--no-vision", "--vocab", "600"]);
    let m = Model::load(&p).unwrap();
    let dm = Model::load(&dp).unwrap();
    let mut plain = m.context(&opts1()).unwrap();
    let mut ctx = m.context(&opts1()).unwrap();
    assert!(ctx.set_draft(Some(dm.context(&opts1()).unwrap())).is_none());
    let g = GenOptions::default().max_tokens(30);
    for prompt in ["hello there", "the heart the heart the heart the heart"] {
        let want = plain.generate(prompt, &g).unwrap();
        assert_eq!(ctx.generate(prompt, &g).unwrap(), want, "{prompt:?}");
        assert_eq!(ctx.generate(prompt, &g.clone().n_draft(2)).unwrap(), want, "{prompt:?}");
        let sampled = g.clone().temperature(0.9).seed(3);
        assert_eq!(ctx.generate(prompt, &sampled).unwrap(), ctx.generate(prompt, &sampled).unwrap());
    }
    assert!(ctx.draft().unwrap().n_tokens() > 0);
    // the same model as its own draft
    let d = ctx.set_draft(Some(m.context(&opts1()).unwrap())).unwrap();
    assert!(d.n_tokens() > 0); // the draft that was attached, handed back
    let want = plain.generate("hello there", &g).unwrap();
    assert_eq!(ctx.generate("hello there", &g).unwrap(), want);
    // another vocabulary: refused
    let om = Model::load(&op).unwrap();
    ctx.set_draft(Some(om.context(&opts1()).unwrap()));
    let e = ctx.generate("hello there", &g).unwrap_err();
    assert_eq!(e.status(), Status::InvalidArg, "{e}");
    assert!(ctx.set_draft(None).is_some());
    assert_eq!(ctx.generate("hello there", &g).unwrap(), want);
}

#[test]
fn tokenizer_from_json_hand_checked() {
    let d = TempDir(temp_dir("tok"));
    let p = d.0.join("tokenizer.json");
    std::fs::write(&p, r#"{"added_tokens": [
 {"id": 0, "content": "<pad>", "special": true}, {"id": 1, "content": "<eos>", "special": true},
 {"id": 2, "content": "<bos>", "special": true}, {"id": 3, "content": "<unk>", "special": true}],
 "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
 "pre_tokenizer": null,
 "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": true,
  "vocab": {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "\u2581": 4, "a": 5, "e": 6,
            "h": 7, "r": 8, "t": 9, "s": 10, "i": 11, "n": 12, "o": 13, "th": 14, "\u2581th": 15},
  "merges": [["t", "h"], ["\u2581", "th"]]}}"#).unwrap();
    let tok = Tokenizer::from_json(&p).unwrap();
    assert_eq!(tok.vocab_size(), 16);
    // by hand: t+h merge to "th" (14); "▁"+"th" merge to "▁th" (15)
    assert_eq!(tok.tokenize("th", false, false).unwrap(), vec![14]);
    assert_eq!(tok.tokenize("the", false, false).unwrap(), vec![14, 6]);
    assert_eq!(tok.tokenize("a th", true, false).unwrap(), vec![2, 5, 15]);
    assert_eq!(tok.tokenize("<eos>a", false, true).unwrap(), vec![1, 5]);
    assert_eq!(tok.piece(15), Some("\u{2581}th"));
    assert_eq!(tok.special(SpecialToken::Eos), Some(1));
    assert_eq!(tok.detokenize(&[2, 5, 15], true).unwrap(), "a th");
    assert_eq!(tok.detokenize(&[99], false).unwrap_err().status(), Status::InvalidArg);
    assert_eq!(Tokenizer::from_json(d.0.join("none.json")).unwrap_err().status(), Status::Io);
    std::fs::write(&p, "{ not json").unwrap();
    assert_eq!(Tokenizer::from_json(&p).unwrap_err().status(), Status::ModelFormat);
}

#[test]
fn interrupt_from_another_thread() {
    let m = tiny();
    let mut ctx = Context::new(&m, &opts1()).unwrap();
    let stopper = ctx.interrupter();
    let (to_thread, from_gen) = mpsc::channel::<()>();
    let (ack, acked) = mpsc::channel::<()>();
    // The other thread interrupts as soon as the first piece of text exists;
    // the generation thread waits in its callback until that happened, so
    // the outcome does not depend on timing.
    let t = std::thread::spawn(move || {
        from_gen.recv().unwrap();
        stopper.interrupt().unwrap();
        ack.send(()).unwrap();
    });
    let mut pieces = 0;
    let long = GenOptions::default().max_tokens(400);
    let e = ctx
        .generate_stream("Write a very long story.", &long, |_| {
            pieces += 1;
            if pieces == 1 {
                to_thread.send(()).unwrap();
                acked.recv().unwrap();
            }
            true
        })
        .unwrap_err();
    t.join().unwrap();
    assert_eq!(e.status(), Status::Interrupted, "{e}");
    assert_eq!(pieces, 1, "stopped within one token");
    let partial = e.partial_text().expect("partial text");
    assert!(!partial.is_empty());
    let full = ctx.generate("Write a very long story.", &GenOptions::default().max_tokens(400)).unwrap();
    assert!(full.starts_with(partial) && full.len() > partial.len());

    // An interrupt with no call running is dropped when the next call starts.
    ctx.interrupter().interrupt().unwrap();
    let after = ctx.generate("Hi", &GenOptions::default().max_tokens(4)).expect("not interrupted");
    assert!(!after.is_empty());

    // An interrupter may outlive its context.
    let late = ctx.interrupter();
    drop(ctx);
    drop(m);
    late.interrupt().unwrap();
}

#[test]
fn model_shared_across_threads() {
    let m = tiny();
    let img = std::sync::Arc::new(Image::open(cxr_path()).unwrap());
    let o = GenOptions::default().max_tokens(6);
    let expect = Context::new(&m, &opts1()).unwrap().report(&[&img], &o).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (m, img, o) = (m.clone(), img.clone(), o.clone());
            std::thread::spawn(move || {
                let mut ctx = Context::new(&m, &opts1()).unwrap();
                (0..2).map(|_| ctx.report(&[&img], &o).unwrap()).collect::<Vec<_>>()
            })
        })
        .collect();
    drop(m); // the threads' clones keep the model alive
    for h in handles {
        for r in h.join().unwrap() {
            assert_eq!(r, expect);
        }
    }
    // a context moved to another thread (Send)
    let m = tiny();
    let mut ctx = Context::new(&m, &opts1()).unwrap();
    let prompt_out = ctx.generate("x", &o).unwrap();
    let back = std::thread::spawn(move || ctx.generate("x", &GenOptions::default().max_tokens(6)).unwrap());
    assert_eq!(back.join().unwrap(), prompt_out);
}

#[test]
fn context_errors_and_eval() {
    let m = tiny();
    let img = Image::open(cxr_path()).unwrap();
    let mut ctx = Context::new(&m, &opts1()).unwrap();
    let o = GenOptions::default().max_tokens(4);
    let e = ctx.generate_ids(&[2, 99999], &o).unwrap_err();
    assert_eq!(e.status(), Status::InvalidArg);
    assert!(e.message().contains("out of range"), "{e}");
    assert_eq!(ctx.last_status(), Some(Status::InvalidArg));
    assert_eq!(ctx.report(&[], &o).unwrap_err().status(), Status::InvalidArg);
    assert_eq!(ctx.generate("a\0b", &o).unwrap_err().status(), Status::InvalidArg);
    assert_eq!(
        ctx.prs_predict(&[0.5], &["PGS000001"], "risk?", &o).unwrap_err().status(),
        Status::Unsupported
    );
    // the image tokens do not fit a 16-token context
    let mut small = Context::new(&m, &opts1().n_ctx(16)).unwrap();
    assert_eq!(small.report(&[&img], &o).unwrap_err().status(), Status::ContextFull);
    // low level: eval with logits
    ctx.reset().unwrap();
    assert_eq!(ctx.last_status(), None);
    assert_eq!(ctx.n_tokens(), 0);
    assert!(ctx.tokens().unwrap().is_empty());
    assert_eq!(ctx.logits().unwrap_err().status(), Status::InvalidArg);
    let logits = ctx.eval_logits(&[2, 10, 20]).unwrap();
    assert_eq!(logits.len(), 3 * 512);
    assert!(logits.iter().all(|x| x.is_finite()));
    // the last decoder step's row
    assert_eq!(ctx.logits().unwrap(), logits[2 * 512..].to_vec());
    assert_eq!(ctx.n_tokens(), 3);
    assert_eq!(ctx.tokens().unwrap(), vec![2, 10, 20]);
    ctx.eval(&[30]).unwrap();
    assert_eq!(ctx.n_tokens(), 4);
    assert_eq!(ctx.tokens().unwrap(), vec![2, 10, 20, 30]);
    // the same prefix again gives the same logits
    ctx.reset().unwrap();
    assert_eq!(ctx.eval_logits(&[2, 10, 20]).unwrap(), logits);
    // a panic in the stream closure reaches the caller, and the context
    // still works afterwards
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = ctx.generate_stream("Hello", &o, |_| panic!("boom"));
    }));
    assert!(r.is_err());
    assert!(ctx.generate("Hello", &o).is_ok());
}

#[test]
fn context_kv_bf16() {
    // a bf16 KV cache: logits close to the f32 cache's, not equal
    let m = tiny();
    let ids = [2, 300, 17, 41, 99, 5, 260, 301, 302, 12];
    let a = Context::new(&m, &opts1()).unwrap().eval_logits(&ids).unwrap();
    let b = Context::new(&m, &opts1().kv_bf16(true)).unwrap().eval_logits(&ids).unwrap();
    assert_eq!(a.len(), b.len());
    let maxd = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    let maxa = a.iter().map(|x| x.abs()).fold(0.0f32, f32::max);
    assert!(maxd > 0.0 && maxd < 0.05 * maxa, "max difference {maxd}, largest logit {maxa}");
}

/// Writes a PLINK 1 set of 4 founders and 2 variants, and a wide score file
/// with two scores.
fn write_plink(dir: &Path) -> PathBuf {
    let prefix = dir.join("toy");
    std::fs::write(prefix.with_extension("fam"), "f1 s1 0 0 1 -9\nf2 s2 0 0 2 -9\nf3 s3 0 0 1 -9\nf4 s4 0 0 2 -9\n").unwrap();
    std::fs::write(prefix.with_extension("bim"), "1\trs1\t0\t100\tA\tG\n1\trs2\t0\t200\tC\tT\n").unwrap();
    // 2-bit codes, low bits first: 00 hom A1, 01 missing, 10 het, 11 hom A2.
    // rs1: s1 AA(00) s2 AG(10) s3 GG(11) s4 missing(01) -> 0b01_11_10_00
    // rs2: s1 CT(10) s2 TT(11) s3 CC(00) s4 CT(10)      -> 0b10_00_11_10
    std::fs::write(prefix.with_extension("bed"), [0x6c, 0x1b, 0x01, 0b0111_1000, 0b1000_1110]).unwrap();
    std::fs::write(dir.join("w.score"), "ID\tA1\tw1\tw2\nrs1\tA\t0.5\t-1\nrs2\tT\t2\t0.25\n").unwrap();
    prefix
}

#[test]
fn prs_hand_computed() {
    let d = TempDir(temp_dir("prs"));
    let prefix = write_plink(&d.0);
    let mut p = Prs::open_plink(&prefix, &PrsOptions::default().n_threads(1)).unwrap();
    assert_eq!((p.sample_count(), p.variant_count()), (4, 2));
    assert_eq!(p.sample_id(2).unwrap(), ("f3", "s3"));
    // founder frequencies out, one line per variant, and back in
    let freq = d.0.join("w.afreq");
    p.write_freq(&freq).unwrap();
    let text = std::fs::read_to_string(&freq).unwrap();
    assert!(text.starts_with("#CHROM\tID\tREF\tALT\tALT_FREQS\tOBS_CT\n"));
    assert_eq!(text.lines().count(), 3);
    p.read_freq(&freq).unwrap();
    assert_eq!(p.results(PrsColumn::Sum, 0).unwrap_err().status(), Status::Misuse);
    assert_eq!(p.compute().unwrap_err().status(), Status::Misuse);
    assert_eq!(p.add_scores(d.0.join("w.score")).unwrap(), 2);
    assert_eq!(p.score_names(), vec!["w1", "w2"]);
    p.compute().unwrap();
    // Effect-allele dosages: rs1 A = 2, 1, 0, missing; rs2 T = 1, 2, 0, 1.
    // s4's missing rs1 call is mean-imputed from the founders: freq(A) =
    // (2+1+0)/6 = 0.5, dosage 2*0.5 = 1.
    // w1 = 0.5*rs1 + 2*rs2;  w2 = -1*rs1 + 0.25*rs2
    let w1 = [0.5 * 2.0 + 2.0 * 1.0, 0.5 * 1.0 + 2.0 * 2.0, 0.0, 0.5 * 1.0 + 2.0 * 1.0];
    let w2 = [-2.0 + 0.25, -1.0 + 0.5, 0.0, -1.0 + 0.25];
    let close = |a: &[f64], b: &[f64]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9);
    let s1 = p.sums(0).unwrap();
    let s2 = p.sums(1).unwrap();
    assert!(close(&s1, &w1), "{s1:?} vs {w1:?}");
    assert!(close(&s2, &w2), "{s2:?} vs {w2:?}");
    let denom = p.results(PrsColumn::Denom, 0).unwrap();
    let avg = p.results(PrsColumn::Avg, 0).unwrap();
    for k in 0..4 {
        assert!((avg[k] * denom[k] - w1[k]).abs() < 1e-9);
    }
    let ct = p.results(PrsColumn::AlleleCt, 0).unwrap();
    assert_eq!(&ct[..3], &[4.0, 4.0, 4.0]);
    let r = p.match_report(0).unwrap();
    assert!(r.kept);
    assert_eq!((r.n_rows, r.n_matched), (2, 2));
    let out = d.0.join("out.sscore");
    p.write_sscore(&out).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.starts_with("#FID\tIID"), "{text}");
    assert_eq!(text.lines().count(), 5);
    assert!(p.match_report(5).is_err());

    // without mean imputation the missing call adds nothing
    let mut q = Prs::open_plink(&prefix, &PrsOptions::default().no_mean_imputation(true).n_threads(1)).unwrap();
    q.add_scores(d.0.join("w.score")).unwrap();
    q.compute().unwrap();
    let s = q.sums(0).unwrap();
    assert!(close(&s, &[w1[0], w1[1], w1[2], 2.0 * 1.0]), "{s:?}");
    // moved to another thread (Send)
    let s_thread = std::thread::spawn(move || q.sums(1).unwrap()).join().unwrap();
    assert!(close(&s_thread, &[w2[0], w2[1], w2[2], 0.25]), "{s_thread:?}");
}

#[test]
fn prs_errors() {
    let d = TempDir(temp_dir("prserr"));
    let e = Prs::open_plink(d.0.join("absent"), &PrsOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::Io);
    assert!(!e.message().is_empty());
    let prefix = write_plink(&d.0);
    // a .bed one byte short does not belong to the .bim/.fam
    std::fs::write(prefix.with_extension("bed"), [0x6c, 0x1b, 0x01, 0x78]).unwrap();
    assert_eq!(Prs::open_plink(&prefix, &PrsOptions::default()).unwrap_err().status(), Status::DataFormat);
    let prefix = write_plink(&d.0);
    let mut p = Prs::open_plink(&prefix, &PrsOptions::default()).unwrap();
    std::fs::write(d.0.join("bad.score"), "ID\tA1\tw1\nrs1\tA\tnot-a-number\n").unwrap();
    let e = p.add_scores(d.0.join("bad.score")).unwrap_err();
    assert_eq!(e.status(), Status::DataFormat);
    assert!(e.message().contains("bad.score"), "{e}");
    assert_eq!(p.score_count(), 0, "a failed add leaves the handle as it was");
    assert_eq!(Prs::open_vcf(d.0.join("none.vcf"), &PrsOptions::default()).unwrap_err().status(), Status::Io);
}

#[test]
fn writer_round_trip() {
    let d = TempDir(temp_dir("writer"));
    let path = d.0.join("w.mgm");
    let mut w = Writer::create(&path, false).unwrap();
    w.set_string("general.name", "written by rust").unwrap();
    w.set_int("x.int", -7).unwrap();
    w.set_float("x.float", 2.5).unwrap();
    w.set_int_array("x.ints", &[1, 2, 3]).unwrap();
    w.set_float_array("x.floats", &[0.5, -0.25]).unwrap();
    w.set_string_array("x.strs", &["a", "bc"]).unwrap();
    assert_eq!(w.set_int("x.int", 1).unwrap_err().status(), Status::InvalidArg, "duplicate key");
    w.add_tensor("t.f32", Dtype::F32, &[3, 2], false).unwrap();
    w.add_tensor("t.raw", Dtype::F32, &[2], true).unwrap();
    let vals = [1.0f32, -2.0, 3.5, 0.0, 1e-3, 7.0];
    w.write_tensor_f32("t.f32", &vals).unwrap();
    assert_eq!(w.write_tensor("t.none", &[0; 4]).unwrap_err().status(), Status::NotFound);
    let raw: Vec<u8> = [9.0f32, 10.0].iter().flat_map(|f| f.to_le_bytes()).collect();
    w.write_tensor("t.raw", &raw).unwrap();
    w.finish().unwrap();
    assert_eq!(w.finish().unwrap_err().status(), Status::Misuse);
    drop(w);

    let m = Model::load_with(&path, &LoadOptions::default().verify_checksums(true)).unwrap();
    assert_eq!(m.info().name, "written by rust");
    assert_eq!(m.meta_int("x.int").unwrap(), -7);
    assert_eq!(m.meta_float("x.float").unwrap(), 2.5);
    assert_eq!(m.meta_int_array("x.ints").unwrap(), vec![1, 2, 3]);
    assert_eq!(m.meta_float_array("x.floats").unwrap(), vec![0.5, -0.25]);
    assert_eq!(m.meta_string_array("x.strs").unwrap(), vec!["a", "bc"]);
    let t = m.tensor_by_name("t.f32").unwrap();
    assert_eq!(t.dims, vec![3, 2]);
    assert_eq!(t.dtype, Dtype::F32);
    let back: Vec<f32> = t.data.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(back, vals);
    assert_eq!(m.tensor_by_name("t.raw").unwrap().data, &raw[..]);
    assert!(!m.info().has_text);
    assert!(m.tokenizer().is_none());

    // an unfinished file is removed when the writer is dropped
    let gone = d.0.join("gone.mgm");
    let mut w = Writer::create(&gone, false).unwrap();
    w.set_int("a", 1).unwrap();
    drop(w);
    assert!(!gone.exists());
    assert_eq!(Writer::create(d.0.join("no/such/dir/x.mgm"), false).unwrap_err().status(), Status::Io);
}

#[test]
fn convert_reference_checkpoint() {
    let src = repo_root().join("tests/reference/fixtures/gqa1_full");
    if !src.join("config.json").exists() {
        eprintln!("skipped: reference checkpoint absent");
        return;
    }
    let d = TempDir(temp_dir("convert"));
    let tokp = d.0.join("tokenizer.json");
    std::fs::write(&tokp, r#"{"added_tokens": [
 {"id": 0, "content": "<pad>", "special": true}, {"id": 1, "content": "<eos>", "special": true},
 {"id": 2, "content": "<bos>", "special": true}, {"id": 3, "content": "<unk>", "special": true}],
 "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
 "pre_tokenizer": null,
 "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": true,
  "vocab": {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "\u2581": 4, "a": 5},
  "merges": []}}"#).unwrap();
    let out = d.0.join("conv.mgm");
    let opts = ConvertOptions::default().dtype(Dtype::Q8_0).tokenizer(&tokp);
    let mut seen = Vec::new();
    convert_with_progress(&src, &out, &opts, |p| {
        assert!(p.rms_error >= 0.0 && p.index < p.count);
        seen.push((p.index, p.count, p.name.to_owned(), p.dtype));
        true
    })
    .unwrap();
    assert!(!seen.is_empty());
    for (k, s) in seen.iter().enumerate() {
        assert_eq!(s.0 as usize, k);
        assert_eq!(s.1 as usize, seen.len());
    }
    assert!(seen.iter().any(|s| s.3 == Dtype::Q8_0));
    let m = Model::load(&out).unwrap();
    assert!(m.info().has_text);
    assert_eq!(m.tensor_count() as usize, seen.len());
    // the converted model generates
    let mut ctx = Context::new(&m, &opts1()).unwrap();
    ctx.generate_ids(&[2, 5], &GenOptions::default().max_tokens(3)).unwrap();

    // stopping from the closure: Interrupted, no output left behind
    let out2 = d.0.join("stopped.mgm");
    let e = convert_with_progress(&src, &out2, &opts, |_| false).unwrap_err();
    assert_eq!(e.status(), Status::Interrupted);
    assert!(!out2.exists());
    // a missing source
    let e = convert(d.0.join("absent"), d.0.join("x.mgm"), &ConvertOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::Io, "{e}");
}

#[test]
fn convert_prune_vocab_and_meta() {
    let src = repo_root().join("tests/reference/fixtures/gqa1_full");
    if !src.join("config.json").exists() {
        eprintln!("skipped: reference checkpoint absent");
        return;
    }
    let d = TempDir(temp_dir("prune"));
    let tokp = d.0.join("tokenizer.json");
    std::fs::write(&tokp, r#"{"added_tokens": [
 {"id": 0, "content": "<pad>", "special": true}, {"id": 1, "content": "<eos>", "special": true},
 {"id": 2, "content": "<bos>", "special": true}, {"id": 3, "content": "<unk>", "special": true}],
 "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
 "pre_tokenizer": null,
 "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": true,
  "vocab": {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "\u2581": 4, "a": 5, "b": 6,
            "ab": 7, "ba": 8},
  "merges": [["a", "b"], ["b", "a"]]}}"#).unwrap();
    let corpus = d.0.join("corpus.txt");
    std::fs::write(&corpus, "ab ab\n").unwrap();
    let out = d.0.join("pruned.mgm");
    let opts = ConvertOptions::default()
        .tokenizer(&tokp)
        .prune_vocab(&corpus)
        .meta("general.name", "pruned demo")
        .meta("prompt.report_instruction", "Describe the image.");
    convert(&src, &out, &opts).unwrap();
    let m = Model::load(&out).unwrap();
    // kept: the 4 specials, "▁", "a", "b" (one byte each) and "ab"; "ba" goes
    assert_eq!(m.meta_int("text.vocab_size").unwrap(), 8);
    let t = m.tokenizer().unwrap();
    assert_eq!(t.piece(7), Some("ab"));
    assert_eq!(m.meta_string("general.name").unwrap(), "pruned demo");
    assert_eq!(m.meta_string("prompt.report_instruction").unwrap(), "Describe the image.");
    // refused: a key outside general./prompt., a key with '=', a missing corpus
    let bad = ConvertOptions::default().meta("text.vocab_size", "3");
    assert_eq!(convert(&src, d.0.join("x.mgm"), &bad).unwrap_err().status(), Status::InvalidArg);
    let bad = ConvertOptions::default().meta("general.a=b", "c");
    assert_eq!(convert(&src, d.0.join("x.mgm"), &bad).unwrap_err().status(), Status::InvalidArg);
    let bad = ConvertOptions::default().tokenizer(&tokp).prune_vocab(d.0.join("none.txt"));
    assert_eq!(convert(&src, d.0.join("x.mgm"), &bad).unwrap_err().status(), Status::Io);
    assert!(!d.0.join("x.mgm").exists());
}

// ------------------------------------------------------------------ volumes

#[test]
fn volume_from_voxels_and_nifti_round_trip() {
    let (nx, ny, nz) = (4u32, 3u32, 2u32);
    let vox: Vec<f32> = (0..24).map(|i| (i * 9 - 70) as f32).collect();
    let aff = [0.7, 0.0, 0.0, -5.0, 0.0, 0.9, 0.0, 8.0, 0.0, 0.0, 3.0, 12.0, 0.0, 0.0, 0.0, 1.0];
    let v = Volume::from_voxels(&vox, nx, ny, nz, Some(&aff), Some("MR")).unwrap();
    let i = v.info();
    assert_eq!((i.nx, i.ny, i.nz, i.source), (4, 3, 2, VolumeSource::Voxels));
    assert_eq!(i.affine, aff);
    assert_eq!((i.min_value, i.max_value), (-70.0, 137.0));
    assert!((i.spacing[2] - 3.0).abs() < 1e-12);
    assert_eq!(v.attribute("modality"), Some("MR"));
    assert!(v.warnings().is_empty());
    assert_eq!(v.voxels().unwrap(), vox);
    let d = TempDir(temp_dir("volume"));
    let path = d.0.join("v.nii.gz");
    v.write_nifti(&path, false).unwrap();
    let back = Volume::from_nifti(&path, &VolumeOptions::default()).unwrap();
    assert_eq!(back.info().source, VolumeSource::Nifti);
    assert_eq!(back.voxels().unwrap(), vox);
    for (a, b) in back.info().affine.iter().zip(aff.iter()) {
        assert!((a - b).abs() < 1e-5, "{:?} vs {:?}", back.info().affine, aff);
    }
    let e = Volume::from_voxels(&vox[..5], nx, ny, nz, None, None).unwrap_err();
    assert_eq!(e.status(), Status::InvalidArg);
    let e = Volume::from_nifti(d.0.join("none.nii"), &VolumeOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::Io);
    let e = Volume::from_dicom(&[d.0.clone()], &VolumeOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::NotFound);
}

#[test]
fn volume_from_the_shared_ct_series() {
    let shared = std::env::var_os("MG_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/data"));
    let series = shared.join("dicom/ct_series_3slice");
    if !series.is_dir() {
        eprintln!("skipped: shared CT series absent");
        return;
    }
    let v = Volume::from_dicom(&[&series], &VolumeOptions::default()).unwrap();
    let i = v.info();
    assert_eq!((i.nx, i.ny, i.nz, i.source), (512, 512, 3, VolumeSource::Dicom));
    assert_eq!((i.n_files, i.n_skipped), (3, 1));
    assert_eq!((i.min_value, i.max_value), (-3024.0, 1381.0));
    assert!((i.affine[11] + 128.69).abs() < 1e-4, "the lowest slice first");
    let uid = v.attribute("series_uid").unwrap().to_string();
    let files = ["03.dcm", "01.dcm", "02.dcm"].map(|f| series.join(f));
    let w = Volume::from_dicom(&files, &VolumeOptions::default().series_uid(&uid)).unwrap();
    assert_eq!(v.voxels().unwrap(), w.voxels().unwrap());
    let e = Volume::from_dicom(&[&series], &VolumeOptions::default().series_uid("1.2.3")).unwrap_err();
    assert_eq!(e.status(), Status::NotFound);
    assert!(e.message().contains("1.2.3"), "{}", e.message());
    let e = Volume::from_dicom(&[&series], &VolumeOptions::default().max_voxels(1000)).unwrap_err();
    assert_eq!(e.status(), Status::Limit);
}

// ------------------------------------------------------ slices for the model

/// A 10-slice CT ramp in HU on a 4x3 grid: voxel (x, y, z) =
/// -1000 + 20 * (12z + 4y + x).
fn ramp_ct(affine: Option<&[f64; 16]>) -> (Vec<f32>, Volume) {
    let vox: Vec<f32> = (0..120).map(|i| (-1000 + 20 * i) as f32).collect();
    let v = Volume::from_voxels(&vox, 4, 3, 10, affine, Some("CT")).unwrap();
    (vox, v)
}

/// Python's round (half to even) of a non-negative value.
fn round_half_even(x: f64) -> f64 {
    let f = x.floor();
    let d = x - f;
    if d > 0.5 || (d == 0.5 && f % 2.0 != 0.0) {
        f + 1.0
    } else {
        f
    }
}

/// MedGemma's CT windows by hand: R -1024..1024, G -135..215, B 0..80.
fn ct_rgb(v: f64) -> [u8; 3] {
    let level = |lo: f64, hi: f64| round_half_even((v.clamp(lo, hi) - lo) / (hi - lo) * 255.0) as u8;
    [level(-1024.0, 1024.0), level(-135.0, 215.0), level(0.0, 80.0)]
}

#[test]
fn volume_slices_hand_computed() {
    let (vox, v) = ramp_ct(None);
    // the rule, by hand: round(i / max * (n - 1)) for i = 1..max, half to
    // even (4.5 -> 4)
    let want: Vec<u32> = (1..=4).map(|i| round_half_even(i as f64 / 4.0 * 9.0) as u32).collect();
    assert_eq!(want, vec![2, 4, 7, 9]);
    let opts = SliceOptions::default().max_slices(4).window(SliceWindow::Ct);
    let slices = v.slices(&opts).unwrap();
    assert_eq!(slices.len(), 4);
    assert_eq!(slices.iter().map(|s| s.z).collect::<Vec<_>>(), want);
    assert_eq!(v.slice_indices(&opts).unwrap(), want);
    assert_eq!(v.slice_indices(&SliceOptions::default().max_slices(3)).unwrap(), vec![3, 6, 9]);
    assert_eq!(v.slice_indices(&SliceOptions::default()).unwrap(), (0..10).collect::<Vec<u32>>());
    // slice 2 of 4 is z = 4; voxel (1, 1, 4) = -1000 + 20 * 53 = 60 HU
    assert_eq!(vox[4 * 12 + 4 + 1], 60.0);
    assert_eq!(ct_rgb(60.0), [135, 142, 191]); // 134.97, 142.07, 191.25
    let px = slices[1].image.pixels().unwrap();
    assert_eq!(&px[3 * (4 + 1)..3 * (4 + 1) + 3], &[135, 142, 191]);
    for s in &slices {
        let i = s.image.info();
        assert_eq!((i.width, i.height, i.format), (4, 3, PixelFormat::Rgb8));
        assert_eq!(s.image.attribute("modality"), Some("CT"));
        let px = s.image.pixels().unwrap();
        for y in 0..3 {
            for x in 0..4 {
                let want = ct_rgb(vox[s.z as usize * 12 + y * 4 + x] as f64);
                assert_eq!(&px[3 * (y * 4 + x)..3 * (y * 4 + x) + 3], &want, "z {} ({x}, {y})", s.z);
            }
        }
    }
    // the automatic window is CT for modality CT
    let auto = v.slices(&SliceOptions::default().max_slices(4)).unwrap();
    assert_eq!(auto[1].image.pixels().unwrap(), px);
    // x towards the patient's right: the radiological view mirrors the
    // columns, as_stored keeps the voxel order
    let flip = [-1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0];
    let (_, f) = ramp_ct(Some(&flip));
    let shown = f.slices(&SliceOptions::default().max_slices(4)).unwrap()[1].image.pixels().unwrap();
    let stored = f.slices(&SliceOptions::default().max_slices(4).as_stored(true)).unwrap()[1].image.pixels().unwrap();
    assert_eq!(stored, px);
    for y in 0..3 {
        for x in 0..4 {
            assert_eq!(shown[3 * (y * 4 + x)], stored[3 * (y * 4 + 3 - x)]);
        }
    }
    // errors: an unknown window, too many slices
    let e = v.slices(&SliceOptions::default().window(SliceWindow::Other(7))).unwrap_err();
    assert_eq!(e.status(), Status::InvalidArg);
    assert!(e.message().contains("unknown window 7"), "{e}");
    let e = v.slice_indices(&SliceOptions::default().max_slices(MAX_SLICES + 1)).unwrap_err();
    assert_eq!(e.status(), Status::Limit);
    assert!(e.message().contains("1025"), "{e}");
}

#[test]
fn volume_report_and_vqa_tokens() {
    let m = tiny();
    let (_, v) = ramp_ct(None);
    let tok = m.tokenizer().unwrap();
    let image_id = tok.special(SpecialToken::Image).unwrap();
    let per_image = m.meta_int("vision.tokens_per_image").unwrap() as usize;
    assert!(per_image > 0);
    let count = |ids: &[i32]| ids.iter().filter(|&&t| t == image_id).count();
    let mut ctx = Context::new(&m, &opts1()).unwrap();
    let four = SliceOptions::default().max_slices(4);
    let q = "Is there a mass?";
    // max_tokens 0: the prompt is read, nothing generated
    assert_eq!(ctx.vqa_volume(&v, q, &four, &GenOptions::default().max_tokens(0)).unwrap(), "");
    let ids = ctx.tokens().unwrap();
    assert_eq!(ids.len(), ctx.n_tokens() as usize);
    assert_eq!(count(&ids), 4 * per_image);
    let text = tok.detokenize(&ids, false).unwrap();
    for k in 1..=4 {
        assert!(text.contains(&format!("SLICE {k}")), "{text}");
    }
    assert!(!text.contains("SLICE 5") && text.contains(q), "{text}");
    // a few tokens, streamed or not
    let o = GenOptions::default().max_tokens(3);
    let answer = ctx.vqa_volume(&v, q, &four, &o).unwrap();
    let mut pieces = String::new();
    let streamed = ctx.vqa_volume_stream(&v, q, &four, &o, |p| {
        pieces.push_str(p);
        true
    }).unwrap();
    assert_eq!((streamed.as_str(), pieces.as_str()), (answer.as_str(), answer.as_str()));
    let more = ctx.tokens().unwrap();
    assert_eq!(&more[..ids.len()], &ids[..]);
    // report: all 10 slices (at most 85)
    let o = GenOptions::default().max_tokens(2);
    let report = ctx.report_volume(&v, &SliceOptions::default(), &o).unwrap();
    let mut n = 0;
    let streamed = ctx.report_volume_stream(&v, &SliceOptions::default(), &o, |_| {
        n += 1;
        true
    }).unwrap();
    assert_eq!(streamed, report);
    let ids = ctx.tokens().unwrap();
    assert_eq!(count(&ids), 10 * per_image);
    assert!(tok.detokenize(&ids, false).unwrap().contains("SLICE 10"));
}

#[test]
fn volume_generation_errors() {
    let m = tiny();
    let (_, v) = ramp_ct(None);
    let o = GenOptions::default().max_tokens(2);
    // 10 slices x 16 image tokens do not fit 64 positions: refused before
    // any encoding
    let mut small = Context::new(&m, &opts1().n_ctx(64)).unwrap();
    let e = small.report_volume(&v, &SliceOptions::default(), &o).unwrap_err();
    assert_eq!(e.status(), Status::ContextFull);
    assert!(e.message().contains("context"), "{e}");
    let e = small.vqa_volume(&v, "Normal?", &SliceOptions::default(), &o).unwrap_err();
    assert_eq!(e.status(), Status::ContextFull);
    assert_eq!(small.last_status(), Some(Status::ContextFull));
    let mut ctx = Context::new(&m, &opts1()).unwrap();
    let e = ctx.vqa_volume(&v, "Normal?", &SliceOptions::default().window(SliceWindow::Other(9)), &o).unwrap_err();
    assert_eq!(e.status(), Status::InvalidArg);
    assert!(e.message().contains("unknown window 9"), "{e}");
    let e = ctx.report_volume(&v, &SliceOptions::default().max_slices(5000), &o).unwrap_err();
    assert_eq!(e.status(), Status::Limit);
    assert!(e.message().contains("max_slices"), "{e}");
    assert_eq!(ctx.vqa_volume(&v, "a\0b", &SliceOptions::default(), &o).unwrap_err().status(), Status::InvalidArg);
}

/// q4_0 decoder matrices may be rearranged at load (AVX512-VNNI): the same
/// text either way; `file_layout` keeps the stored bytes, which a default
/// load then either has too or leaves empty.
#[test]
fn load_file_layout() {
    let d = TempDir(temp_dir("q4"));
    let p = d.0.join("q4.mgm");
    let st = Command::new(cli())
        .args(["mkmodel", "--shape", "tiny", "--no-vision", "--dtype", "q4_0", "-o"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(st.status.success());
    let kept = Model::load_with(&p, &LoadOptions::default().file_layout(true)).unwrap();
    let mapped = Model::load_with(&p, &LoadOptions::default().mmap(true)).unwrap();
    let def = Model::load(&p).unwrap();
    let name = "text.blk.0.ffn_up";
    let stored = mapped.tensor_by_name(name).unwrap();
    let k = kept.tensor_by_name(name).unwrap();
    assert_eq!(k.data, stored.data);
    assert_eq!(k.data.len() as u64, k.n_bytes);
    let t = def.tensor_by_name(name).unwrap();
    assert_eq!(t.dtype, k.dtype);
    assert_eq!(t.n_bytes, k.n_bytes);
    assert!(t.data.is_empty() || t.data == stored.data);
    let o = GenOptions::default().max_tokens(12);
    let want = kept.context(&opts1()).unwrap().generate("Describe the film.", &o).unwrap();
    let got = def.context(&opts1()).unwrap().generate("Describe the film.", &o).unwrap();
    assert_eq!(got, want);
}

// ------------------------------------------- reuse, progress, chat, PRS stop

const Q1: &str = "Is there a pneumothorax?";
const Q2: &str = "Any effusion?";

/// Longer than the library's 100 ms between progress reports: a closure
/// that sleeps this long is called at every check the library makes.
const PAST_INTERVAL: Duration = Duration::from_millis(105);

/// `o` with a progress closure that sends every report to the returned
/// channel, sleeps past the report interval where `pause` says so, and
/// goes on while `go` says so.
fn recorded(
    o: &GenOptions,
    pause: impl Fn(&Progress) -> bool + Send + 'static,
    go: impl Fn(&Progress) -> bool + Send + 'static,
) -> (GenOptions, mpsc::Receiver<Progress>) {
    let (tx, rx) = mpsc::channel();
    let o = o.clone().progress(move |p| {
        tx.send(*p).unwrap();
        if pause(p) {
            std::thread::sleep(PAST_INTERVAL);
        }
        go(p)
    });
    (o, rx)
}

fn watched(o: &GenOptions) -> (GenOptions, mpsc::Receiver<Progress>) {
    recorded(o, |_| false, |_| true)
}

/// The answer of a fresh context (reuse on), for comparison.
fn fresh_vqa(m: &Model, img: &Image, q: &str, o: &GenOptions) -> String {
    Context::new(m, &opts1()).unwrap().vqa(&[img], q, o).unwrap()
}

fn non_decreasing(v: impl IntoIterator<Item = u32>) -> bool {
    let v: Vec<u32> = v.into_iter().collect();
    v.windows(2).all(|w| w[0] <= w[1])
}

#[test]
fn progress_stages_and_reuse_across_calls() {
    let m = tiny();
    let img = Image::open(cxr_path()).unwrap();
    let o = GenOptions::default().max_tokens(8);
    let mut ctx = Context::new(&m, &opts1()).unwrap();

    // First call: sleeping while the prompt's first tokens are read and the
    // first two tokens are made lets every check report, so done must rise.
    let (slow, rx) = recorded(
        &o,
        |p| (p.stage == Stage::Prefill && p.done == 0) || (p.stage == Stage::Generate && p.done < 2),
        |_| true,
    );
    let first = ctx.vqa(&[&img], Q1, &slow).unwrap();
    assert_eq!(first, fresh_vqa(&m, &img, Q1, &o), "progress changes nothing");
    let ev: Vec<Progress> = rx.try_iter().collect();
    let p0 = ev[0];
    assert_eq!((p0.stage, p0.done, p0.reused, p0.cached, p0.n_blocks), (Stage::Prefill, 0, 0, 0, 1));
    assert!(p0.total > 0);
    let at = |s: Stage| ev.iter().position(|p| p.stage == s).unwrap_or_else(|| panic!("no {s:?} in {ev:?}"));
    let (enc, gen) = (at(Stage::Encode), at(Stage::Generate));
    assert!(0 < enc && enc < gen, "{ev:?}");
    assert!(ev[gen..].iter().all(|p| p.stage == Stage::Generate), "generation comes last: {ev:?}");
    for p in &ev {
        assert_eq!((p.n_blocks, p.reused, p.cached), (1, 0, 0), "{p:?}");
        assert!(p.step <= p.n_steps || p.n_steps == 0, "{p:?}");
        if p.stage == Stage::Encode {
            assert_eq!(p.block, 0);
        }
    }
    let prefill: Vec<&Progress> = ev.iter().filter(|p| p.stage == Stage::Prefill).collect();
    assert!(prefill.iter().all(|p| p.total == p0.total && p.done <= p.total));
    assert!(non_decreasing(prefill.iter().map(|p| p.done)));
    assert!(prefill.iter().any(|p| p.done > 0), "prompt reading reported as it went: {ev:?}");
    let generate = &ev[gen..];
    assert!(generate.iter().all(|p| p.total == 8 && p.done < 8));
    assert!(non_decreasing(generate.iter().map(|p| p.done)));
    assert!(generate.last().unwrap().done >= 2, "{generate:?}");
    assert!(ev.windows(2).all(|w| w[0].elapsed <= w[1].elapsed));
    assert!(ev.last().unwrap().elapsed >= PAST_INTERVAL * 4, "{ev:?}");

    // Another question about the same Image: its encoder output comes from
    // the context's cache (no Encode stage), the shared leading text is kept.
    let (w, rx) = watched(&o);
    assert_eq!(ctx.vqa(&[&img], Q2, &w).unwrap(), fresh_vqa(&m, &img, Q2, &o));
    let ev: Vec<Progress> = rx.try_iter().collect();
    assert!(ev.iter().all(|p| p.stage != Stage::Encode), "{ev:?}");
    assert!(ev[0].reused > 0, "{ev:?}");
    assert_eq!(ev.last().unwrap().cached, 1, "{ev:?}");
    let prompt_len = ev[0].reused + ev[0].total;

    // The same question again: the whole prompt is kept but what is read
    // again to make the next token's scores.
    let (w, rx) = watched(&o);
    assert_eq!(ctx.vqa(&[&img], Q2, &w).unwrap(), fresh_vqa(&m, &img, Q2, &o));
    let ev: Vec<Progress> = rx.try_iter().collect();
    assert!(ev.iter().all(|p| p.stage != Stage::Encode), "{ev:?}");
    assert_eq!(ev[0].reused + ev[0].total, prompt_len);
    assert!(ev[0].total <= 2, "{ev:?}"); // the last two tokens, read as a batch

    // The same file loaded again is another input: encoded anew.
    let again = Image::open(cxr_path()).unwrap();
    let (w, rx) = watched(&o);
    assert_eq!(ctx.vqa(&[&again], Q2, &w).unwrap(), fresh_vqa(&m, &img, Q2, &o));
    assert!(rx.try_iter().any(|p| p.stage == Stage::Encode));
}

#[test]
fn no_reuse_context() {
    assert!(ContextOptions::default().reuse);
    assert!(!opts1().reuse(false).reuse);
    let m = tiny();
    let img = Image::open(cxr_path()).unwrap();
    let o = GenOptions::default().max_tokens(8);
    let mut ctx = Context::new(&m, &opts1().reuse(false)).unwrap();
    // the same texts as with reuse, every prompt read and encoded afresh
    for q in [Q1, Q2, Q2] {
        let (w, rx) = watched(&o);
        assert_eq!(ctx.vqa(&[&img], q, &w).unwrap(), fresh_vqa(&m, &img, q, &o), "{q}");
        let ev: Vec<Progress> = rx.try_iter().collect();
        assert!(ev.iter().any(|p| p.stage == Stage::Encode), "{q}: {ev:?}");
        assert!(ev.iter().all(|p| p.reused == 0 && p.cached == 0), "{q}: {ev:?}");
    }
    assert_eq!(ctx.report(&[&img], &o).unwrap(), Context::new(&m, &opts1()).unwrap().report(&[&img], &o).unwrap());
    // chat keeps the conversation in the context: refused here
    let e = ctx.chat(&[&img], Q1, &o).unwrap_err();
    assert_eq!(e.status(), Status::Unsupported, "{e}");
    assert!(e.message().contains("MG_CONTEXT_NO_REUSE"), "{e}");
}

#[test]
fn progress_stops_the_call() {
    let m = tiny();
    let img = Image::open(cxr_path()).unwrap();
    let o = GenOptions::default().max_tokens(8);
    let full = fresh_vqa(&m, &img, Q1, &o);
    let mut ctx = Context::new(&m, &opts1()).unwrap();

    // false at the first report: stopped while reading the prompt
    let (stop, rx) = recorded(&o, |_| false, |_| false);
    let e = ctx.vqa(&[&img], Q1, &stop).unwrap_err();
    assert_eq!(e.status(), Status::Interrupted, "{e}");
    assert!(e.message().contains("progress callback"), "{e}");
    assert_eq!(e.partial_text(), None, "no answer: stopped while reading the prompt");
    assert_eq!(rx.try_iter().count(), 1, "not called again after it said stop");
    assert_eq!(ctx.last_status(), Some(Status::Interrupted));
    assert_eq!(ctx.vqa(&[&img], Q1, &o).unwrap(), full, "the context works afterwards");

    // false once two tokens are made: the text so far, even with a stream
    // closure that goes on (unlike its own false, which ends with Ok)
    let long = GenOptions::default().max_tokens(40);
    let prompt = "Write a very long story.";
    let whole = ctx.generate(prompt, &long).unwrap();
    let (stop2, _rx) = recorded(
        &long,
        |p| p.stage == Stage::Generate && p.done < 2,
        |p| !(p.stage == Stage::Generate && p.done >= 2),
    );
    let mut streamed = String::new();
    let e = ctx
        .generate_stream(prompt, &stop2, |piece| {
            streamed.push_str(piece);
            true
        })
        .unwrap_err();
    assert_eq!(e.status(), Status::Interrupted, "{e}");
    let partial = e.partial_text().expect("partial text");
    assert!(!partial.is_empty() && whole.starts_with(partial) && partial.len() < whole.len(), "{partial:?} {whole:?}");
    assert_eq!(streamed, partial);
    // a stream closure's false is still an early Ok with progress set
    let (w, _rx) = watched(&long);
    let early = ctx.generate_stream(prompt, &w, |_| false).unwrap();
    assert!(whole.starts_with(&early));

    // clones share the closure; equality is identity
    assert_eq!(w.clone(), w);
    assert_ne!(w, long);
    assert_ne!(watched(&long).0, w);
}

#[test]
fn progress_panic_reaches_the_caller() {
    let m = tiny();
    let img = Image::open(cxr_path()).unwrap();
    let o = GenOptions::default().max_tokens(8);
    let full = fresh_vqa(&m, &img, Q1, &o);
    let mut ctx = Context::new(&m, &opts1()).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let after_panic = Arc::new(AtomicBool::new(false));
    let (c, a) = (calls.clone(), after_panic.clone());
    let mut panicked = false;
    // panics once, at the first Encode report; fine afterwards
    let once = o.clone().progress(move |p| {
        c.fetch_add(1, Ordering::SeqCst);
        if panicked {
            a.store(true, Ordering::SeqCst);
        } else if p.stage == Stage::Encode {
            panicked = true;
            panic!("progress boom");
        }
        true
    });
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ctx.vqa(&[&img], Q1, &once)));
    let payload = r.expect_err("the panic propagates");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"progress boom"));
    assert!(!after_panic.load(Ordering::SeqCst), "not called again in that call");
    assert!(calls.load(Ordering::SeqCst) >= 2);
    assert_eq!(ctx.last_status(), Some(Status::Interrupted));
    // the context and the very same options work afterwards
    assert_eq!(ctx.vqa(&[&img], Q1, &once).unwrap(), full);
    assert!(after_panic.load(Ordering::SeqCst));
    assert_eq!(ctx.vqa(&[&img], Q1, &o).unwrap(), full);
}

#[test]
fn chat_turns() {
    let (_model_dir, model_file) = tiny_file();
    let m = Model::load(&model_file).unwrap();
    let img = Image::open(cxr_path()).unwrap();
    let o = GenOptions::default().max_tokens(8);
    let mut ctx = Context::new(&m, &opts1()).unwrap();
    // the first turn is the VQA prompt: the same answer
    let a1 = ctx.chat(&[&img], Q1, &o).unwrap();
    assert_eq!(a1, fresh_vqa(&m, &img, Q1, &o));
    let held = ctx.n_tokens();
    // the second turn reads only itself: no encoding, the conversation kept
    let (w, rx) = watched(&o);
    let mut pieces = String::new();
    let a2 = ctx
        .chat_stream(&[], "Why?", &w, |p| {
            pieces.push_str(p);
            true
        })
        .unwrap();
    assert_eq!(pieces, a2);
    let ev: Vec<Progress> = rx.try_iter().collect();
    assert!(ev.iter().all(|p| p.stage != Stage::Encode), "{ev:?}");
    assert!(ev[0].reused >= held - 1 && ev[0].total > 0, "held {held}: {ev:?}");
    assert!(ctx.n_tokens() > held);
    // the CLI's chat (a peer over the same C API) answers the same
    let cxr = cxr_path();
    let out = Command::new(cli())
        .args(["chat", cxr.to_str().unwrap(), "-m", model_file.to_str().unwrap(), "-n", "8", "--threads", "1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(format!("{Q1}\nWhy?\n").as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{a1}\n{a2}\n"));
    // a third turn, with an image again
    ctx.chat(&[&img], "And this one?", &o).unwrap();
    // another generating call ends the conversation: the next chat opens a
    // new one (so does reset)
    ctx.vqa(&[&img], Q2, &o).unwrap();
    assert_eq!(ctx.chat(&[&img], Q1, &o).unwrap(), a1);
    ctx.reset().unwrap();
    assert_eq!(ctx.chat(&[&img], Q1, &o).unwrap(), a1);
    assert_eq!(ctx.chat(&[], "Why?", &o).unwrap(), a2);
    assert_eq!(ctx.chat(&[], "a\0b", &o).unwrap_err().status(), Status::InvalidArg);
}

#[test]
fn prs_progress_and_interrupt() {
    let d = TempDir(temp_dir("prsstop"));
    let prefix = write_plink(&d.0);
    let score = d.0.join("w.score");
    let w1 = [3.0, 4.5, 0.0, 2.5]; // as in prs_hand_computed
    let close = |a: &[f64]| a.len() == 4 && a.iter().zip(w1).all(|(x, y)| (x - y).abs() < 1e-9);
    // one variant a block: two blocks, a check between them
    let opts = PrsOptions::default().n_threads(1).block_variants(1);
    let mut p = Prs::open_plink(&prefix, &opts).unwrap();
    p.add_scores(&score).unwrap();

    let mut seen = Vec::new();
    p.compute_with_progress(|done, total| {
        seen.push((done, total));
        true
    })
    .unwrap();
    assert!(close(&p.sums(0).unwrap()));
    let total = seen[0].1;
    assert_eq!(total, 2, "two variant rows: {seen:?}");
    assert_eq!(seen.first(), Some(&(0, total)));
    assert_eq!(seen.last(), Some(&(total, total)));
    assert!(seen.iter().all(|&(d, t)| t == total && d <= t));
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0));

    // false stops it: no results until the next compute
    let mut calls = 0;
    let e = p
        .compute_with_progress(|_, _| {
            calls += 1;
            false
        })
        .unwrap_err();
    assert_eq!(e.status(), Status::Interrupted, "{e}");
    assert!(e.message().contains("progress callback"), "{e}");
    assert_eq!(calls, 1);
    assert_eq!(p.sums(0).unwrap_err().status(), Status::Misuse);
    p.compute().unwrap(); // the closure is no longer registered
    assert!(close(&p.sums(0).unwrap()));

    // a panic reaches the caller after the compute returned
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        p.compute_with_progress(|_, _| panic!("prs boom"))
    }));
    assert_eq!(r.expect_err("panics").downcast_ref::<&str>(), Some(&"prs boom"));
    assert_eq!(p.sums(0).unwrap_err().status(), Status::Misuse);
    p.compute().unwrap();
    assert!(close(&p.sums(0).unwrap()));

    // from another thread: the compute waits in its first report until the
    // interrupt was made, and stops before the second block
    let stopper = p.interrupter();
    let (to_thread, from_compute) = mpsc::channel::<()>();
    let (ack, acked) = mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        from_compute.recv().unwrap();
        stopper.interrupt().unwrap();
        ack.send(()).unwrap();
    });
    let mut reports = 0;
    let e = p
        .compute_with_progress(|_, _| {
            reports += 1;
            if reports == 1 {
                to_thread.send(()).unwrap();
                acked.recv().unwrap();
            }
            true
        })
        .unwrap_err();
    t.join().unwrap();
    assert_eq!(e.status(), Status::Interrupted, "{e}");
    assert!(e.message().contains("mg_prs_interrupt"), "{e}");
    assert_eq!(reports, 1);
    assert_eq!(p.sums(0).unwrap_err().status(), Status::Misuse);

    // an interrupt while no compute runs is dropped when the next starts
    p.interrupter().interrupt().unwrap();
    p.compute().unwrap();
    assert!(close(&p.sums(0).unwrap()));

    // the interrupter may outlive the set, and be moved and shared
    let late = Arc::new(p.interrupter());
    drop(p);
    let l2 = late.clone();
    std::thread::spawn(move || l2.interrupt().unwrap()).join().unwrap();
    late.interrupt().unwrap();
}

/// Contexts of one batch generating in several threads at once share
/// decode steps, and each text is the one a context of its own gives.
#[test]
fn batch_threads_keep_their_text() {
    let m = tiny();
    let prompts: Vec<String> = (0..4).map(|i| format!("request {i} about the film")).collect();
    let gens: Vec<GenOptions> = (0..4u32)
        .map(|i| {
            let g = GenOptions::default().max_tokens(20 + 5 * i);
            if i == 1 { g.temperature(0.8).seed(7) } else { g }
        })
        .collect();
    let base = opts1().reuse(false);
    let want: Vec<String> = (0..4)
        .map(|i| Context::new(&m, &base).unwrap().generate(&prompts[i], &gens[i]).unwrap())
        .collect();
    let b = medgemini::Batch::new(
        &m,
        &medgemini::BatchOptions::default().n_threads(1).max_rows(4).wait(std::time::Duration::from_millis(200)),
    )
    .unwrap();
    let got: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|i| {
                let (m, o, p, g) = (&m, base.clone().batch(&b), &prompts[i], &gens[i]);
                s.spawn(move || Context::new(m, &o).unwrap().generate(p, g).unwrap())
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(got, want);
    let st = b.stats().unwrap();
    assert!(st.steps > 0);
    assert_eq!(st.by_rows.iter().sum::<u64>(), st.steps);
    assert_eq!(st.by_rows.iter().enumerate().map(|(k, n)| (k as u64 + 1) * n).sum::<u64>(), st.rows);
    // a context outlives the Batch value it was made with
    let mut c = Context::new(&m, &base.clone().batch(&b)).unwrap();
    drop(b);
    assert_eq!(c.generate(&prompts[0], &gens[0]).unwrap(), want[0]);
    // refused: too many rows, a batch of another model
    assert!(medgemini::Batch::new(&m, &medgemini::BatchOptions::default().max_rows(9)).is_err());
    let other = tiny();
    let ob = medgemini::Batch::new(&other, &Default::default()).unwrap();
    let e = Context::new(&m, &base.clone().batch(&ob)).unwrap_err();
    assert_eq!(e.status(), Status::InvalidArg);
    assert!(e.message().contains("another model"), "{e}");
    let e = Context::new(&m, &opts1().n_ctx(1 << 30)).unwrap_err();
    assert!(e.message().contains("context length"), "{e}");
}

/// A report written as a DICOM SR in the study of the shared CR image.
#[test]
fn write_sr_in_the_source_study() {
    let png = cxr_path();
    let d = TempDir(temp_dir("sr"));
    let out = d.0.join("sr.dcm");
    let e = medgemini::write_sr(&out, "text", &[&png], &SrOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::ImageFormat);
    assert!(!out.exists());
    let cr = repo_root().join("../shared/data/dicom/cr_chest/RG1_J2KI.dcm");
    if !cr.exists() {
        return; // the shared data tree is not here
    }
    medgemini::write_sr(&out, "Findings: Clear.\nImpression: Normal.", &[&cr],
                        &SrOptions::default().model_name("demo.mgm").series_number(3)).unwrap();
    let data = std::fs::read(&out).unwrap();
    assert_eq!(&data[128..132], b"DICM");
    assert!(data.windows(8).any(|w| w == b"demo.mgm"));
    // the source's Study Instance UID is in the SR
    assert!(data.windows(42).any(|w| w == b"1.3.6.1.4.1.5962.1.2.9.20040826185059.5457"));
}

/// The shared CR and CT folders as two studies.
#[test]
fn scan_studies_of_the_shared_corpus() {
    let d = repo_root().join("../shared/data/dicom");
    if !d.exists() {
        return;
    }
    let set = medgemini::scan_studies(&[d.join("cr_chest"), d.join("ct_series_3slice")], 0).unwrap();
    assert_eq!(set.studies.len(), 2);
    assert_eq!(set.studies[0].kind, "volume");
    assert_eq!(set.studies[1].kind, "radiograph");
    assert!(set.studies[1].frontal.as_ref().unwrap().ends_with("RG1_J2KI.dcm"));
    assert_eq!(set.studies[1].prior, None);
    let ct = set.studies[0].series.iter().find(|s| s.modality.as_deref() == Some("CT")).unwrap();
    assert_eq!(ct.files.len(), 3);
    assert!(!set.warnings.is_empty());
    let e = medgemini::scan_studies(&[d.join("no-such-folder")], 0).unwrap_err();
    assert_eq!(e.status(), Status::Io);
}
