//! sqlx errors as the adaptor's [`Error`]: the ones a user can fix (a wrong password, a missing
//! database, a server that is not running) say what to do; the rest name what was being done.

use sequential_adaptor::Error;

use crate::url::Location;

/// SQLSTATE of a database error, if it is one.
pub(crate) fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// `true` when `e` is a unique-constraint violation (SQLSTATE 23505).
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    sqlstate(e).as_deref() == Some("23505")
}

/// `true` when `e` means the connection (not the statement) failed: the statement may not have
/// reached the server, so an idempotent operation may be repeated on a fresh connection.
pub(crate) fn is_connection_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now; 08xxx: connection exceptions
        _ => sqlstate(e).is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
    }
}

/// Maps an error met while connecting (opening the store or the first use of the pool).
pub(crate) fn connect_err(loc: &Location, e: sqlx::Error) -> Error {
    let code = sqlstate(&e);
    let said = match &e {
        sqlx::Error::Database(db) => db.message().to_string(),
        other => other.to_string(),
    };
    match code.as_deref() {
        // invalid_password, invalid_authorization_specification (no such role, pg_hba refusal)
        Some("28P01") | Some("28000") => Error::invalid(
            format!(
                "credentials for user {:?} at PostgreSQL {} (the server said: {said})",
                loc.user, loc.server
            ),
            "a user and password the server accepts: postgres://USER:PASSWORD@HOST:PORT/DATABASE \
             (percent-encode special characters in the password)",
        ),
        // invalid_catalog_name
        Some("3D000") => Error::invalid(
            format!(
                "database {:?} at PostgreSQL {} (it does not exist)",
                loc.database, loc.server
            ),
            format!(
                "an existing database: create it with `createdb {}` (as a user allowed to), \
                 or name another database in the URL",
                createdb_args(loc)
            ),
        ),
        _ => match &e {
            sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                Error::backend(
                    format!(
                        "cannot connect to PostgreSQL at {}: nothing accepts connections there; \
                         is the server running, and on that host and port?",
                        loc.server
                    ),
                    e,
                )
            }
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => Error::backend(
                format!(
                    "cannot connect to PostgreSQL at {}: is the server running and reachable?",
                    loc.server
                ),
                e,
            ),
            _ => Error::backend(format!("connecting to {}", loc.shown), e),
        },
    }
}

/// `-h HOST -p PORT NAME` for a `createdb` suggestion (host and port only when not the default).
fn createdb_args(loc: &Location) -> String {
    let o = &loc.options;
    let mut args = String::new();
    if o.get_socket().is_none() && !matches!(o.get_host(), "localhost") {
        args.push_str(&format!("-h {} ", o.get_host()));
    }
    if o.get_port() != 5432 {
        args.push_str(&format!("-p {} ", o.get_port()));
    }
    if o.get_username() != "postgres" {
        args.push_str(&format!("-U {} ", o.get_username()));
    }
    args.push_str(&loc.database);
    args
}

/// Maps an error of an operation on an open store: connection problems as
/// [`connect_err`], everything else as [`Error::Backend`] naming the store and the operation.
pub(crate) fn op_err(loc: &Location, doing: &str, e: sqlx::Error) -> Error {
    match sqlstate(&e).as_deref() {
        Some("28P01" | "28000" | "3D000") => return connect_err(loc, e),
        // undefined_table: the schema was dropped or never migrated under us
        Some("42P01") => {
            return Error::unsupported(format!(
                "{}: {doing}: our tables are missing ({e}); run `sequential-ecosystem migrate`",
                loc.shown
            ));
        }
        _ => {}
    }
    if matches!(e, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut) {
        return connect_err(loc, e);
    }
    Error::backend(format!("{}: {doing}", loc.shown), e)
}
