//! Polygenic risk prediction (`mg_prs_predict`, `mg_prs_predict_batch`,
//! `mg_prs_score_image`) with a random-weight model that has a genomics
//! encoder (`medgemini mkmodel --shape tiny --genome 4,3`): traits t0..t3,
//! thresholds p0..p2, reference mean 0.01*k and std 1+0.1*(k%5) for score
//! k = trait*3 + threshold, a 2x2 grid of 32-px squares, z_scale 32, answer
//! words "Y" and "N". The score image is checked pixel by pixel against the
//! layout computed here, the risk against the context's logits, the batch
//! against single calls.
use medgemini::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

const TRAITS: usize = 4;
const THRESHOLDS: usize = 3;
const CELL: usize = 32;
const Z_SCALE: f64 = 32.0;
const QUESTION: &str = "Does this individual have coronary artery disease?";

fn cli() -> PathBuf {
    std::env::var_os("MG_CLI").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../bin/medgemini")
    })
}

/// A model made by `medgemini mkmodel --shape tiny EXTRA... -o FILE`,
/// loaded (mapped) before its file is removed.
fn mkmodel(extra: &[&str]) -> Model {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "mg-rs-prs-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("model.mgm");
    let out = Command::new(cli())
        .args(["mkmodel", "--shape", "tiny"])
        .args(extra)
        .arg("-o")
        .arg(&p)
        .output()
        .expect("run medgemini mkmodel (set MG_CLI)");
    assert!(out.status.success(), "mkmodel failed: {}", String::from_utf8_lossy(&out.stderr));
    let m = Model::load(&p).expect("load the model");
    let _ = std::fs::remove_dir_all(&dir);
    m
}

fn genome_model() -> Model {
    mkmodel(&["--genome", "4,3"])
}

/// A context that reads every prompt afresh: the exact comparisons between
/// calls below need the same batch split each time (with reuse, the kept
/// prefix is not read again, and the rest's scores may differ by float
/// rounding; `risks_with_reuse` checks that context against this one).
fn ctx(m: &Model) -> Context {
    Context::new(m, &ContextOptions::default().n_threads(1).reuse(false)).unwrap()
}

fn score_name(t: usize, c: usize) -> String {
    format!("t{t}_p{c}")
}

fn reference(k: usize) -> (f64, f64) {
    (0.01 * k as f64, 1.0 + 0.1 * (k % 5) as f64)
}

/// Python's round: half to even.
fn round_half_even(x: f64) -> f64 {
    let f = x.floor();
    let d = x - f;
    if d > 0.5 || (d == 0.5 && f % 2.0 != 0.0) {
        f + 1.0
    } else {
        f
    }
}

/// The grey level of score k (None: not given).
fn level(k: usize, v: Option<f64>) -> u8 {
    match v {
        Some(v) if !v.is_nan() => {
            let (mean, std) = reference(k);
            round_half_even(128.0 + Z_SCALE * (v - mean) / std).clamp(0.0, 255.0) as u8
        }
        _ => 128,
    }
}

/// Compares every pixel of the score image with the layout computed from
/// the scores (names the model does not know are ignored).
fn check_image(img: &Image, scores: &[f64], names: &[&str]) {
    let info = img.info();
    let side = 2 * CELL;
    assert_eq!((info.width as usize, info.height as usize, info.format), (side, side, PixelFormat::Rgb8));
    let px = img.pixels().unwrap();
    assert_eq!(px.len(), side * side * 3);
    let given: HashMap<&str, f64> = names.iter().copied().zip(scores.iter().copied()).collect();
    for t in 0..TRAITS {
        let want: Vec<u8> = (0..THRESHOLDS)
            .map(|c| level(t * THRESHOLDS + c, given.get(score_name(t, c).as_str()).copied()))
            .collect();
        let (r0, c0) = ((t / 2) * CELL, (t % 2) * CELL);
        for y in r0..r0 + CELL {
            for x in c0..c0 + CELL {
                let i = 3 * (y * side + x);
                assert_eq!(&px[i..i + 3], &want[..], "trait {t} pixel ({y}, {x})");
            }
        }
    }
}

