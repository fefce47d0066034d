//! Relation shapes, cached per backend (issue 21: a page must not read the catalogs again).
//!
//! `fluxbase_admin.read_relation_shape(oid)` (sql/explorer_browse.sql) reads a relation's
//! shape from the catalogs: a dozen joins, about 2.5 ms. Every page needs it, and it
//! changes only with DDL, so each backend keeps the shapes it read here, in Rust memory,
//! keyed by the relation's oid, with the shape both as JSON and as the builder's
//! [`Shape`].
//!
//! What invalidates an entry is Postgres's own cache invalidation, the machinery that
//! keeps its relcache right:
//! - a relcache callback for the relation itself (columns added, dropped, renamed or
//!   retyped, NOT NULL, indexes created or dropped, the table renamed or moved, ANALYZE
//!   and VACUUM updating reltuples), for each of its indexes (renamed, made valid) and for
//!   each partition of a partitioned table (their reltuples make its estimate);
//!   `InvalidOid` means "everything" and empties the cache;
//! - syscache callbacks on pg_type, pg_namespace, pg_opclass, pg_operator, pg_amop and
//!   pg_cast, which empty the whole cache: a renamed schema or type, a domain's base type,
//!   a new default operator class or a binary cast change casts and operators in shapes
//!   without touching the relation's own catalog rows.
//!
//! Before each lookup the backend reads the invalidation queue
//! (`AcceptInvalidationMessages`), so a cached shape is never older than a catalog read
//! at the same moment would be. A shape read while an invalidation arrives is not kept
//! (a generation counter). A shape holds names, types and operators from the catalogs
//! only, nothing that depends on the role reading it (relation_shape checks no
//! privilege; its search_path is pinned), so one cache serves every role the backend
//! runs as: privileges are checked by Postgres when the page's SQL runs.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::JsonB;

use super::shape::Shape;

/// One relation's shape.
pub struct Cached {
    /// As `read_relation_shape` returned it.
    pub json: serde_json::Value,
    /// As the builder reads it, or why it cannot.
    pub shape: Result<Shape, String>,
    /// Its foreign keys both ways, as `read_relation_links` returned them.
    pub links: serde_json::Value,
    /// The relation, its indexes, its partitions, and the relations its foreign keys
    /// join it to, both ways: a relcache invalidation of any of them drops the entry. (A
    /// new foreign key that references it adds triggers to it, which invalidates it.)
    depends_on: Vec<pg_sys::Oid>,
}

/// More than this many relations cached: start again (a backend that walks thousands of
/// tables does not keep them all).
const MAX_ENTRIES: usize = 1000;

thread_local! {
    static SHAPES: RefCell<HashMap<pg_sys::Oid, Rc<Cached>>> = RefCell::new(HashMap::new());
    /// Counts invalidations: a shape read across one is not kept.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
    /// Set by a callback that found the map borrowed (never expected): empty it first.
    static FLUSH_PENDING: Cell<bool> = const { Cell::new(false) };
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// The catalogs whose changes can change a shape without a relcache invalidation of the
/// relation: the types and schemas named in it, operator classes, operators and strategies,
/// and binary casts (default_btree_opclass follows them).
const SYSCACHES: [pg_sys::SysCacheIdentifier::Type; 6] = [
    pg_sys::SysCacheIdentifier::TYPEOID,
    pg_sys::SysCacheIdentifier::NAMESPACEOID,
    pg_sys::SysCacheIdentifier::CLAOID,
    pg_sys::SysCacheIdentifier::OPEROID,
    pg_sys::SysCacheIdentifier::AMOPSTRATEGY,
    pg_sys::SysCacheIdentifier::CASTSOURCETARGET,
];

/// Registers the callbacks, once per backend (Postgres keeps them until it exits).
fn register() {
    if REGISTERED.get() {
        return;
    }
    // SAFETY: plain registrations of functions with the signatures Postgres expects.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(relation_changed), pg_sys::Datum::from(0));
        for cache in SYSCACHES {
            pg_sys::CacheRegisterSyscacheCallback(cache as i32, Some(catalog_changed), pg_sys::Datum::from(0));
        }
    }
    REGISTERED.set(true);
}

