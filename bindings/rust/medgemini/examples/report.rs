//! Writes a radiology report for one study and streams it to stdout.
//!
//!     cargo run --example report -- MODEL.mgm IMAGE... [--max-tokens N] [--timeout SECONDS]
//!
//! With --timeout, a watchdog thread interrupts the generation after that
//! many seconds and the text made so far is printed.
use medgemini::{Context, ContextOptions, GenOptions, Image, Model, Status};
use std::io::Write;
use std::time::Duration;

fn main() {
    if let Err(e) = run() {
        eprintln!("report: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: report MODEL.mgm IMAGE... [--max-tokens N] [--timeout SECONDS]";
    let model_path = args.next().ok_or(usage)?;
    let mut images = Vec::new();
    let mut max_tokens = 256;
    let mut timeout = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--max-tokens" => max_tokens = args.next().ok_or(usage)?.parse()?,
            "--timeout" => timeout = Some(Duration::from_secs_f64(args.next().ok_or(usage)?.parse()?)),
            _ => images.push(Image::open(&a)?),
        }
    }
    if images.is_empty() {
        return Err(usage.into());
    }

    let model = Model::load(&model_path)?;
    let info = model.info();
    eprintln!("model {} ({} parameters), library {}", info.name, info.n_params, medgemini::version());
    let mut ctx = Context::new(&model, &ContextOptions::default())?;

    if let Some(t) = timeout {
        let stop = ctx.interrupter();
        std::thread::spawn(move || {
            std::thread::sleep(t);
            let _ = stop.interrupt();
        });
    }

    let refs: Vec<&Image> = images.iter().collect();
    let opts = GenOptions::default().max_tokens(max_tokens);
    let mut out = std::io::stdout();
    let result = ctx.report_stream(&refs, &opts, |piece| {
        let _ = out.write_all(piece.as_bytes());
        let _ = out.flush();
        true
    });
    println!();
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.status() == Status::Interrupted => {
            eprintln!("(interrupted after {} bytes)", e.partial_text().map_or(0, str::len));
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