#[test]
fn metadata_is_what_the_tests_assume() {
    let m = genome_model();
    assert_eq!(m.meta_string_array("genome.traits").unwrap(), ["t0", "t1", "t2", "t3"]);
    assert_eq!(m.meta_string_array("genome.thresholds").unwrap(), ["p0", "p1", "p2"]);
    assert_eq!(m.meta_int_array("genome.grid").unwrap(), [2, 2]);
    assert_eq!(m.meta_int("genome.cell").unwrap(), CELL as i64);
    assert_eq!(m.meta_float("genome.z_scale").unwrap(), Z_SCALE);
    let mean = m.meta_float_array("genome.reference_mean").unwrap();
    let std = m.meta_float_array("genome.reference_std").unwrap();
    for k in 0..TRAITS * THRESHOLDS {
        assert!((mean[k] - reference(k).0).abs() < 1e-12 && (std[k] - reference(k).1).abs() < 1e-12, "score {k}");
    }
}

#[test]
fn score_image_layout() {
    let m = genome_model();
    let mut names: Vec<String> = Vec::new();
    let mut scores: Vec<f64> = Vec::new();
    for t in 0..TRAITS {
        for c in 0..THRESHOLDS {
            if (t, c) == (3, 1) {
                continue; // missing: the reference mean, 128
            }
            names.push(score_name(t, c));
            scores.push(0.37 * (t + 1) as f64 - 0.81 * c as f64);
        }
    }
    let mut set = |n: &str, v: f64| match names.iter().position(|x| x == n) {
        Some(i) => scores[i] = v,
        None => {
            names.push(n.to_string());
            scores.push(v);
        }
    };
    set("t1_p0", 9.0); // clipped to 255
    set("t2_p2", -9.0); // clipped to 0
    set("t0_p2", f64::NAN); // NaN: 128
    set("t9_p0", 5.0); // unknown names are ignored
    set("PGS000001", -5.0);
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let img = m.score_image(&scores, &refs).unwrap();
    check_image(&img, &scores, &refs);
    assert_eq!((level(3, Some(9.0)), level(8, Some(-9.0))), (255, 0));

    // round half to even: score 0 has mean 0 and std 1, so 128 + 32 v
    for (v, grey) in [(0.015625, 128u8), (0.046875, 130), (-0.015625, 128), (-0.046875, 126), (0.03125, 129)] {
        let px = m.score_image(&[v], &["t0_p0"]).unwrap().pixels().unwrap();
        assert_eq!(&px[..3], &[grey, 128, 128], "t0_p0 = {v}");
        assert_eq!(level(0, Some(v)), grey);
    }

    // one score: every other square is 128
    let one = m.score_image(&[1.5], &["t2_p1"]).unwrap();
    check_image(&one, &[1.5], &["t2_p1"]);
}

#[test]
fn score_errors() {
    let m = genome_model();
    let e = m.score_image(&[1.0, 2.0, 3.0], &["t0_p0", "t1_p1", "t0_p0"]).unwrap_err();
    assert_eq!(e.status(), Status::InvalidArg);
    assert!(e.message().contains("t0_p0"), "{e}");
    assert_eq!(m.score_image(&[1.0], &["nothing_known"]).unwrap_err().status(), Status::InvalidArg);
    assert_eq!(m.score_image(&[1.0, 2.0], &["t0_p0"]).unwrap_err().status(), Status::InvalidArg);
    let mut c = ctx(&m);
    let e = c.prs_predict(&[1.0, 2.0], &["t0_p0", "t0_p0"], QUESTION, &GenOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::InvalidArg);
    assert!(e.message().contains("twice"), "{e}");
    assert_eq!(c.prs_risk(&[1.0], &["nothing_known"], QUESTION).unwrap_err().status(), Status::InvalidArg);
    assert_eq!(c.prs_risk(&[1.0], &["t0_p0"], "a\0b").unwrap_err().status(), Status::InvalidArg);
}

