//! Dashboard settings: typed, validated, with defaults in code.
//!
//! `dashboard_auth.settings` stores only the values an admin changed, so a fresh
//! install writes no rows and a restored backup brings back exactly the overrides.
//! Later features add their settings to `DEFINITIONS`.

use pgrx::prelude::*;

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Whole seconds, written `30m`, `24h`, `7d`, `1h30m`.
    Duration { min: i64, max: i64 },
    Integer { min: i64, max: i64 },
    /// Database roles, written `editor, support`; each must exist and must be an
    /// ordinary role (see `forbidden_role`).
    Roles,
    /// One database role, checked by `check` (a function of the extension that returns
    /// why the role may not be used, or NULL).
    Role { check: &'static str },
}

#[derive(Debug)]
pub struct Definition {
    pub key: &'static str,
    pub kind: Kind,
    /// The default as a person writes it.
    pub default: &'static str,
    pub description: &'static str,
}

const MINUTE: i64 = 60;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

pub const DEFINITIONS: &[Definition] = &[
    Definition {
        key: "session.lifetime",
        kind: Kind::Duration { min: 5 * MINUTE, max: 7 * DAY },
        default: "24h",
        description: "How long an admin session lasts at most, however active",
    },
    Definition {
        key: "session.idle_timeout",
        kind: Kind::Duration { min: MINUTE, max: DAY },
        default: "30m",
        description: "An admin session ends after this long without a request",
    },
    Definition {
        key: "lockout.max_failures",
        kind: Kind::Integer { min: 3, max: 100 },
        default: "5",
        description: "Failed sign-ins from one address within lockout.window that lock that address out of the account (admins and app users)",
    },
    Definition {
        key: "lockout.window",
        kind: Kind::Duration { min: MINUTE, max: DAY },
        default: "15m",
        description: "The window in which failed sign-ins are counted",
    },
    Definition {
        key: "lockout.duration",
        kind: Kind::Duration { min: MINUTE, max: DAY },
        default: "15m",
        description: "How long an address's lockout lasts; each further lockout of the same address doubles it, up to 24h",
    },
    Definition {
        key: "lockout.ip_max_failures",
        kind: Kind::Integer { min: 5, max: 100_000 },
        default: "20",
        description: "Failed sign-ins from one IP address within lockout.window before that address is refused (admins and app users, counted apart)",
    },
    Definition {
        key: "lockout.account_max_failures",
        kind: Kind::Integer { min: 5, max: 100_000 },
        default: "20",
        description: "Failed sign-ins for one account from all addresses within lockout.window after which the account is slowed down, never locked (admins and app users)",
    },
    Definition {
        key: "lockout.account_backoff",
        kind: Kind::Duration { min: 1, max: 5 * MINUTE },
        default: "10s",
        description: "While an account is slowed down, the least time between two password checks for it from addresses it has not signed in from",
    },
    Definition {
        key: "password.min_length",
        kind: Kind::Integer { min: 12, max: 128 },
        default: "12",
        description: "Minimum length of an admin password (never below 12)",
    },
    Definition {
        key: "impersonation.max_duration",
        kind: Kind::Duration { min: MINUTE, max: 8 * HOUR },
        default: "30m",
        description: "How long an impersonation session lasts at most before it expires by itself",
    },
    Definition {
        key: "metrics.sample_interval",
        kind: Kind::Duration { min: 10, max: HOUR },
        default: "1m",
        description: "How often the headline metrics are sampled into their history",
    },
    Definition {
        key: "metrics.retention",
        kind: Kind::Duration { min: HOUR, max: 90 * DAY },
        default: "7d",
        description: "How long metric samples are kept",
    },
    Definition {
        key: "users.extra_roles",
        kind: Kind::Roles,
        default: "",
        description: "Database roles an app user may be given besides authenticated (comma-separated)",
    },
    Definition {
        key: "users.session_lifetime",
        kind: Kind::Duration { min: 5 * MINUTE, max: 90 * DAY },
        default: "7d",
        description: "How long an app user's session from auth.sign_in lasts",
    },
    Definition {
        key: "runner.role",
        kind: Kind::Role { check: "fluxbase_admin.forbidden_runner_role" },
        default: "service_role",
        description: "The role the SQL runner runs statements as; never a superuser (the login role must be a member)",
    },
    Definition {
        key: "runner.row_limit",
        kind: Kind::Integer { min: 1, max: 50_000 },
        default: "1000",
        description: "The most rows the SQL runner returns from one statement; the result says when it cut some",
    },
    Definition {
        key: "runner.timeout",
        kind: Kind::Duration { min: 1, max: HOUR },
        default: "30s",
        description: "The longest one statement in the SQL runner may run",
    },
    Definition {
        key: "users.password_min_length",
        kind: Kind::Integer { min: 8, max: 128 },
        default: "8",
        description: "Minimum length of an app user's password (never below 8)",
    },
];

