//! The `postgres://` URL: our own parameters (`schema`, `pool_size`, `statement_timeout`) taken
//! out, the rest handed to sqlx, and a password-free description of the server for messages.

use std::str::FromStr;
use std::time::Duration;

use sequential_adaptor::{Error, Result, scheme_of};
use sqlx::postgres::PgConnectOptions;

/// The schema our tables live in unless the URL names another (`?schema=NAME`).
pub const DEFAULT_SCHEMA: &str = "sequential";

/// Connections in the pool unless the URL says otherwise (`?pool_size=N`).
pub const DEFAULT_POOL_SIZE: u32 = 10;

/// The largest `pool_size` accepted.
const MAX_POOL_SIZE: u32 = 1_000;

/// Planner settings of every connection (see [`crate::hot_statements`]). Every statement we
/// send is a lookup by key or a range of an index, whatever its parameters:
/// - `enable_seqscan = off`: a statement sqlx prepares runs, after its first executions, on one
///   generic plan that the connection keeps. Made while `runs` was small (or never analysed, so
///   that the planner only knows its size in pages) that plan may scan `runs`, and then every
///   settle costs as much as the run history is long: at 3,000 runs, a third of the server's
///   CPU in the engine bench. The setting only prices scans out: a query with no index to use
///   still scans, and one that can read a whole index in order may do that instead (so the
///   batch statements also name the runs they touch by key: `id = ANY($1)`).
/// - `plan_cache_mode = force_generic_plan`: without it the server compares the generic plan's
///   cost with plans made for each execution's parameters, and for a statement over arrays of
///   a few runs it keeps planning every execution (a tenth of its CPU).
pub(crate) const PLANNER_SETTINGS: &[(&str, &str)] = &[
    ("enable_seqscan", "off"),
    ("plan_cache_mode", "force_generic_plan"),
];

/// `statement_timeout` of every connection unless the URL says otherwise.
pub const DEFAULT_STATEMENT_TIMEOUT: &str = "60s";

/// The URL forms, for error messages.
pub const FORMS: &str = "postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (or postgresql://…), \
     with optional ?schema=NAME&pool_size=N&statement_timeout=30s";

/// A parsed `postgres://` URL.
#[derive(Clone, Debug)]
pub(crate) struct Location {
    /// Connection options for sqlx (search_path and statement_timeout set).
    pub(crate) options: PgConnectOptions,
    /// The schema holding our tables.
    pub(crate) schema: String,
    /// Connections in the pool.
    pub(crate) pool_size: u32,
    /// How long a connection may wait for the pool (and for a restarting server).
    pub(crate) acquire_timeout: Duration,
    /// `database "test" at 127.0.0.1:5432 (schema "sequential")`: for messages, no password.
    pub(crate) shown: String,
    /// `127.0.0.1:5432` or the socket path.
    pub(crate) server: String,
    /// The database name.
    pub(crate) database: String,
    /// The user name.
    pub(crate) user: String,
}

fn invalid(url: &str, what: &str, expected: impl Into<String>) -> Error {
    Error::invalid(
        format!("{what} in PostgreSQL URL {:?}", redact(url)),
        expected,
    )
}

