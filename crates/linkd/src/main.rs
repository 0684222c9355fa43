//! The `linkd` command: parses arguments and calls into the library.

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use linkd::Config;
use linkd::cli;

#[derive(Parser)]
#[command(
    name = "linkd",
    version,
    about = "Self-hosted device linking (OAuth 2.0 Device Authorization Grant)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Db {
    /// Where the store lives: sqlite://FILE or postgres://...
    #[arg(
        long,
        env = "LINKD_DATABASE_URL",
        default_value = "sqlite://linkd.db",
        global = true
    )]
    database_url: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<Config>),
    /// Create or update the database schema, then exit.
    Migrate(Db),
    /// Manage device apps (OAuth clients).
    Client {
        #[command(flatten)]
        db: Db,
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Manage people's accounts.
    User {
        #[command(flatten)]
        db: Db,
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage token signing keys.
    Keys {
        #[command(flatten)]
        db: Db,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// See and unlink people's devices.
    Devices {
        #[command(flatten)]
        db: Db,
        #[command(subcommand)]
        command: DevicesCommand,
    },
    /// Write a consistent snapshot of the SQLite store while linkd runs.
    Backup {
        #[command(flatten)]
        db: Db,
        /// The file to create.
        file: std::path::PathBuf,
    },
    /// Check a configuration and print it, secrets redacted.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Act as a device: show a code, wait for approval, print who linked it.
    Device(cli::DeviceArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate flags, LINKD_* variables and --config FILE together, and
    /// print the effective settings.
    Check(Box<Config>),
}

#[derive(Subcommand)]
enum DevicesCommand {
    /// The devices linked to one person.
    List {
        #[arg(long)]
        user: String,
    },
    /// Unlink a device (its tokens stop working at once).
    Unlink {
        /// Ids stored by earlier releases may start with `-`; take them as they are.
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Register a device app.
    Add {
        /// The client_id devices will send.
        #[arg(long)]
        id: String,
        /// The name people see on the confirmation page.
        #[arg(long)]
        name: String,
        /// A scope the app may ask for (repeat the flag, or separate with spaces).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Give the app a secret (printed once) it must present at the token endpoint.
        #[arg(long)]
        confidential: bool,
        /// An exact address authorization codes may be sent to (repeat
        /// the flag); http only on 127.0.0.1 or [::1], where any port is
        /// accepted (RFC 8252 §7.3).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// Require a DPoP proof (RFC 9449) on every token request, so the
        /// app's tokens are always bound to its devices' keys.
        #[arg(long)]
        require_dpop: bool,
        /// Whether a device's link may carry its code (on/off, default on):
        /// off, devices get no verification_uri_complete and the person
        /// always types the code.
        #[arg(long, value_parser = parse_switch)]
        prefilled_links: Option<bool>,
        /// Require the approving browser on the device's network: the IPv4
        /// and IPv6 prefix lengths, e.g. 24,56 (for apps always in the
        /// room with the person: TVs, consoles), or off.
        #[arg(long, value_parser = parse_same_network)]
        same_network: Option<NetworkRule>,
    },
    /// Change an app: its grants, scopes and redirect URIs.
    Update {
        id: String,
        /// Whether the app may start device authorizations (on/off).
        #[arg(long, value_parser = parse_switch)]
        device_flow: Option<bool>,
        /// Whether the app may use the authorization code grant (on/off).
        #[arg(long, value_parser = parse_switch)]
        code_flow: Option<bool>,
        /// Whether the app gets and may use refresh tokens (on/off).
        #[arg(long, value_parser = parse_switch)]
        refresh: Option<bool>,
        /// Whether every token request must carry a DPoP proof (on/off).
        #[arg(long, value_parser = parse_switch)]
        require_dpop: Option<bool>,
        /// Replace the scopes the app may ask for (repeat the flag).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Replace the redirect URIs (repeat the flag).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// Remove every redirect URI.
        #[arg(long)]
        no_redirect_uris: bool,
        /// Whether a device's link may carry its code (on/off).
        #[arg(long, value_parser = parse_switch)]
        prefilled_links: Option<bool>,
        /// Require the approving browser on the device's network: prefix
        /// lengths such as 24,56 (IPv4, IPv6), or off.
        #[arg(long, value_parser = parse_same_network)]
        same_network: Option<NetworkRule>,
    },
    /// Show one app: its kind, grants, scopes and redirect URIs.
    Show { id: String },
    /// Give a confidential app a new secret; the old one stops working.
    RotateSecret { id: String },
    /// List registered apps.
    List,
    /// Remove an app; its pending codes go with it.
    Remove { id: String },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account. The password is read from standard input, or
    /// asked for when standard input is a terminal.
    Add {
        #[arg(long)]
        email: String,
    },
    /// List accounts.
    List,
    /// Show one account: status, whether it has a password, and the
    /// identities at OpenID providers joined to it.
    Show { email: String },
    /// Stop an account from signing in or linking devices.
    Disable { email: String },
    /// Allow a disabled account again.
    Enable { email: String },
    /// Delete an account with its devices, tokens and activity.
    Delete { email: String },
    /// Print a one-time link that sets a new password (valid 30 minutes),
    /// for the operator to hand over when linkd sends no mail.
    ResetLink {
        email: String,
        /// The address people reach linkd at, as `linkd serve` has it.
        #[arg(long, env = "LINKD_PUBLIC_URL")]
        public_url: String,
    },
    /// Mark an account's address as confirmed, as its verification link
    /// would (for an address checked another way, or linkd without mail).
    VerifyEmail { email: String },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a new signing key: published now, it signs once every server and
    /// verifier has had time to fetch it (6 minutes); older keys keep
    /// verifying their tokens.
    Rotate,
    /// Revoke a compromised signing key: it leaves the JWKS, its tokens are
    /// refused, and signing moves at once to the newest key left (made now
    /// if there is none). Running servers follow within 30 s.
    Revoke {
        /// The key's id (`kid`), as `linkd keys list` shows it. Ids are
        /// base64url, so one may start with `-`; take it as it is.
        #[arg(allow_hyphen_values = true)]
        kid: String,
        /// The servers' access token lifetime, in seconds.
        #[arg(long, env = "LINKD_ACCESS_TOKEN_LIFETIME", default_value_t = 3600)]
        access_token_lifetime: u32,
    },
    /// List signing keys, newest first, with what each does now.
    List {
        /// The servers' access token lifetime, in seconds.
        #[arg(long, env = "LINKD_ACCESS_TOKEN_LIFETIME", default_value_t = 3600)]
        access_token_lifetime: u32,
    },
}

/// Parses the command line, with a settings file (`--config FILE` or
/// `LINKD_CONFIG`) supplying defaults beneath flags and variables.
fn parse() -> Result<Cli, String> {
    use clap::{CommandFactory, FromArgMatches};
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut cmd = Cli::command();
    if let Some(path) = config_file(&args) {
        cmd = linkd::config::apply_file(cmd, &path, &[&["serve"], &["config", "check"]])?;
    }
    let matches = cmd.get_matches_from(args);
    Cli::from_arg_matches(&matches).map_err(|e| e.to_string())
}

/// The settings file named on the command line or in LINKD_CONFIG.
fn config_file(args: &[std::ffi::OsString]) -> Option<std::path::PathBuf> {
    let mut iter = args.iter().filter_map(|a| a.to_str());
    while let Some(arg) = iter.next() {
        if arg == "--config" {
            return iter.next().map(std::path::PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(path.into());
        }
    }
    std::env::var_os("LINKD_CONFIG").map(std::path::PathBuf::from)
}

/// `--same-network`: prefix lengths, or `off` (`None`).
#[derive(Clone)]
struct NetworkRule(Option<linkd::store::SameNetwork>);

fn parse_same_network(s: &str) -> Result<NetworkRule, String> {
    match s {
        "off" | "no" | "false" => Ok(NetworkRule(None)),
        _ => linkd::store::SameNetwork::parse(s).map(|n| NetworkRule(Some(n))),
    }
}

fn parse_switch(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("{s:?}: say on or off")),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("linkd: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Serve(mut config) => match config.read_file_tables() {
            Ok(()) => cli::serve(*config).await,
            Err(e) => Err(anyhow::anyhow!(e)),
        },
        Command::Migrate(db) => cli::migrate(&db.database_url).await,
        Command::Client { db, command } => match command {
            ClientCommand::Add {
                id,
                name,
                scopes,
                confidential,
                redirect_uris,
                require_dpop,
                prefilled_links,
                same_network,
            } => {
                let new = cli::NewClient {
                    id: &id,
                    name: &name,
                    scopes: &scopes,
                    confidential,
                    redirect_uris: &redirect_uris,
                    require_dpop,
                    prefilled_links: prefilled_links.unwrap_or(true),
                    same_network: same_network.and_then(|r| r.0),
                };
                cli::client_add(&db.database_url, &new).await
            }
            ClientCommand::Update {
                id,
                device_flow,
                code_flow,
                refresh,
                require_dpop,
                scopes,
                redirect_uris,
                no_redirect_uris,
                prefilled_links,
                same_network,
            } => {
                let update = cli::ClientUpdate {
                    device_flow,
                    code_flow,
                    refresh,
                    require_dpop,
                    scopes: &scopes,
                    redirect_uris: &redirect_uris,
                    no_redirect_uris,
                    prefilled_links,
                    same_network: same_network.map(|r| r.0),
                };
                cli::client_update(&db.database_url, &id, &update).await
            }
            ClientCommand::Show { id } => cli::client_show(&db.database_url, &id).await,
            ClientCommand::RotateSecret { id } => {
                cli::client_rotate_secret(&db.database_url, &id).await
            }
            ClientCommand::List => cli::client_list(&db.database_url).await,
            ClientCommand::Remove { id } => cli::client_remove(&db.database_url, &id).await,
        },
        Command::User { db, command } => match command {
            UserCommand::Add { email } => cli::user_add(&db.database_url, &email).await,
            UserCommand::List => cli::user_list(&db.database_url).await,
            UserCommand::Show { email } => cli::user_show(&db.database_url, &email).await,
            UserCommand::Disable { email } => {
                cli::user_set_disabled(&db.database_url, &email, true).await
            }
            UserCommand::Enable { email } => {
                cli::user_set_disabled(&db.database_url, &email, false).await
            }
            UserCommand::Delete { email } => cli::user_delete(&db.database_url, &email).await,
            UserCommand::ResetLink { email, public_url } => {
                cli::user_reset_link(&db.database_url, &email, &public_url).await
            }
            UserCommand::VerifyEmail { email } => {
                cli::user_verify_email(&db.database_url, &email).await
            }
        },
        Command::Keys { db, command } => match command {
            KeysCommand::Rotate => cli::keys_rotate(&db.database_url).await,
            KeysCommand::Revoke {
                kid,
                access_token_lifetime,
            } => {
                let lifetime = i64::from(access_token_lifetime);
                cli::keys_revoke(&db.database_url, &kid, lifetime).await
            }
            KeysCommand::List {
                access_token_lifetime,
            } => cli::keys_list(&db.database_url, i64::from(access_token_lifetime)).await,
        },
        Command::Devices { db, command } => match command {
            DevicesCommand::List { user } => cli::devices_list(&db.database_url, &user).await,
            DevicesCommand::Unlink { id } => cli::devices_unlink(&db.database_url, &id).await,
        },
        Command::Backup { db, file } => cli::backup(&db.database_url, &file).await,
        Command::Config {
            command: ConfigCommand::Check(mut config),
        } => match config.read_file_tables().and_then(|()| config.validate()) {
            Ok(()) => {
                print!("{}", linkd::config::describe(&config));
                Ok(())
            }
            Err(e) => Err(anyhow::anyhow!(e)),
        },
        Command::Device(args) => cli::device(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("linkd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key ids are random base64url: about one in 32 starts with `-`, and
    /// `linkd keys revoke` must still take it as the id, not as an option.
    #[test]
    fn a_key_id_starting_with_a_hyphen_is_an_id() {
        let cli = Cli::try_parse_from(["linkd", "keys", "revoke", "-sQ2x_key"]).unwrap();
        let Command::Keys {
            command: KeysCommand::Revoke { kid, .. },
            ..
        } = cli.command
        else {
            panic!("not keys revoke");
        };
        assert_eq!(kid, "-sQ2x_key");
    }
}
