//! The `fluxbase` binary's commands and settings, run as a user runs them.

use fluxbase_tests::{fluxbase, run, text, Caller, Server, TestDb};

/// Settings every test expects in `--help`: each one's flag and its environment variable.
const SERVE_SETTINGS: [(&str, &str); 7] = [
    ("--database-url", "DATABASE_URL"),
    ("--port", "FLUXBASE_ADMIN_PORT"),
    ("--session-secret", "FLUXBASE_ADMIN_SESSION_SECRET"),
    ("--session-timeout", "FLUXBASE_ADMIN_SESSION_TIMEOUT"),
    ("--public-url", "FLUXBASE_ADMIN_PUBLIC_URL"),
    ("--metrics-token", "FLUXBASE_ADMIN_METRICS_TOKEN"),
    ("--bind", "FLUXBASE_ADMIN_BIND"),
];

#[test]
fn help_lists_the_commands() {
    let output = run(fluxbase().arg("--help"));
    assert!(output.status.success());
    let (stdout, _) = text(&output);
    for command in ["serve", "admin", "extension"] {
        assert!(stdout.contains(command), "{command} missing from --help:\n{stdout}");
    }
}

#[test]
fn serve_help_lists_every_setting_with_its_environment_variable() {
    let output = run(fluxbase().args(["serve", "--help"]).env("DATABASE_URL", "postgresql://u:hunter2hunter2@h/db"));
    assert!(output.status.success());
    // Help is wrapped to the terminal's width: compare with whitespace collapsed.
    let stdout = text(&output).0.split_whitespace().collect::<Vec<_>>().join(" ");
    for (flag, env) in SERVE_SETTINGS {
        assert!(stdout.contains(flag), "{flag} missing from serve --help:\n{stdout}");
        assert!(stdout.contains(&format!("env: {env}")), "{env} missing from serve --help:\n{stdout}");
    }
    assert!(stdout.contains("[default: 3001]"), "{stdout}");
    assert!(stdout.contains("[default: 127.0.0.1]"), "{stdout}");
    assert!(!stdout.contains("hunter2"), "help must not show the database password:\n{stdout}");
}

