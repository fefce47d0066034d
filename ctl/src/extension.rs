//! `fluxbase extension install`: create the extension, or update it to the version whose
//! files are installed on the database host.

use anyhow::{bail, Result};

use crate::config::DatabaseSettings;
use crate::db;

pub async fn install(settings: &DatabaseSettings) -> Result<()> {
    let client = db::connect_once(settings).await?;
    let target = db::describe_target(&settings.config);

    let available = client
        .query_opt(
            "SELECT default_version, installed_version FROM pg_catalog.pg_available_extensions
              WHERE name = 'fluxbase_admin'",
            &[],
        )
        .await
        .map_err(db::pg_error)?;
    let Some(available) = available else {
        bail!(
            "the fluxbase_admin extension's files are not installed on the database host of {target}: \
             run `make install` (cargo pgrx install) there first"
        );
    };
    let default_version: String = available.get(0);
    let installed: Option<String> = available.get(1);

    match installed {
        None => {
            client.batch_execute("CREATE EXTENSION fluxbase_admin").await.map_err(|e| {
                anyhow::anyhow!("cannot create the extension in {target}: {}", db::describe_pg_error(&e))
            })?;
            println!("created extension fluxbase_admin {default_version} in {target}");
        }
        Some(installed) if installed == default_version => {
            println!("extension fluxbase_admin {installed} is up to date in {target}");
        }
        Some(installed) => {
            client.batch_execute("ALTER EXTENSION fluxbase_admin UPDATE").await.map_err(|e| {
                anyhow::anyhow!(
                    "cannot update the extension in {target} from {installed} to {default_version}: {}",
                    db::describe_pg_error(&e)
                )
            })?;
            println!("updated extension fluxbase_admin from {installed} to {default_version} in {target}");
        }
    }
    Ok(())
}
