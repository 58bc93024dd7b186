//! The `tether` binary: parses the command line, loads configuration, sets up
//! logging, runs the gateway until SIGINT/SIGTERM and shuts it down cleanly;
//! SIGHUP reloads the TLS certificates.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tether_gateway::config::{Config, LogFormat};
use tether_gateway::server::Gateway;

/// Tether: MQTT devices, AMQP 0-9-1 apps and SQS/SNS clients on one pub/sub core.
#[derive(Parser)]
#[command(name = "tether", version, about, long_about = None)]
struct Cli {
    /// TOML configuration file (see tether.example.toml). Environment variables
    /// `TETHER_<SECTION>__<KEY>` override it, e.g. TETHER_MQTT__LISTEN=127.0.0.1:18830.
    #[arg(long, short = 'c', value_name = "FILE", env = "TETHER_CONFIG_FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Read a password from standard input and print its argon2 hash for `[[auth.users]]`.
    HashPassword,
    /// Load and validate the configuration, print it as TOML-equivalent JSON, and exit.
    CheckConfig,
    /// Inspect and manage a running gateway through its admin API.
    Admin(tether_gateway::admin_cli::AdminArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::HashPassword) => hash_password(),
        Some(Command::Admin(args)) => tether_gateway::admin_cli::run(args),
        Some(Command::CheckConfig) => match load(cli.config) {
            Ok(config) => {
                match serde_json::to_string_pretty(&config) {
                    Ok(text) => println!("{text}"),
                    Err(e) => eprintln!("tether: {e}"),
                }
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        None => match load(cli.config) {
            Ok(config) => run(config),
            Err(code) => code,
        },
    }
}

fn load(path: Option<PathBuf>) -> Result<Config, ExitCode> {
    // The env var naming the config file is ours, not a config key.
    let env = std::env::vars().filter(|(k, _)| k != "TETHER_CONFIG_FILE");
    Config::load_from(path.as_deref(), env).map_err(|e| {
        eprintln!("tether: invalid configuration: {e}");
        ExitCode::from(2)
    })
}

fn run(config: Config) -> ExitCode {
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tether")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tether: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        // Installed before anything starts: a SIGTERM that arrives while the
        // gateway is starting (or right after it says so) must stop it
        // cleanly, not kill it.
        let mut signals = Signals::install();
        let gateway = match Gateway::start(config).await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("tether: {e}");
                return ExitCode::from(2);
            }
        };
        let signal = loop {
            match signals.recv().await {
                "SIGHUP" => gateway.reload_tls(),
                stop => break stop,
            }
        };
        tracing::info!(signal, "shutting down");
        gateway.shutdown().await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

/// SIGTERM and SIGINT (stop), and SIGHUP (reload certificates), caught from
/// the moment they are installed.
struct Signals(
    Option<(
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
    )>,
);

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(term), Ok(int), Ok(hup)) => Signals(Some((term, int, hup))),
            _ => Signals(None),
        }
    }

    /// Waits for the next signal; its name.
    async fn recv(&mut self) -> &'static str {
        let Some((term, int, hup)) = self.0.as_mut() else {
            // Without signal handlers the only way out is being killed.
            std::future::pending::<()>().await;
            unreachable!()
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = hup.recv() => "SIGHUP",
        }
    }
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Text => builder.init(),
        // One object per line: timestamp, level, target, message and the
        // event's fields at the top level; never colour codes.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_target(true)
            .with_ansi(false)
            .init(),
    }
}

fn hash_password() -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("tether: cannot read the password from standard input: {e}");
        return ExitCode::FAILURE;
    }
    let password = input.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!("tether: the password is empty");
        return ExitCode::FAILURE;
    }
    println!(
        "{}",
        tether_gateway::auth::hash_password(password.as_bytes())
    );
    ExitCode::SUCCESS
}
