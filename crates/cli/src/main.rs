//! The `imsgate` binary: argument parsing, logging setup and wiring. Thin by design.
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod demo;
mod demo_app;
mod demo_tls;
mod doctor;
mod keys;
mod logging;
mod reload;
mod run;
mod secrets_cmd;
mod user_tokens;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `imsgate --version`: the release and the git commit it was built from (build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("IMSGATE_GIT_COMMIT"),
    ")"
);

/// imsgate: the secure backend for Adobe IMS credentials. It mints and caches IMS tokens, hands
/// short-lived client tokens to browser apps, and ships a local IMS emulator for offline use.
#[derive(Parser, Debug)]
#[command(name = "imsgate", version = VERSION, propagate_version = true)]
struct Cli {
    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(long, global = true, value_enum, default_value_t = logging::Format::Text)]
    log_format: logging::Format,
    /// Log filter, e.g. `info` or `imsgate_broker=debug,info`.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the emulator and the broker together on loopback with throwaway settings, and print
    /// ready-to-paste commands. The first thing to run.
    Demo {
        /// Address for the broker.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Address for the IMS emulator (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        emulator_listen: SocketAddr,
        /// Address for the demo's stand-in partner app with the "Connect with Adobe" button.
        #[arg(long, default_value = "127.0.0.1:0")]
        app_listen: SocketAddr,
        /// Lifetime in seconds of the emulator's client-entitlement tokens (Adobe uses 300).
        #[arg(long, default_value_t = 300)]
        token_lifetime: u64,
        /// Serve the broker over https with a throwaway CA and certificate made in the data
        /// directory; prints the CA's path (for curl --cacert) and the key pin for Chromium.
        #[arg(long)]
        tls: bool,
    },
    /// Run the broker with a configuration file.
    Serve {
        /// Path to the TOML configuration (see docs/configuration.md).
        #[arg(long, short, default_value = "imsgate.toml")]
        config: PathBuf,
    },
    /// Run the IMS emulator alone, for pointing another imsgate (or any IMS client) at it.
    Emulator {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
        /// TOML file listing emulated clients (see docs/emulator.md); without it, one demo client
        /// `imsgate-demo` / `demo-secret` is served.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Allow a non-loopback --listen address. The emulator's /__admin API (faults, key
        /// rotation, consents) has no authentication, so anyone who can reach the address can
        /// script it; by default only loopback addresses are accepted.
        #[arg(long)]
        allow_remote_admin: bool,
    },
    /// Print an IMS access token for a configured credential, for scripts.
    Token {
        /// Path to the TOML configuration.
        #[arg(long, short, default_value = "imsgate.toml")]
        config: PathBuf,
        /// Name of the credential (a `[credentials.NAME]` table).
        #[arg(long)]
        credential: String,
    },
    /// Service Account (JWT) keys: generate a key pair with a self-signed certificate, or list
    /// the configured certificates and which one signs now.
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
    /// The encrypted keystore named by the config's [keystore] section.
    Secrets {
        /// Path to the TOML configuration.
        #[arg(long, short, default_value = "imsgate.toml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        action: SecretsCommand,
    },
    /// Users' stored Adobe sign-ins ([user_login]): list them, or re-seal them with the newest
    /// token encryption key so older keys can be retired. Token values are never printed.
    UserTokens {
        /// Path to the TOML configuration.
        #[arg(long, short, default_value = "imsgate.toml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        action: UserTokensCommand,
    },
    /// Check a configuration file, its secrets, keys and certificates, offline and without
    /// side effects (no IMS request, no database write, no file created).
    Doctor {
        /// Path to the TOML configuration.
        #[arg(long, short, default_value = "imsgate.toml")]
        config: PathBuf,
        /// Also check for real: each client secret mints a token that IMS validates, IMS's keys
        /// and discovery document load, the database accepts a write (rolled back), the
        /// caller-auth JWKS loads. One PASS/FAIL line per check; exits 1 if any fails.
        #[arg(long)]
        online: bool,
    },
}