/// `url` with any password replaced by `***`, for messages.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// `true` for a valid schema name: 1-63 characters of lowercase ASCII letters, digits and `_`,
/// starting with a letter or `_` (so it never needs quoting).
pub(crate) fn valid_schema(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A PostgreSQL duration setting: digits with an optional unit (`ms`, `s`, `min`, `h`, `d`).
fn valid_duration(v: &str) -> bool {
    let digits = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &v[digits.len()..];
    !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && matches!(unit, "" | "ms" | "s" | "min" | "h" | "d")
}

impl Location {
    /// Parses `url` (`postgres://…` or `postgresql://…`).
    pub(crate) fn parse(url: &str) -> Result<Location> {
        let scheme = scheme_of(url);
        if !matches!(scheme.as_deref(), Some("postgres" | "postgresql")) || !url.contains("://") {
            return Err(Error::invalid(
                format!("PostgreSQL URL {:?}", redact(url)),
                FORMS,
            ));
        }
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut schema = DEFAULT_SCHEMA.to_string();
        let mut pool_size = DEFAULT_POOL_SIZE;
        let mut statement_timeout = DEFAULT_STATEMENT_TIMEOUT.to_string();
        let mut acquire_timeout = Duration::from_secs(30);
        let mut passed = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "schema" => {
                    if !valid_schema(value) {
                        return Err(invalid(
                            url,
                            &format!("schema {value:?}"),
                            "1-63 characters of lowercase ASCII letters, digits and '_', \
                             starting with a letter or '_' (e.g. schema=sequential)",
                        ));
                    }
                    schema = value.to_string();
                }
                "pool_size" | "pool-size" | "max_connections" => {
                    pool_size = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_POOL_SIZE).contains(n))
                        .ok_or_else(|| {
                            invalid(
                                url,
                                &format!("{key} {value:?}"),
                                format!(
                                    "a whole number from 1 to {MAX_POOL_SIZE} (e.g. pool_size=20)"
                                ),
                            )
                        })?;
                }
                "statement_timeout" => {
                    if !valid_duration(value) {
                        return Err(invalid(
                            url,
                            &format!("statement_timeout {value:?}"),
                            "milliseconds or a number with ms, s, min, h or d (e.g. statement_timeout=30s; 0 = none)",
                        ));
                    }
                    statement_timeout = value.to_string();
                }
                "acquire_timeout" => {
                    let secs: u64 = value.parse().map_err(|_| {
                        invalid(
                            url,
                            &format!("acquire_timeout {value:?}"),
                            "whole seconds (e.g. acquire_timeout=30)",
                        )
                    })?;
                    acquire_timeout = Duration::from_secs(secs.max(1));
                }
                _ => passed.push(pair),
            }
        }
        let mut sqlx_url = base.to_string();
        if !passed.is_empty() {
            sqlx_url.push('?');
            sqlx_url.push_str(&passed.join("&"));
        }
        let options = PgConnectOptions::from_str(&sqlx_url).map_err(|e| {
            Error::invalid(format!("PostgreSQL URL {:?} ({e})", redact(url)), FORMS)
        })?;
        let server = match options.get_socket() {
            Some(dir) => format!("socket {}", dir.display()),
            None => format!("{}:{}", options.get_host(), options.get_port()),
        };
        let user = options.get_username().to_string();
        let database = options.get_database().unwrap_or(&user).to_string();
        // the URL's application_name when it gives one (as the README promises)
        let options = match options.get_application_name() {
            Some(_) => options,
            None => options.application_name("sequential-ecosystem"),
        };
        // TLS to the same machine protects nothing and costs CPU on both ends of every round
        // trip: on a loopback address `sslmode` defaults to `disable` (as over a Unix socket),
        // unless the URL or `PGSSLMODE` names one
        let ssl_named = passed
            .iter()
            .any(|p| matches!(p.split('=').next(), Some("sslmode" | "ssl-mode")))
            || std::env::var_os("PGSSLMODE").is_some();
        let loopback = options.get_socket().is_none()
            && matches!(
                options.get_host(),
                "127.0.0.1" | "::1" | "[::1]" | "localhost"
            );
        let options = if loopback && !ssl_named {
            options.ssl_mode(sqlx::postgres::PgSslMode::Disable)
        } else {
            options
        };
        let options = options
            .options([
                ("search_path", schema.as_str()),
                ("statement_timeout", statement_timeout.as_str()),
            ])
            .options(PLANNER_SETTINGS.iter().copied());
        Ok(Location {
            shown: format!("PostgreSQL database {database:?} at {server} (schema {schema:?})"),
            options,
            schema,
            pool_size,
            acquire_timeout,
            server,
            database,
            user,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_parameters_are_taken_out_and_checked() {
        let l = Location::parse(
            "postgresql://bob:secret@db.example:6543/app?schema=work_1&pool_size=3&sslmode=disable",
        )
        .unwrap();
        assert_eq!(
            (l.schema.as_str(), l.pool_size, l.database.as_str()),
            ("work_1", 3, "app")
        );
        assert_eq!(l.server, "db.example:6543");
        assert!(!l.shown.contains("secret"), "{}", l.shown);
        let d = Location::parse("postgres://postgres@127.0.0.1/test").unwrap();
        assert_eq!((d.schema.as_str(), d.pool_size), (DEFAULT_SCHEMA, 10));
        for bad in [
            "postgres://u@h/db?schema=Bad-Name",
            "postgres://u@h/db?pool_size=0",
            "postgres://u@h/db?pool_size=lots",
            "postgres://u@h/db?statement_timeout=soon",
            "mysql://u@h/db",
            "postgres:relative",
        ] {
            let err = Location::parse(bad).unwrap_err();
            assert!(matches!(err, Error::Invalid { .. }), "{bad}: {err}");
        }
        let err = Location::parse("postgres://u:pw@h/db?pool_size=0")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pool_size \"0\"") && err.contains("1 to 1000") && !err.contains("pw@"),
            "{err}"
        );
    }

    #[test]
    fn loopback_connections_skip_tls_unless_asked_for() {
        use sqlx::postgres::PgSslMode;
        let mode = |url: &str| Location::parse(url).unwrap().options.get_ssl_mode();
        if std::env::var_os("PGSSLMODE").is_none() {
            assert!(matches!(
                mode("postgres://u@127.0.0.1/db"),
                PgSslMode::Disable
            ));
            assert!(matches!(
                mode("postgres://u@localhost/db"),
                PgSslMode::Disable
            ));
            assert!(matches!(
                mode("postgres://u@db.example/db"),
                PgSslMode::Prefer
            ));
        }
        assert!(matches!(
            mode("postgres://u@127.0.0.1/db?sslmode=require"),
            PgSslMode::Require
        ));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:pw@h:1/db?x=1"),
            "postgres://u:***@h:1/db?x=1"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }
}