pub fn definition(key: &str) -> Result<&'static Definition, String> {
    DEFINITIONS.iter().find(|d| d.key == key).ok_or_else(|| {
        let known: Vec<&str> = DEFINITIONS.iter().map(|d| d.key).collect();
        format!("unknown setting {key:?}; the settings are: {}", known.join(", "))
    })
}

/// Parses `30m`, `24h`, `7d`, `1h30m`, `1h 30m` or `90s` into seconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() {
        return Err("a duration is needed, such as 30m, 8h or 7d".into());
    }
    let mut total: i64 = 0;
    let mut digits = String::new();
    for c in compact.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => MINUTE,
            'h' => HOUR,
            'd' => DAY,
            _ => return Err(format!("{text:?} is not a duration: use a number and a unit (s, m, h, d), such as 30m or 8h")),
        };
        let n: i64 = digits
            .parse()
            .map_err(|_| format!("{text:?} is not a duration: put a number before each unit, such as 30m or 8h"))?;
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(|| format!("{text:?} is too long"))?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!("{text:?} has no unit: write {digits}s, {digits}m, {digits}h or {digits}d"));
    }
    Ok(total)
}

/// Seconds as a person writes them: 5400 is `1h30m`, 86400 is `24h`, 604800 is `7d`
/// (days only from two days up, since "24h" is how sessions are usually described).
pub fn format_duration(mut seconds: i64) -> String {
    if seconds == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let units: &[(i64, char)] =
        if seconds >= 2 * DAY { &[(DAY, 'd'), (HOUR, 'h'), (MINUTE, 'm'), (1, 's')] } else { &[(HOUR, 'h'), (MINUTE, 'm'), (1, 's')] };
    for &(unit, suffix) in units {
        if seconds >= unit {
            out.push_str(&format!("{}{}", seconds / unit, suffix));
            seconds %= unit;
        }
    }
    out
}

/// Role names as Postgres folds unquoted identifiers: lower case letters, digits, `_`.
fn parse_roles(text: &str) -> Result<Vec<String>, String> {
    let mut roles: Vec<String> = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let valid = name.len() <= 63
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(format!("{name:?} is not a role name: use lower-case letters, digits and _"));
        }
        if !roles.iter().any(|r| r == name) {
            roles.push(name.to_string());
        }
    }
    Ok(roles)
}

/// Parses and checks the syntax of `value` for `key`, returning its stored form.
pub fn parse(key: &str, value: &str) -> Result<serde_json::Value, String> {
    let def = definition(key)?;
    let (number, min, max) = match def.kind {
        Kind::Duration { min, max } => (parse_duration(value)?, min, max),
        Kind::Integer { min, max } => (
            value.trim().parse::<i64>().map_err(|_| format!("{key} must be a whole number, not {value:?}"))?,
            min,
            max,
        ),
        Kind::Roles => return Ok(serde_json::json!(parse_roles(value)?)),
        Kind::Role { .. } => {
            return match parse_roles(value)?.as_slice() {
                [one] => Ok(serde_json::json!(one)),
                _ => Err(format!("{key} is one role name")),
            }
        }
    };
    if number < min || number > max {
        return Err(format!(
            "{key} must be between {} and {}, not {}",
            format(def, &min.into()),
            format(def, &max.into()),
            value.trim()
        ));
    }
    Ok(number.into())
}