/// Runs `fluxbase serve` expecting it to fail at once with one line on stderr.
fn serve_fails_with(envs: &[(&str, &str)]) -> String {
    let mut cmd = fluxbase();
    cmd.arg("serve");
    // A valid secret unless a case sets its own: these cases are about the other settings.
    cmd.env("FLUXBASE_ADMIN_SESSION_SECRET", "test-secret-test-secret-test-secret-0123");
    for (key, value) in envs {
        cmd.env(key, value);
    }
    fluxbase_tests::with_data_login(&mut cmd);
    let output = run(&mut cmd);
    let (stdout, stderr) = text(&output);
    assert!(!output.status.success(), "serve should have failed; stdout: {stdout}");
    assert_eq!(output.status.code(), Some(1));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line of error, got:\n{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
    stderr
}

#[test]
fn an_unreachable_database_is_one_line_and_a_non_zero_exit() {
    // Nothing listens on port 1.
    let stderr = serve_fails_with(&[("DATABASE_URL", "postgresql://fluxbase_web:s3cretpw@127.0.0.1:1/fluxbase")]);
    assert!(stderr.contains("cannot connect to the database fluxbase_web@127.0.0.1:1/fluxbase"), "{stderr}");
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(!stderr.contains("s3cretpw"), "the password leaked: {stderr}");
}

#[test]
fn a_wrong_password_is_one_line_naming_the_cause() {
    let db = TestDb::new();
    let url = db.url(Caller::Dashboard, "").replace(fluxbase_tests::PASSWORD, "wrong-password");
    let stderr = serve_fails_with(&[("DATABASE_URL", &url)]);
    assert!(stderr.contains("password authentication failed"), "{stderr}");
    assert!(!stderr.contains("wrong-password"), "{stderr}");
}

#[test]
fn a_missing_or_malformed_database_url_is_explained() {
    let stderr = serve_fails_with(&[]);
    assert!(stderr.contains("DATABASE_URL is not set"), "{stderr}");
    let stderr = serve_fails_with(&[("DATABASE_URL", "postgresql://u:topsecret@host:notaport/db")]);
    assert!(stderr.contains("DATABASE_URL is malformed"), "{stderr}");
    assert!(!stderr.contains("topsecret"), "{stderr}");
}

#[test]
fn malformed_settings_name_the_variable_and_the_fix() {
    let url = "postgresql://u:p@127.0.0.1:1/db";
    let cases: [(&str, &str, &str); 6] = [
        ("FLUXBASE_ADMIN_PORT", "70000", "must be a port number"),
        ("FLUXBASE_ADMIN_BIND", "localhost:80", "must be an IP address"),
        ("FLUXBASE_ADMIN_SESSION_TIMEOUT", "8d", "at most 7d"),
        ("FLUXBASE_ADMIN_SESSION_TIMEOUT", "forever", "must be a duration such as 30m, 8h or 7d"),
        ("FLUXBASE_ADMIN_SESSION_SECRET", "short", "at least 32 characters"),
        ("FLUXBASE_ADMIN_PUBLIC_URL", "admin.example.com", "absolute http(s) URL"),
    ];
    for (key, value, expected) in cases {
        let stderr = serve_fails_with(&[("DATABASE_URL", url), (key, value)]);
        assert!(stderr.contains(key) && stderr.contains(expected), "{key}={value}: {stderr}");
    }
}

#[test]
fn a_database_without_the_extension_is_explained() {
    let db = TestDb::without_extension();
    let stderr = serve_fails_with(&[("DATABASE_URL", &db.url(Caller::Superuser, ""))]);
    assert!(stderr.contains("the fluxbase_admin extension is not installed"), "{stderr}");
    assert!(stderr.contains("fluxbase extension install"), "{stderr}");
}

#[test]
fn a_login_role_without_the_dashboard_role_is_explained() {
    let db = TestDb::new();
    let stderr = serve_fails_with(&[("DATABASE_URL", &db.url(Caller::App, ""))]);
    assert!(stderr.contains("cannot switch to fluxbase_dashboard"), "{stderr}");
    assert!(stderr.contains("GRANT fluxbase_dashboard TO app_user"), "{stderr}");
}

#[test]
fn a_data_login_that_holds_too_much_is_refused_naming_the_role_and_the_fix() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fluxbase_data_greedy') THEN
             CREATE ROLE fluxbase_data_greedy LOGIN NOINHERIT PASSWORD 'fluxbase-test'; END IF; END $$;
         SELECT * FROM fluxbase_admin.prepare_data_login('fluxbase_data_greedy');
         GRANT pg_read_all_data, fluxbase_dashboard TO fluxbase_data_greedy;",
    )
    .unwrap();
    let url = db.url(Caller::Dashboard, "");
    let data_url = url.replacen("fluxbase_web:", "fluxbase_data_greedy:", 1);
    let stderr = serve_fails_with(&[("DATABASE_URL", &url), ("FLUXBASE_ADMIN_DATA_DATABASE_URL", &data_url)]);
    // The role is cluster-wide: gone again before other tests look at the cluster's logins.
    su.batch_execute("DROP OWNED BY fluxbase_data_greedy; DROP ROLE fluxbase_data_greedy").unwrap();
    assert!(stderr.contains("the database logins are not safe to serve with"), "{stderr}");
    assert!(stderr.contains("pg_read_all_data") && stderr.contains("REVOKE pg_read_all_data FROM fluxbase_data_greedy"), "{stderr}");
    assert!(stderr.contains("REVOKE fluxbase_dashboard FROM fluxbase_data_greedy"), "{stderr}");
}

#[test]
fn a_missing_data_login_url_is_explained() {
    let db = TestDb::new();
    let stderr = serve_fails_with(&[("DATABASE_URL", &db.url(Caller::Dashboard, "")), ("FLUXBASE_ADMIN_DATA_DATABASE_URL", "")]);
    assert!(stderr.contains("FLUXBASE_ADMIN_DATA_DATABASE_URL is not set"), "{stderr}");
}

#[test]
fn extension_install_creates_then_reports_up_to_date() {
    let db = TestDb::without_extension();
    let url = db.url(Caller::Superuser, "");
    let output = run(fluxbase().args(["extension", "install"]).env("DATABASE_URL", &url));
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("created extension fluxbase_admin 0.1.0"), "{stdout}");
    // The cluster's roles exist already: the install reports the ones it adopted.
    assert!(stderr.contains("adopted existing roles"), "{stderr}");

    let output = run(fluxbase().args(["extension", "install"]).env("DATABASE_URL", &url));
    let (stdout, _) = text(&output);
    assert!(output.status.success());
    assert!(stdout.contains("fluxbase_admin 0.1.0 is up to date"), "{stdout}");

    // And the server now starts on it.
    let _server = Server::start_with(fluxbase().env("DATABASE_URL", db.url(Caller::Dashboard, "")));
}

#[test]
fn extension_install_without_superuser_rights_is_one_line() {
    let db = TestDb::without_extension();
    let output = run(fluxbase().args(["extension", "install"]).env("DATABASE_URL", db.url(Caller::Dashboard, "")));
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot create the extension"), "{stderr}");
    assert!(stderr.contains("permission denied"), "{stderr}");
}
