//! Settings as a page reads them: each one's kind, range and unit, so that an input can be
//! typed, and the extension's own reason when a value is refused.

use fluxbase_tests::admin::{as_dashboard, create_admin, login, PASSWORD};
use fluxbase_tests::{Caller, TestDb};

/// One setting as `list_settings` gives it: (value, kind, min, max, allowed, unit).
type Described = (String, String, Option<String>, Option<String>, String, String);

fn describe(db: &TestDb, token: &str, key: &str) -> Described {
    let mut web = db.connect(Caller::Dashboard);
    let rows = as_dashboard(
        &mut web,
        "SELECT value, kind, min_value, max_value, allowed, unit FROM dashboard_auth.list_settings($1) WHERE key = $2",
        &[&token, &key],
    )
    .unwrap();
    let r = &rows[0];
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))
}

#[test]
fn each_setting_says_its_kind_range_and_unit_to_admins_and_viewers() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    create_admin(&db, "vic@example.com", "viewer");
    let mut web = db.connect(Caller::Dashboard);
    let admin = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    let viewer = login(&mut web, "vic@example.com", PASSWORD, "192.0.2.1").token.unwrap();

    for token in [&admin, &viewer] {
        assert_eq!(
            describe(&db, token, "session.idle_timeout"),
            ("30m".into(), "duration".into(), Some("1m".into()), Some("24h".into()), "1m to 24h".into(), "duration".into())
        );
        assert_eq!(
            describe(&db, token, "password.min_length"),
            ("12".into(), "integer".into(), Some("12".into()), Some("128".into()), "12 to 128".into(), "characters".into())
        );
        let roles = describe(&db, token, "users.extra_roles");
        assert_eq!((roles.1.as_str(), roles.2.as_deref(), roles.3.as_deref(), roles.5.as_str()), ("roles", None, None, "roles"), "{roles:?}");
    }
    // Every number has a unit and a range; every setting says what it allows.
    let mut su = db.connect(Caller::Superuser);
    let incomplete: Vec<String> = su
        .query(
            "SELECT key FROM dashboard_auth.setting_definitions()
              WHERE allowed = '' OR (kind IN ('integer', 'duration') AND (unit = '' OR min_value IS NULL OR max_value IS NULL))",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(incomplete.is_empty(), "settings a page cannot type: {incomplete:?}");

    // A value out of range is refused with the extension's reason, in the words of the range.
    let err = as_dashboard(&mut web, "SELECT * FROM dashboard_auth.set_setting($1, 'session.idle_timeout', '2d')", &[&admin]).unwrap_err();
    let db_error = err.as_db_error().unwrap();
    assert_eq!(db_error.code().code(), "22023");
    assert!(db_error.message().contains("between 1m and 24h"), "{}", db_error.message());
    // A viewer is refused the same way as everywhere.
    let err = as_dashboard(&mut web, "SELECT * FROM dashboard_auth.set_setting($1, 'session.idle_timeout', '1h')", &[&viewer]).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42501");
}
