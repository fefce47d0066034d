//! The hand-off between the two planes (architecture.md, "Two planes").
//!
//! The dashboard plane checks a session, records the intent and stores a single-use
//! ticket (`fluxbase_admin.issue_ticket`, `sql/data_plane.sql`). The data login's first
//! statement claims it (`fluxbase_admin.claim_ticket`), which binds the request to this backend
//! here, in Rust memory: no SQL can write it, and a transaction callback clears it when
//! the transaction ends. Data-plane functions read the request from the binding, never
//! from their arguments.
//!
//! This module also installs a ProcessUtility hook: `ALTER ROLE` on the explorer role or
//! on a login of either plane is refused unless a superuser runs it, and `DISCARD ALL`
//! forgets a psql sign-in (session_binding.rs). App code that did
//! `RESET ROLE` on the data login could otherwise set its own login's password or a
//! `role` setting. The hook exists in every backend that loaded the library; on the
//! data login that is guaranteed by the claim, which is a call into it.

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr};

use pgrx::pg_sys;
use pgrx::prelude::*;

pgrx::extension_sql_file!(
    "../../sql/data_plane.sql",
    name = "data_plane",
    requires = ["impersonation", "settings", "explorer_catalog", bind_claim, bound_request_text]
);

thread_local! {
    /// The request claimed in the current transaction, if any.
    static BINDING: RefCell<Option<String>> = const { RefCell::new(None) };
}

static mut PREVIOUS_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;

/// Called once when the library loads (`_PG_init`).
pub fn install_hooks() {
    unsafe {
        PREVIOUS_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(refuse_protected_role_changes);
        pg_sys::RegisterXactCallback(Some(clear_binding_at_transaction_end), std::ptr::null_mut());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn clear_binding_at_transaction_end(event: pg_sys::XactEvent::Type, _arg: *mut c_void) {
    use pg_sys::XactEvent::*;
    let committed = match event {
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT | XACT_EVENT_PREPARE => true,
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => false,
        _ => return,
    };
    BINDING.with(|binding| {
        if let Ok(mut binding) = binding.try_borrow_mut() {
            binding.take();
        }
    });
    crate::session_binding::at_transaction_end(committed);
}

/// The role an `ALTER ROLE`, `ALTER ROLE ... SET` or `ALTER ROLE ... RENAME` names, if
/// the statement is one of those.
unsafe fn altered_role(statement: *mut pg_sys::Node) -> Option<pg_sys::Oid> {
    if statement.is_null() {
        return None;
    }
    let role = match (*statement).type_ {
        pg_sys::NodeTag::T_AlterRoleStmt => pg_sys::get_rolespec_oid((*statement.cast::<pg_sys::AlterRoleStmt>()).role, true),
        pg_sys::NodeTag::T_AlterRoleSetStmt => {
            let spec = (*statement.cast::<pg_sys::AlterRoleSetStmt>()).role;
            if spec.is_null() {
                return None; // ALTER ROLE ALL: superusers only anyway
            }
            pg_sys::get_rolespec_oid(spec, true)
        }
        pg_sys::NodeTag::T_RenameStmt => {
            let rename = &*statement.cast::<pg_sys::RenameStmt>();
            if rename.renameType != pg_sys::ObjectType::OBJECT_ROLE || rename.subname.is_null() {
                return None;
            }
            pg_sys::get_role_oid(rename.subname, true)
        }
        _ => return None,
    };
    (role != pg_sys::InvalidOid).then_some(role)
}

/// The explorer role, and any role that is a member of the explorer role or of
/// `fluxbase_dashboard`: the logins of both planes.
unsafe fn is_protected_role(role: pg_sys::Oid) -> bool {
    let explorer = pg_sys::get_role_oid(c"fluxbase_explorer".as_ptr(), true);
    let dashboard = pg_sys::get_role_oid(c"fluxbase_dashboard".as_ptr(), true);
    [explorer, dashboard]
        .into_iter()
        .any(|plane| plane != pg_sys::InvalidOid && pg_sys::is_member_of_role_nosuper(role, plane))
}

#[pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn refuse_protected_role_changes(
    planned: *mut pg_sys::PlannedStmt,
    query_string: *const c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    completion: *mut pg_sys::QueryCompletion,
) {
    let statement = (*planned).utilityStmt;
    if !statement.is_null()
        && (*statement).type_ == pg_sys::NodeTag::T_DiscardStmt
        && (*statement.cast::<pg_sys::DiscardStmt>()).target == pg_sys::DiscardMode::DISCARD_ALL
    {
        crate::session_binding::forget();
    }
    if let Some(role) = altered_role(statement) {
        if !pg_sys::superuser() && is_protected_role(role) {
            let name = pg_sys::GetUserNameFromId(role, true);
            let name = if name.is_null() { "?".into() } else { CStr::from_ptr(name).to_string_lossy().into_owned() };
            pgrx::ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("only a superuser may alter role {name}: it is a Fluxbase Admin login or the explorer role"),
                "Its attributes, password and settings decide what the dashboard's connections can do."
            );
        }
    }
    match PREVIOUS_PROCESS_UTILITY {
        Some(previous) => previous(planned, query_string, read_only_tree, context, params, query_env, dest, completion),
        None => pg_sys::standard_ProcessUtility(planned, query_string, read_only_tree, context, params, query_env, dest, completion),
    }
}