fn answer_ids(m: &Model) -> (usize, usize) {
    assert_eq!(m.meta_string("genome.answer_yes").unwrap(), "Y");
    assert_eq!(m.meta_string("genome.answer_no").unwrap(), "N");
    let tok = m.tokenizer().unwrap();
    let (y, n) = (tok.tokenize("Y", false, false).unwrap(), tok.tokenize("N", false, false).unwrap());
    assert!(y.len() == 1 && n.len() == 1 && y != n, "{y:?} {n:?}");
    (y[0] as usize, n[0] as usize)
}

fn risk_from_logits(l: &[f32], yes: usize, no: usize) -> f64 {
    1.0 / (1.0 + (l[no] as f64 - l[yes] as f64).exp())
}

const NAMES: [&str; 5] = ["t0_p0", "t1_p1", "t2_p0", "t3_p2", "t1_p2"];
const SCORES: [f64; 5] = [0.5, -1.2, 0.8, 2.0, 0.1];

#[test]
fn prs_predict_risk_is_the_answer_words_share() {
    let m = genome_model();
    let (yes, no) = answer_ids(&m);
    let mut c = ctx(&m);
    let (text, risk) = c.prs_predict(&SCORES, &NAMES, QUESTION, &GenOptions::default().max_tokens(0)).unwrap();
    assert_eq!(text, "");
    assert!(risk > 0.0 && risk < 1.0, "{risk}");
    let want = risk_from_logits(&c.logits().unwrap(), yes, no);
    assert!((risk - want).abs() < 1e-12, "risk {risk}, from the logits {want}");
    // the prompt holds one block of the model's image tokens
    let img_tok = m.tokenizer().unwrap().special(SpecialToken::Image).unwrap();
    let n_img = c.tokens().unwrap().iter().filter(|&&t| t == img_tok).count() as i64;
    assert_eq!(n_img, m.meta_int("vision.tokens_per_image").unwrap());

    let r = c.prs_risk(&SCORES, &NAMES, QUESTION).unwrap();
    assert_eq!(r, risk);
    let want = risk_from_logits(&c.logits().unwrap(), yes, no);
    assert!((r - want).abs() < 1e-12, "prs_risk {r}, from the logits {want}");

    // with text, streamed: the same risk
    let mut streamed = String::new();
    let (text, risk2) = c
        .prs_predict_stream(&SCORES, &NAMES, QUESTION, &GenOptions::default().max_tokens(5), |p| {
            streamed.push_str(p);
            true
        })
        .unwrap();
    assert_eq!(risk2, risk);
    assert_eq!(text, streamed);
    assert_eq!(c.prs_predict(&SCORES, &NAMES, QUESTION, &GenOptions::default().max_tokens(5)).unwrap(), (text, risk));

    // other scores, another risk; unknown names change nothing
    let other = c.prs_risk(&[-3.0, 3.0, -2.5], &["t0_p0", "t1_p1", "t3_p2"], QUESTION).unwrap();
    assert!(other > 0.0 && other < 1.0 && other != risk, "{other} {risk}");
    let want = risk_from_logits(&c.logits().unwrap(), yes, no);
    assert!((other - want).abs() < 1e-12);
    let mut names = NAMES.to_vec();
    names.push("PGS000001");
    let mut scores = SCORES.to_vec();
    scores.push(7.0);
    assert_eq!(c.prs_risk(&scores, &names, QUESTION).unwrap(), risk);
}