#[derive(Subcommand, Debug)]
enum UserTokensCommand {
    /// One line per user: Adobe user id, expiries, and the key their tokens are sealed with.
    List,
    /// Re-seal every grant not sealed with the first of `token_encryption_keys`.
    Reseal,
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Write NAME.key.pem (mode 600) and NAME.cert.pem, a self-signed certificate to upload to
    /// the Developer Console. Existing files are never overwritten.
    Generate {
        /// Directory to write into.
        #[arg(long, default_value = ".")]
        out_dir: PathBuf,
        /// File name prefix.
        #[arg(long, default_value = "imsgate-service-account")]
        name: String,
        /// Certificate subject common name (CN).
        #[arg(long, default_value = "imsgate service account")]
        common_name: String,
        /// Certificate subject organization (O).
        #[arg(long)]
        organization: Option<String>,
        /// Certificate subject country (C), two letters.
        #[arg(long)]
        country: Option<String>,
        /// Validity in days from now (Adobe accepts up to 3650).
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// RSA key size: 2048, 3072 or 4096.
        #[arg(long, default_value_t = 2048)]
        bits: u32,
    },
    /// Write a new random 256-bit encryption key (base64, mode 600) for
    /// `user_login.token_encryption_keys` or `keystore.master_keys`. Never overwrites a file.
    EncryptionKey {
        /// The file to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Show each service account's certificates, their validity, and which key signs now.
    List {
        /// Path to the TOML configuration.
        #[arg(long, short, default_value = "imsgate.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum SecretsCommand {
    /// Create the master key (if its file does not exist) and an empty keystore.
    Init,
    /// Store a secret read from standard input (never from the command line).
    Set {
        /// The name to reference as `keystore:NAME`.
        name: String,
    },
    /// List the stored names and which master key encrypted each; never the values.
    List,
    /// Remove a secret.
    Rm { name: String },
    /// Print a secret's value (only with --reveal).
    Get {
        name: String,
        /// Really print the value.
        #[arg(long)]
        reveal: bool,
    },
    /// Write a new master key and re-encrypt every secret with it.
    RotateMaster {
        /// Where to write the new master key (must not exist).
        #[arg(long)]
        new_key: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging::init(cli.log_format, &cli.log_level) {
        eprintln!("imsgate: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("imsgate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo {
                listen,
                emulator_listen,
                app_listen,
                token_lifetime,
                tls,
            } => demo::run(listen, emulator_listen, app_listen, token_lifetime, tls).await,
            Command::Serve { config } => run::serve(&config).await,
            Command::Emulator {
                listen,
                config,
                allow_remote_admin,
            } => run::emulator(listen, config.as_deref(), allow_remote_admin).await,
            Command::Token { config, credential } => run::token(&config, &credential).await,
            Command::Doctor { config, online } => doctor::run(&config, online).await,
            Command::Keys {
                action:
                    KeysCommand::Generate {
                        out_dir,
                        name,
                        common_name,
                        organization,
                        country,
                        days,
                        bits,
                    },
            } => keys::generate(&keys::GenerateOptions {
                out_dir: &out_dir,
                name: &name,
                common_name: &common_name,
                organization: organization.as_deref(),
                country: country.as_deref(),
                days,
                bits,
            }),
            Command::Keys {
                action: KeysCommand::List { config },
            } => keys::list(&config),
            Command::Keys {
                action: KeysCommand::EncryptionKey { out },
            } => keys::encryption_key(&out),
            Command::UserTokens { config, action } => match action {
                UserTokensCommand::List => user_tokens::list(&config).await,
                UserTokensCommand::Reseal => user_tokens::reseal(&config).await,
            },
            Command::Secrets { config, action } => match action {
                SecretsCommand::Init => secrets_cmd::init(&config),
                SecretsCommand::Set { name } => secrets_cmd::set(&config, &name),
                SecretsCommand::List => secrets_cmd::list(&config),
                SecretsCommand::Rm { name } => secrets_cmd::remove(&config, &name),
                SecretsCommand::Get { name, reveal } => secrets_cmd::get(&config, &name, reveal),
                SecretsCommand::RotateMaster { new_key } => {
                    secrets_cmd::rotate_master(&config, &new_key)
                }
            },
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(problems) => {
            for p in problems {
                eprintln!("imsgate: {p}");
            }
            ExitCode::FAILURE
        }
    }
}