fn forget(relid: Option<pg_sys::Oid>) {
    GENERATION.set(GENERATION.get().wrapping_add(1));
    SHAPES.with(|shapes| match shapes.try_borrow_mut() {
        Ok(mut shapes) => match relid {
            None => shapes.clear(),
            Some(relid) => shapes.retain(|_, cached| !cached.depends_on.contains(&relid)),
        },
        Err(_) => FLUSH_PENDING.set(true),
    });
}

#[pg_guard]
unsafe extern "C-unwind" fn relation_changed(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    forget((relid != pg_sys::InvalidOid).then_some(relid));
}

#[pg_guard]
unsafe extern "C-unwind" fn catalog_changed(_arg: pg_sys::Datum, _cache: std::ffi::c_int, _hash: u32) {
    forget(None);
}

/// The shape of relation `rel`, from the cache or the catalogs; None when no relation
/// has that oid.
pub fn shape(rel: pg_sys::Oid) -> Option<Rc<Cached>> {
    register();
    // SAFETY: reads the shared invalidation queue and runs the callbacks; allowed anywhere
    // in a transaction (every lock acquisition does it).
    unsafe { pg_sys::AcceptInvalidationMessages() };
    if FLUSH_PENDING.replace(false) {
        SHAPES.with_borrow_mut(|shapes| shapes.clear());
    }
    if let Some(hit) = SHAPES.with_borrow(|shapes| shapes.get(&rel).cloned()) {
        return Some(hit);
    }
    let generation = GENERATION.get();
    let read = Spi::get_three_with_args::<JsonB, JsonB, Vec<Option<i64>>>(
        "SELECT fluxbase_admin.read_relation_shape($1), fluxbase_admin.read_relation_links($1),
                ARRAY(SELECT i.indexrelid::pg_catalog.int8 FROM pg_catalog.pg_index i WHERE i.indrelid = $1
                      UNION ALL
                      SELECT t.relid::pg_catalog.int8 FROM pg_catalog.pg_partition_tree($1) t WHERE t.relid <> $1
                      UNION ALL
                      SELECT f.confrelid::pg_catalog.int8 FROM pg_catalog.pg_constraint f WHERE f.conrelid = $1 AND f.contype = 'f'
                      UNION ALL
                      SELECT f.conrelid::pg_catalog.int8 FROM pg_catalog.pg_constraint f
                       WHERE f.oid IN (SELECT d.objid FROM pg_catalog.pg_depend d
                                        WHERE d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = $1
                                          AND d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass)
                         AND f.confrelid = $1 AND f.contype = 'f')",
        &[rel.into()],
    );
    let (json, links, depends_on) = match read {
        Ok(read) => read,
        Err(e) => {
            pgrx::ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("cannot read the shape of relation {}: {e}", rel.to_u32())
            );
            unreachable!("ereport! at ERROR does not return")
        }
    };
    let json = json?.0;
    let shape = serde_json::from_value::<Shape>(json.clone()).map_err(|e| format!("malformed relation shape: {e}"));
    let mut depends_on: Vec<pg_sys::Oid> =
        depends_on.unwrap_or_default().into_iter().flatten().map(|oid| pg_sys::Oid::from(oid as u32)).collect();
    depends_on.push(rel);
    let links = links.map(|links| links.0).unwrap_or(serde_json::Value::Null);
    let cached = Rc::new(Cached { json, shape, links, depends_on });
    if GENERATION.get() == generation && cached.shape.is_ok() {
        SHAPES.with_borrow_mut(|shapes| {
            if shapes.len() >= MAX_ENTRIES {
                shapes.clear();
            }
            shapes.insert(rel, cached.clone());
        });
    }
    Some(cached)
}