#[test]
fn prs_predict_batch_equals_single_calls() {
    let m = genome_model();
    let mut c = ctx(&m);
    let names = ["t0_p0", "t1_p1", "t2_p2", "t3_p0"];
    let rows: [[f64; 4]; 3] = [[0.5, -1.2, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0], [3.0, 1.0, -2.0, f64::NAN]];
    let questions = [QUESTION, "Does this individual have type 2 diabetes?"];
    let flat: Vec<f64> = rows.iter().flatten().copied().collect();
    let got = c.prs_predict_batch(&flat, &names, &questions).unwrap();
    assert_eq!(got.len(), 6);
    for (i, row) in rows.iter().enumerate() {
        for (q, question) in questions.iter().enumerate() {
            let single = c.prs_risk(row, &names, question).unwrap();
            assert!(single > 0.0 && single < 1.0);
            let b = got[i * questions.len() + q];
            assert!((b - single).abs() <= 1e-6, "batch[{i}][{q}] = {b}, single call {single}");
        }
    }
    assert_eq!(c.prs_predict_batch(&flat[..5], &names, &questions).unwrap_err().status(), Status::InvalidArg);
    assert_eq!(c.prs_predict_batch(&flat, &names, &[]).unwrap_err().status(), Status::InvalidArg);
}

#[test]
fn model_without_genome_is_unsupported() {
    let m = mkmodel(&["--dtype", "q8_0"]); // an image encoder, no genome.* metadata
    assert!(m.meta_string_array("genome.traits").is_err());
    let mut c = ctx(&m);
    let errs = [
        m.score_image(&[0.5], &["t0_p0"]).unwrap_err(),
        c.prs_predict(&[0.5], &["t0_p0"], QUESTION, &GenOptions::default()).unwrap_err(),
        c.prs_risk(&[0.5], &["t0_p0"], QUESTION).unwrap_err(),
        c.prs_predict_batch(&[0.5], &["t0_p0"], &[QUESTION]).unwrap_err(),
    ];
    for (i, e) in errs.iter().enumerate() {
        assert_eq!(e.status(), Status::Unsupported, "call {i}: {e}");
        assert!(e.message().contains("genom"), "call {i}: {e}");
    }
}

#[test]
fn risks_with_reuse() {
    let m = genome_model();
    let names = ["t0_p0", "t1_p1", "t2_p2", "t3_p0"];
    let rows: [[f64; 4]; 2] = [[0.5, -1.2, 2.0, 0.0], [3.0, 1.0, -2.0, 0.4]];
    let questions = [QUESTION, "Does this individual have type 2 diabetes?"];
    let mut fresh = ctx(&m);
    let mut reuse = Context::new(&m, &ContextOptions::default().n_threads(1)).unwrap();
    // each prompt shares a prefix with the last: the same call again, the
    // other question, the other individual
    for (i, q) in [(0, 0), (0, 0), (0, 1), (1, 1), (1, 0), (0, 0)] {
        let want = fresh.prs_risk(&rows[i], &names, questions[q]).unwrap();
        let got = reuse.prs_risk(&rows[i], &names, questions[q]).unwrap();
        assert!((got - want).abs() <= 1e-6, "individual {i}, question {q}: reuse {got}, fresh {want}");
    }
    // the score set read before comes from the encoder-output cache
    let (tx, rx) = std::sync::mpsc::channel();
    let o = GenOptions::default().max_tokens(2).progress(move |p| tx.send(*p).is_ok());
    let (text, risk) = reuse.prs_predict(&rows[1], &names, questions[1], &o).unwrap();
    let ev: Vec<Progress> = rx.try_iter().collect();
    assert!(ev.iter().all(|p| p.stage != Stage::Encode), "{ev:?}");
    assert_eq!(ev.last().unwrap().cached, 1, "{ev:?}");
    let (want_text, want_risk) = fresh.prs_predict(&rows[1], &names, questions[1], &o).unwrap();
    assert_eq!(text, want_text);
    assert!((risk - want_risk).abs() <= 1e-6, "{risk} {want_risk}");
}