#[pg_schema]
mod fluxbase_admin {
    use pgrx::prelude::*;

    // The binding is kept as the text of its jsonb: Postgres parses it (a request may nest
    // deeper than serde_json reads), and the builder refuses what it cannot read.

    /// Binds a claimed request to this backend until the transaction ends. Internal:
    /// only `fluxbase_admin.claim_ticket`, a definer function, may call it (no grant).
    #[pg_extern(volatile, strict)]
    fn bind_claim(binding: &str) {
        super::BINDING.with(|bound| {
            let mut bound = bound.borrow_mut();
            if bound.is_some() {
                pgrx::ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    "a ticket is claimed in this transaction already: one ticket per transaction"
                );
            }
            *bound = Some(binding.to_string());
        });
    }

    /// The session's own search_path (its reset value, as pg_settings.reset_val gives it,
    /// without building every row of that view): what app code sees on the app's own
    /// connections, and so what the data plane gives it.
    #[pg_extern(stable)]
    fn session_search_path() -> String {
        // SAFETY: search_path always exists; the string belongs to the GUC machinery and is
        // copied before any other GUC call.
        unsafe { std::ffi::CStr::from_ptr(pgrx::pg_sys::GetConfigOptionResetString(c"search_path".as_ptr())) }
            .to_string_lossy()
            .into_owned()
    }

    /// The text of the request claimed in this transaction, or NULL when none is
    /// (`fluxbase_admin.bound_request` reads it as jsonb).
    #[pg_extern(volatile)]
    fn bound_request_text() -> Option<String> {
        super::BINDING.with(|bound| bound.borrow().clone())
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test(error = "no ticket is claimed in this transaction")]
    fn nothing_is_bound_before_a_claim() {
        Spi::run("SELECT fluxbase_admin.bound_request()").unwrap();
    }

    #[pg_test]
    fn a_binding_reads_back_as_it_was_bound() {
        Spi::run("SELECT fluxbase_admin.bind_claim('{\"operation\": \"browse\", \"run_as\": \"fluxbase_explorer\"}')").unwrap();
        let run_as = Spi::get_one::<String>("SELECT fluxbase_admin.bound_request() ->> 'run_as'").unwrap();
        assert_eq!(run_as.as_deref(), Some("fluxbase_explorer"));
    }

    #[pg_test(error = "a ticket is claimed in this transaction already: one ticket per transaction")]
    fn one_claim_per_transaction() {
        Spi::run("SELECT fluxbase_admin.bind_claim('{\"operation\": \"browse\"}')").unwrap();
        Spi::run("SELECT fluxbase_admin.bind_claim('{\"operation\": \"edit\"}')").unwrap();
    }

    #[pg_test]
    fn the_explorer_role_bypasses_rls_and_holds_no_predefined_role() {
        let (bypass, sup, pg_roles) = Spi::get_three::<bool, bool, i64>(
            "SELECT r.rolbypassrls, r.rolsuper,
                    (SELECT count(*) FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
                      WHERE m.member = r.oid)
               FROM pg_catalog.pg_roles r WHERE r.rolname = 'fluxbase_explorer'",
        )
        .unwrap();
        assert_eq!((bypass, sup, pg_roles), (Some(true), Some(false), Some(0)));
    }

    #[pg_test]
    fn a_table_created_after_install_is_granted_to_the_explorer() {
        Spi::run("CREATE SCHEMA late; CREATE TABLE late.t (id int PRIMARY KEY); CREATE SEQUENCE late.s").unwrap();
        let granted = Spi::get_one::<bool>(
            "SELECT has_schema_privilege('fluxbase_explorer', 'late', 'USAGE')
                -- one privilege a call: with several, any one of them would do
                AND has_table_privilege('fluxbase_explorer', 'late.t', 'SELECT')
                AND has_table_privilege('fluxbase_explorer', 'late.t', 'INSERT')
                AND has_table_privilege('fluxbase_explorer', 'late.t', 'UPDATE')
                AND has_table_privilege('fluxbase_explorer', 'late.t', 'DELETE')
                AND has_sequence_privilege('fluxbase_explorer', 'late.s', 'USAGE')",
        )
        .unwrap();
        assert_eq!(granted, Some(true));
        let private = Spi::get_one::<bool>("SELECT has_schema_privilege('fluxbase_explorer', 'dashboard_auth', 'USAGE')").unwrap();
        assert_eq!(private, Some(false));
    }
}
