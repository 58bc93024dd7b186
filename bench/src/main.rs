//! `tether-bench`: see the library docs (`tether_bench`) for the map and
//! `tether-bench --help` for the scenarios.

use std::process::ExitCode;

use clap::Parser;
use tether_bench::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.scenario.run().await {
        Ok(report) if cli.json => {
            println!("{}", report.to_json());
            ExitCode::SUCCESS
        }
        Ok(report) => {
            print!("{}", report.to_table());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tether-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
