//! `fluxbase admin ...`: the operators' break-glass commands. Each is one call of a
//! `dashboard_auth.operator_*` function, made as the database role in DATABASE_URL (a
//! superuser or a member of `fluxbase_operator`), which the audit log records as actor.

use std::io::Read;

use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use tokio_postgres::error::SqlState;

use crate::config::{link_base, parse_public_url, DatabaseArgs};
use crate::db;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an admin and print a one-time link to set the password (valid 24h)
    CreateUser(CreateUserArgs),
    /// Sign an admin out everywhere and print a one-time password reset link (valid 24h)
    ResetPassword(LinkCommandArgs),
    /// List the dashboard's admins
    ListUsers(DatabaseArgs),
    /// Lift an admin's lockout after too many failed sign-ins
    Unlock(EmailArgs),
    /// Disable an admin: no sign-in, sessions end
    Disable(EmailArgs),
    /// Enable a disabled admin
    Enable(EmailArgs),
    /// Turn two-factor sign-in off for an admin who lost the device, and sign them out
    #[command(name = "disable-2fa")]
    Disable2fa(EmailArgs),
    /// Delete an admin (the last active admin cannot be deleted)
    DeleteUser(DeleteArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Role {
    /// Full access
    Admin,
    /// Read-only: browse, read-only SQL, analytics, the audit log
    Viewer,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }
}

#[derive(Debug, Args)]
pub struct LinkArgs {
    /// Public address of the dashboard, used to build the link
    /// [default: http://localhost:<port>]
    #[arg(long, env = "FLUXBASE_ADMIN_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,

    /// The dashboard's port, for the default public address
    #[arg(long, env = "FLUXBASE_ADMIN_PORT", default_value = "3001", value_name = "PORT")]
    pub port: String,
}

impl LinkArgs {
    fn base(&self) -> Result<String> {
        let public_url = self.public_url.as_deref().map(parse_public_url).transpose()?;
        let port: u16 = self.port.trim().parse().map_err(|_| {
            anyhow::anyhow!("FLUXBASE_ADMIN_PORT (--port) must be a port number, not {:?}", self.port)
        })?;
        Ok(link_base(public_url.as_ref(), port))
    }
}

#[derive(Debug, Args)]
pub struct CreateUserArgs {
    #[arg(long)]
    pub email: String,
    #[arg(long)]
    pub name: String,
    #[arg(long, value_enum, default_value = "admin")]
    pub role: Role,
    /// Read the password from standard input instead of printing a link
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub links: LinkArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Args)]
pub struct LinkCommandArgs {
    #[arg(long)]
    pub email: String,
    #[command(flatten)]
    pub links: LinkArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Args)]
pub struct EmailArgs {
    #[arg(long)]
    pub email: String,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[arg(long)]
    pub email: String,
    /// Confirm the deletion
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

pub async fn run(command: AdminCommand) -> Result<()> {
    match command {
        AdminCommand::CreateUser(args) => create_user(args).await,
        AdminCommand::ResetPassword(args) => reset_password(args).await,
        AdminCommand::ListUsers(database) => list_users(database).await,
        AdminCommand::Unlock(args) => {
            simple(&args, "SELECT dashboard_auth.operator_unlock_admin($1)", "unlocked").await
        }
        AdminCommand::Disable(args) => {
            simple(&args, "SELECT dashboard_auth.operator_disable_admin($1)", "disabled (and signed out)").await
        }
        AdminCommand::Enable(args) => simple(&args, "SELECT dashboard_auth.operator_enable_admin($1)", "enabled").await,
        AdminCommand::Disable2fa(args) => {
            simple(&args, "SELECT dashboard_auth.operator_disable_two_factor($1)", "has two-factor sign-in off (and is signed out)").await
        }
        AdminCommand::DeleteUser(args) => {
            if !args.yes {
                bail!("deleting {} cannot be undone: add --yes to confirm", args.email);
            }
            let email_args = EmailArgs { email: args.email, database: args.database };
            simple(&email_args, "SELECT dashboard_auth.operator_delete_admin($1)", "deleted").await
        }
    }
}

async fn create_user(args: CreateUserArgs) -> Result<()> {
    let settings = args.database.validate()?;
    let base = args.links.base()?;
    let password = if args.password_stdin { Some(read_password_stdin()?) } else { None };
    let mut client = db::connect_once(&settings).await?;
    let tx = with_public_url(&mut client, &base, &settings).await?;
    let row = tx
        .query_one(
            "SELECT invite_link, to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI \"UTC\"'), admin_id
               FROM dashboard_auth.operator_create_admin($1, $2, $3, $4)",
            &[&args.email, &args.name, &args.role.as_str(), &password],
        )
        .await
        .map_err(|e| operator_error(&settings, e))?;
    let (link, admin_id): (Option<String>, uuid::Uuid) = (row.get(0), row.get(2));
    // The email and name as the extension stored them (trimmed, lower-cased).
    let stored = tx
        .query_one("SELECT email, name FROM dashboard_auth.operator_list_admins() WHERE admin_id = $1", &[&admin_id])
        .await
        .map_err(|e| operator_error(&settings, e))?;
    tx.commit().await.map_err(|e| operator_error(&settings, e))?;
    let (email, name): (String, String) = (stored.get(0), stored.get(1));
    println!("created {} {email} ({name})", args.role.as_str());
    if let Some(link) = link {
        let expires: String = row.get(1);
        println!("one-time link to set the password, valid until {expires}:");
        println!("{link}");
    }
    Ok(())
}

async fn reset_password(args: LinkCommandArgs) -> Result<()> {
    let settings = args.database.validate()?;
    let base = args.links.base()?;
    let mut client = db::connect_once(&settings).await?;
    let tx = with_public_url(&mut client, &base, &settings).await?;
    let row = tx
        .query_one(
            "SELECT reset_link, to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI \"UTC\"')
               FROM dashboard_auth.operator_reset_admin_password($1)",
            &[&args.email],
        )
        .await
        .map_err(|e| operator_error(&settings, e))?;
    tx.commit().await.map_err(|e| operator_error(&settings, e))?;
    let (link, expires): (String, String) = (row.get(0), row.get(1));
    println!("signed {} out of every session", args.email.trim());
    println!("one-time password reset link, valid until {expires}:");
    println!("{link}");
    Ok(())
}

/// A transaction in which the extension builds one-time links from `base`: it reads the
/// address from `fluxbase.public_url` (dashboard_auth.one_time_link), as it does under
/// fluxbase serve.
async fn with_public_url<'a>(
    client: &'a mut tokio_postgres::Client,
    base: &str,
    settings: &crate::config::DatabaseSettings,
) -> Result<tokio_postgres::Transaction<'a>> {
    let tx = client.transaction().await.map_err(|e| operator_error(settings, e))?;
    tx.execute("SELECT pg_catalog.set_config('fluxbase.public_url', $1, true)", &[&base])
        .await
        .map_err(|e| operator_error(settings, e))?;
    Ok(tx)
}