pub fn format(def: &Definition, value: &serde_json::Value) -> String {
    match (def.kind, value) {
        (Kind::Duration { .. }, v) => format_duration(v.as_i64().unwrap_or(0)),
        (Kind::Integer { .. }, v) => v.to_string(),
        (Kind::Roles, serde_json::Value::Array(roles)) => {
            roles.iter().filter_map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
        }
        (Kind::Roles, other) => other.to_string(),
        (Kind::Role { .. }, v) => v.as_str().map_or_else(|| v.to_string(), str::to_string),
    }
}

/// What a setting's number counts, so that a page can label its input. Durations are
/// written with their own units (s, m, h, d).
fn unit(def: &Definition) -> &'static str {
    match (def.kind, def.key) {
        (Kind::Duration { .. }, _) => "duration",
        (Kind::Integer { .. }, key) if key.ends_with("failures") => "failures",
        (Kind::Integer { .. }, key) if key.ends_with("min_length") => "characters",
        (Kind::Integer { .. }, "runner.row_limit") => "rows",
        (Kind::Integer { .. }, _) => "",
        (Kind::Roles, _) => "roles",
        (Kind::Role { .. }, _) => "role",
    }
}

/// The allowed values of a setting as a person reads them: the range of a number or a
/// duration (formatted as the setting is written), or the rule for roles.
fn allowed(def: &Definition) -> (Option<String>, Option<String>, String) {
    match def.kind {
        Kind::Duration { min, max } | Kind::Integer { min, max } => {
            let (low, high) = (format(def, &min.into()), format(def, &max.into()));
            let text = format!("{low} to {high}");
            (Some(low), Some(high), text)
        }
        Kind::Roles => (None, None, "existing roles that do not bypass RLS, comma-separated".into()),
        Kind::Role { .. } => (None, None, "one existing role, never a superuser or one that creates roles".into()),
    }
}

/// Why `role` cannot be listed for app users. The rules live in one place,
/// `auth.forbidden_user_role` (sql/app_users.sql), which impersonation applies too.
fn forbidden_role(role: &str) -> Option<String> {
    if ["anon", "authenticated"].contains(&role) {
        return Some(format!("{role} cannot be listed: authenticated is always allowed, and anon is not a user's role"));
    }
    Spi::get_one_with_args::<String>("SELECT auth.forbidden_user_role($1)", &[role.into()])
        .unwrap_or_else(|e| Some(format!("cannot check role {role}: {e}")))
}

#[pg_schema]
mod dashboard_auth {
    use pgrx::prelude::*;
    use pgrx::JsonB;

    fn invalid_value(reason: String) -> ! {
        pgrx::ereport!(ERROR, PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, reason);
    }

    /// Every setting: its key, kind, default (in stored form), what it does, and what a
    /// page needs to type its input: the least and greatest value (as written), the
    /// allowed values in words, and the unit.
    #[pg_extern(immutable, parallel_safe)]
    #[allow(clippy::type_complexity)]
    fn setting_definitions() -> TableIterator<
        'static,
        (
            name!(key, String),
            name!(kind, String),
            name!(default_value, JsonB),
            name!(description, String),
            name!(min_value, Option<String>),
            name!(max_value, Option<String>),
            name!(allowed, String),
            name!(unit, String),
        ),
    > {
        TableIterator::new(super::DEFINITIONS.iter().map(|d| {
            let kind = match d.kind {
                super::Kind::Duration { .. } => "duration",
                super::Kind::Integer { .. } => "integer",
                super::Kind::Roles => "roles",
                super::Kind::Role { .. } => "role",
            };
            let default = super::parse(d.key, d.default).expect("defaults are valid");
            let (min_value, max_value, allowed) = super::allowed(d);
            (
                d.key.to_string(),
                kind.to_string(),
                JsonB(default),
                d.description.to_string(),
                min_value,
                max_value,
                allowed,
                super::unit(d).to_string(),
            )
        }))
    }

