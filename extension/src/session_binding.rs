//! A psql connection signed in once (`dashboard_auth.use_session`, `sql/admin_auth.sql`).
//!
//! A token typed into a call, `browse('fbs_...', ...)`, sits in that statement's text,
//! where any function run later can read it (`current_query()`, `pg_stat_activity`). So a
//! psql user signs the connection in with a statement of its own: the session's hash is
//! kept here, in this backend's memory, which no SQL can read, until
//! `dashboard_auth.end_session()` or the end of the connection. Functions then take NULL
//! for the token, and `dashboard_auth.check_session` uses the bound session.

use std::cell::RefCell;

thread_local! {
    static BOUND_SESSION: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

#[pgrx::pg_schema]
mod dashboard_auth {
    use pgrx::prelude::*;

    /// Internal (only the extension's definer functions call it): binds a session's hash.
    #[pg_extern(volatile, strict)]
    fn bind_session_hash(hash: &[u8]) {
        super::BOUND_SESSION.with(|bound| *bound.borrow_mut() = Some(hash.to_vec()));
    }

    /// Internal: forgets the bound session; true when there was one.
    #[pg_extern(volatile)]
    fn unbind_session() -> bool {
        super::BOUND_SESSION.with(|bound| bound.borrow_mut().take().is_some())
    }

    /// Internal: the bound session's hash, if any.
    #[pg_extern(volatile)]
    fn bound_session_hash() -> Option<Vec<u8>> {
        super::BOUND_SESSION.with(|bound| bound.borrow().clone())
    }
}
