//! `fluxbase audit ...`: the audit log for operators. Verify the hash chain, export it
//! (streamed, as CSV or JSON Lines), and remove old entries after exporting them. Each
//! is a call of a `dashboard_auth` function, made as the role in DATABASE_URL (a
//! superuser or a member of `fluxbase_operator`), and each is itself audited.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};

use crate::admin::operator_error;
use crate::config::{DatabaseArgs, DatabaseSettings};
use crate::db;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain: "intact, N entries, head <hash>" (keep the head elsewhere),
    /// or the first entry where it breaks, and why (exit status 1)
    Verify(DatabaseArgs),
    /// Export entries as JSON Lines or CSV, oldest first, streamed
    Export(ExportArgs),
    /// Remove the entries older than a date, after exporting them to a file (retention)
    Purge(PurgeArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// One JSON object per line, with every column and the hashes
    Jsonl,
    /// A header line, then one row per entry
    Csv,
}

impl Format {
    fn as_str(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
        }
    }
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Entries from this time on, e.g. 2026-01-01 or "2026-01-01 12:00+00"
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Entries before this time
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,
    /// Write to this file instead of standard output
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// Remove the entries older than this time, e.g. 2025-01-01
    #[arg(long, value_name = "TIME")]
    pub before: String,
    /// The JSON Lines file the removed entries are exported to first (must not exist)
    #[arg(long, value_name = "FILE")]
    pub export_to: PathBuf,
    /// Confirm: removed entries leave the database for good
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

pub async fn run(command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Verify(database) => verify(database).await,
        AuditCommand::Export(args) => export(args).await,
        AuditCommand::Purge(args) => purge(args).await,
    }
}

async fn verify(database: DatabaseArgs) -> Result<()> {
    let settings = database.validate()?;
    let client = db::connect_once(&settings).await?;
    let row = client
        .query_one("SELECT valid, message FROM dashboard_auth.operator_verify_audit()", &[])
        .await
        .map_err(|e| operator_error(&settings, e))?;
    let (valid, message): (bool, String) = (row.get(0), row.get(1));
    if !valid {
        bail!("the audit log is broken: {message}");
    }
    println!("{message}");
    Ok(())
}

/// Streams the entries in [since, until) to `out` through a portal, a thousand at a
/// time, after recording the export. Returns how many it wrote.
async fn stream_entries(
    settings: &DatabaseSettings,
    since: Option<&str>,
    until: Option<&str>,
    format: Format,
    destination: &str,
    out: &mut dyn Write,
) -> Result<u64> {
    let mut client = db::connect_once(settings).await?;
    client
        .execute(
            "SELECT dashboard_auth.operator_record_audit_export($1::text::timestamptz, $2::text::timestamptz, $3, $4)",
            &[&since, &until, &format.as_str(), &destination],
        )
        .await
        .map_err(|e| operator_error(settings, e))?;
    let tx = client.transaction().await.map_err(db::pg_error)?;
    if let Format::Csv = format {
        let header: String =
            tx.query_one("SELECT dashboard_auth.operator_get_audit_export_header()", &[]).await.map_err(|e| operator_error(settings, e))?.get(0);
        writeln!(out, "{header}")?;
    }
    let statement = tx
        .prepare("SELECT line FROM dashboard_auth.operator_export_audit($1::text::timestamptz, $2::text::timestamptz, $3) AS line")
        .await
        .map_err(|e| operator_error(settings, e))?;
    let portal = tx.bind(&statement, &[&since, &until, &format.as_str()]).await.map_err(|e| operator_error(settings, e))?;
    let mut written = 0;
    loop {
        let rows = tx.query_portal(&portal, 1000).await.map_err(|e| operator_error(settings, e))?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            writeln!(out, "{}", row.get::<_, String>(0))?;
            written += 1;
        }
    }
    tx.commit().await.map_err(db::pg_error)?;
    Ok(written)
}

/// A new file, flushed and synced when `write` is done: an export is on disk before
/// anything is removed.
fn write_new_file(path: &PathBuf) -> Result<BufWriter<File>> {
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    Ok(BufWriter::new(file))
}

fn finish_file(writer: BufWriter<File>, path: &PathBuf) -> Result<()> {
    let file = writer.into_inner().map_err(|e| anyhow::anyhow!("cannot write {}: {}", path.display(), e.error()))?;
    file.sync_all().with_context(|| format!("cannot write {} to disk", path.display()))
}

async fn export(args: ExportArgs) -> Result<()> {
    let settings = args.database.validate()?;
    let (since, until) = (args.since.as_deref(), args.until.as_deref());
    match &args.output {
        Some(path) => {
            let destination = std::path::absolute(path).unwrap_or(path.clone());
            let mut writer = write_new_file(path)?;
            let streamed = stream_entries(&settings, since, until, args.format, &destination.display().to_string(), &mut writer).await;
            let written = match streamed.and_then(|n| finish_file(writer, path).map(|()| n)) {
                Ok(n) => n,
                Err(e) => {
                    // No half-written export left behind, and the name stays free for a retry.
                    let _ = std::fs::remove_file(path);
                    return Err(e);
                }
            };
            eprintln!("exported {written} entries to {}", destination.display());
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            stream_entries(&settings, since, until, args.format, "standard output", &mut out).await?;
            out.flush()?;
        }
    }
    Ok(())
}

async fn purge(args: PurgeArgs) -> Result<()> {
    if !args.yes {
        bail!("purging removes entries for good: add --yes to confirm (they are exported to {} first)", args.export_to.display());
    }
    let settings = args.database.validate()?;
    let client = db::connect_once(&settings).await?;
    let range = client
        .query_one(
            "SELECT from_seq, to_seq, entries, last_hash FROM dashboard_auth.operator_plan_audit_purge($1::text::timestamptz)",
            &[&args.before],
        )
        .await
        .map_err(|e| operator_error(&settings, e))?;
    let (to_seq, entries, last_hash): (Option<i64>, i64, Option<String>) = (range.get(1), range.get(2), range.get(3));
    if entries == 0 {
        println!("nothing to purge: no entry is older than {}", args.before);
        return Ok(());
    }
    // Everything older than the date, which covers the range, goes to the file first.
    let destination = std::path::absolute(&args.export_to).unwrap_or(args.export_to.clone());
    let mut writer = write_new_file(&args.export_to)?;
    let streamed = stream_entries(&settings, None, Some(&args.before), Format::Jsonl, &destination.display().to_string(), &mut writer).await;
    let written = match streamed.and_then(|n| finish_file(writer, &args.export_to).map(|()| n)) {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&args.export_to);
            return Err(e);
        }
    };
    let done = client
        .query_one(
            "SELECT dashboard_auth.operator_purge_audit($1::text::timestamptz, $2, $3, $4)::text",
            &[&args.before, &to_seq, &last_hash, &destination.display().to_string()],
        )
        .await
        .map_err(|e| operator_error(&settings, e))?;
    let done: serde_json::Value = serde_json::from_str(done.get(0))?;
    println!(
        "purged {} entries (chain {} to {}), exported first with {written} entries to {}; the chain goes on from {}",
        done["removed"], done["from_seq"], done["to_seq"], destination.display(), done["last_hash"].as_str().unwrap_or("?")
    );
    Ok(())
}
