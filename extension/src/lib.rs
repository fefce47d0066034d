//! `fluxbase_admin`: the admin dashboard's state and rules, inside Postgres.
//!
//! Each concern is one module. SQL that reads best as SQL (schemas, roles, tables,
//! grants) lives in `sql/` and is pulled in with `extension_sql_file!`; Rust does what
//! SQL does badly.

::pgrx::pg_module_magic!(name, version);

mod admin_auth;
mod app_users;
mod audit;
mod claims;
mod data_plane;
mod explorer;
mod impersonation;
mod install;
mod metrics;
mod passwords;
mod realtime;
mod session_binding;
mod settings;
mod sql_runner;
mod tokens;
mod two_factor;

/// Runs when a backend loads the library: installs the hooks of the data plane.
#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    data_plane::install_hooks();
}

#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
