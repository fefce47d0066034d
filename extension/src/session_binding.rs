//! A psql connection signed in once (`dashboard_auth.use_session`, `sql/admin_auth.sql`).
//!
//! A token typed into a call, `browse('fbs_...', ...)`, sits in that statement's text,
//! where any function run later can read it (`current_query()`, `pg_stat_activity`). So a
//! psql user signs the connection in with a statement of its own: the session's hash is
//! kept here, in this backend's memory, which no SQL can read, until
//! `dashboard_auth.end_session()`, `DISCARD ALL` or the end of the connection. Functions
//! then take NULL for the token, and `dashboard_auth.check_session` uses the bound session.
//!
//! A change follows its transaction: binding or unbinding in a transaction that rolls
//! back is undone (data_plane.rs's transaction callback calls `at_transaction_end`).

use std::cell::RefCell;

#[derive(Default)]
struct Binding {
    /// The bound session's token hash.
    current: Option<Vec<u8>>,
    /// What was bound when the current transaction first changed it.
    before_transaction: Option<Option<Vec<u8>>>,
}

thread_local! {
    static BOUND_SESSION: RefCell<Binding> = RefCell::new(Binding::default());
}

fn change(new: Option<Vec<u8>>) -> bool {
    BOUND_SESSION.with(|bound| {
        let mut bound = bound.borrow_mut();
        if bound.before_transaction.is_none() {
            bound.before_transaction = Some(bound.current.clone());
        }
        let had = bound.current.is_some();
        bound.current = new;
        had
    })
}

/// Called when a transaction ends: a rolled-back change is undone.
pub fn at_transaction_end(committed: bool) {
    BOUND_SESSION.with(|bound| {
        if let Ok(mut bound) = bound.try_borrow_mut() {
            if let Some(before) = bound.before_transaction.take() {
                if !committed {
                    bound.current = before;
                }
            }
        }
    });
}

/// `DISCARD ALL` resets the session, the sign-in included: a pooler that shares the
/// dashboard login must not hand the next client a signed-in connection.
pub fn forget() {
    BOUND_SESSION.with(|bound| {
        if let Ok(mut bound) = bound.try_borrow_mut() {
            *bound = Binding::default();
        }
    });
}

#[pgrx::pg_schema]
mod dashboard_auth {
    use pgrx::prelude::*;

    /// Internal (only the extension's definer functions call it): binds a session's hash.
    #[pg_extern(volatile, strict)]
    fn bind_session_hash(hash: &[u8]) {
        super::change(Some(hash.to_vec()));
    }

    /// Internal: forgets the bound session; true when there was one.
    #[pg_extern(volatile)]
    fn unbind_session() -> bool {
        super::change(None)
    }

    /// Internal: the bound session's hash, if any.
    #[pg_extern(volatile)]
    fn bound_session_hash() -> Option<Vec<u8>> {
        super::BOUND_SESSION.with(|bound| bound.borrow().current.clone())
    }
}
