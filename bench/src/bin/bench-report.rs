//! `bench-report`: renders `BENCHMARKS.md` and the ratio chart from a
//! `scripts/bench-compare` results directory.
//!
//! ```text
//! bench-report bench/results/<run-id> [--out BENCHMARKS.md] [--chart bench/benchmarks.svg]
//!              [--findings bench/findings.md]
//! ```
//!
//! It only reads what the runs wrote (see [`compare`]); re-rendering an old
//! run after editing `bench/findings.md` is how findings reach the page.

// The renderer is not part of the load generator library: it lives beside
// this binary so the library's surface stays the scenarios.
#[path = "../compare.rs"]
mod compare;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

/// Renders BENCHMARKS.md and the chart from a results directory.
#[derive(Debug, Parser)]
#[command(name = "bench-report", version, about)]
struct Args {
    /// The results directory (`bench/results/<run-id>`).
    results: PathBuf,
    /// Where to write the Markdown.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// Where to write the SVG chart.
    #[arg(long, default_value = "bench/benchmarks.svg")]
    chart: PathBuf,
    /// Hand-written findings copied verbatim into the page, if the file exists.
    #[arg(long, default_value = "bench/findings.md")]
    findings: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-report: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let results = compare::Results::read(&args.results)?;
    let findings = std::fs::read_to_string(&args.findings).ok();
    compare::render_svg(&results, &args.chart)?;
    let chart = relative_to(&args.chart, args.out.parent().unwrap_or(Path::new("")));
    let md = compare::render_markdown(&results, findings.as_deref(), &chart);
    std::fs::write(&args.out, md).map_err(|e| format!("{}: {e}", args.out.display()))?;
    Ok(())
}

/// `path` as a link from a file in `dir` (both as given, or both absolute).
fn relative_to(path: &Path, dir: &Path) -> String {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (path, dir) = (abs(path), abs(dir));
    match path.strip_prefix(&dir) {
        Ok(rel) => rel.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}