async fn list_users(database: DatabaseArgs) -> Result<()> {
    let settings = database.validate()?;
    let client = db::connect_once(&settings).await?;
    let rows = client
        .query(
            "SELECT email, name, role, status,
                    coalesce(to_char(last_login_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), 'never')
               FROM dashboard_auth.operator_list_admins()",
            &[],
        )
        .await
        .map_err(|e| operator_error(&settings, e))?;
    let table: Vec<[String; 5]> = rows
        .iter()
        .map(|r| [r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)])
        .collect();
    print_table(["EMAIL", "NAME", "ROLE", "STATUS", "LAST SIGN-IN (UTC)"], &table);
    if table.is_empty() {
        println!("(no admins yet: fluxbase serve prints a setup link, or run fluxbase admin create-user)");
    }
    Ok(())
}

async fn simple(args: &EmailArgs, sql: &str, done: &str) -> Result<()> {
    let settings = args.database.validate()?;
    let client = db::connect_once(&settings).await?;
    client.execute(sql, &[&args.email]).await.map_err(|e| operator_error(&settings, e))?;
    println!("{} {done}", args.email.trim());
    Ok(())
}

fn read_password_stdin() -> Result<String> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| anyhow::anyhow!("cannot read the password from standard input: {e}"))?;
    let password = input.strip_suffix('\n').map(|p| p.strip_suffix('\r').unwrap_or(p)).unwrap_or(&input);
    if password.is_empty() {
        bail!("--password-stdin read an empty password: pipe the password in, e.g. printf '%s' \"$PW\" | fluxbase admin create-user ...");
    }
    Ok(password.to_string())
}

/// An operator command's failure as one line: the extension's own message (which says
/// what to do), or what the caller's role lacks.
pub(crate) fn operator_error(settings: &crate::config::DatabaseSettings, e: tokio_postgres::Error) -> anyhow::Error {
    let target = db::describe_target(&settings.config);
    let role = settings.config.get_user().unwrap_or("?");
    match e.code() {
        Some(code) if *code == SqlState::INSUFFICIENT_PRIVILEGE => anyhow::anyhow!(
            "the role {role} may not run operator commands: connect as a superuser or a member of \
             fluxbase_operator (GRANT fluxbase_operator TO {role})"
        ),
        Some(code) if *code == SqlState::UNDEFINED_FUNCTION || *code == SqlState::INVALID_SCHEMA_NAME => anyhow::anyhow!(
            "the fluxbase_admin extension is not installed in {target}: run `fluxbase extension install`"
        ),
        _ => match e.as_db_error() {
            Some(db_error) => match db_error.hint() {
                Some(hint) => anyhow::anyhow!("{} ({hint})", db_error.message()),
                None => anyhow::anyhow!("{}", db_error.message()),
            },
            None => anyhow::anyhow!("{}", db::describe_pg_error(&e)),
        },
    }
}

fn print_table<const N: usize>(headers: [&str; N], rows: &[[String; N]]) {
    let mut widths = headers.map(|h| h.chars().count());
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: [&str; N]| {
        let padded: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers);
    for row in rows {
        line(std::array::from_fn(|i| row[i].as_str()));
    }
}