    /// The default of one setting, in stored form; NULL for an unknown key. What
    /// get_setting reads on every call where nothing is stored: one lookup, not the
    /// whole table of setting_definitions.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn setting_default(key: &str) -> Option<JsonB> {
        super::definition(key).ok().map(|d| JsonB(super::parse(d.key, d.default).expect("defaults are valid")))
    }

    /// The stored form of `value` for `key`; an invalid value is refused with the reason.
    #[pg_extern(stable, strict)]
    fn parse_setting(key: &str, value: &str) -> JsonB {
        let parsed = super::parse(key, value).unwrap_or_else(|reason| invalid_value(reason));
        if let (Ok(super::Definition { kind: super::Kind::Role { check }, .. }), Some(role)) =
            (super::definition(key), parsed.as_str())
        {
            let refusal = Spi::get_one_with_args::<String>(&format!("SELECT {check}($1)"), &[role.into()])
                .unwrap_or_else(|e| Some(format!("cannot check role {role}: {e}")));
            if let Some(reason) = refusal {
                invalid_value(format!("{key}: {reason}"));
            }
        }
        if let serde_json::Value::Array(roles) = &parsed {
            for role in roles.iter().filter_map(|r| r.as_str()) {
                if let Some(reason) = super::forbidden_role(role) {
                    invalid_value(format!("{key}: {reason}"));
                }
            }
        }
        JsonB(parsed)
    }

    /// A stored value as a person writes it (`24h`, `12`, `editor, support`).
    #[pg_extern(immutable, strict, parallel_safe)]
    fn format_setting(key: &str, value: JsonB) -> String {
        let def = super::definition(key).unwrap_or_else(|reason| invalid_value(reason));
        super::format(def, &value.0)
    }
}

pgrx::extension_sql_file!(
    "../../sql/settings.sql",
    name = "settings",
    requires = ["audit", setting_definitions, setting_default, parse_setting, format_setting]
);

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn every_number_says_what_it_counts_and_its_range() {
        for def in DEFINITIONS {
            if let Kind::Integer { .. } = def.kind {
                assert_ne!(unit(def), "", "{} needs a unit", def.key);
            }
        }
        let idle = definition("session.idle_timeout").unwrap();
        assert_eq!(allowed(idle), (Some("1m".into()), Some("24h".into()), "1m to 24h".into()));
        assert_eq!(unit(definition("password.min_length").unwrap()), "characters");
    }

    #[test]
    fn durations_round_trip() {
        for (text, seconds) in [("30m", 1800), ("24h", 86400), ("7d", 604800), ("1h30m", 5400), ("1h 30m", 5400), ("90s", 90)] {
            assert_eq!(parse_duration(text), Ok(seconds), "{text}");
        }
        assert_eq!(format_duration(5400), "1h30m");
        assert_eq!(format_duration(86400), "24h");
        assert_eq!(format_duration(7 * 86400), "7d");
    }

    #[test]
    fn roles_are_a_clean_list() {
        assert_eq!(parse("users.extra_roles", " editor, support ,editor"), Ok(serde_json::json!(["editor", "support"])));
        assert_eq!(parse("users.extra_roles", ""), Ok(serde_json::json!([])));
        assert!(parse("users.extra_roles", "Editor; DROP").unwrap_err().contains("is not a role name"));
    }

    #[test]
    fn invalid_values_say_why() {
        assert!(parse("password.min_length", "8").unwrap_err().contains("between 12 and 128"));
        assert!(parse("session.lifetime", "8").unwrap_err().contains("has no unit"));
        assert!(parse("session.lifetime", "30d").unwrap_err().contains("between 5m and 7d"));
        assert!(parse("no.such", "1").unwrap_err().contains("unknown setting"));
        assert!(parse("lockout.max_failures", "five").unwrap_err().contains("whole number"));
        assert_eq!(parse("password.min_length", " 16 "), Ok(16.into()));
    }
}
