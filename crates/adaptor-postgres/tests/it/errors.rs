//! The errors users meet when connecting: each names what to fix.

use std::io::{Read, Write};
use std::net::TcpListener;

use sequential_adaptor::Error;
use sequential_adaptor_postgres::PostgresStore;

use crate::support;

/// A loopback server that answers every startup like PostgreSQL refusing a password: refuses
/// TLS (`N`), reads the startup message, sends `FATAL 28P01`.
fn refusing_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let read_message = |s: &mut std::net::TcpStream| -> Option<Vec<u8>> {
                let mut len = [0u8; 4];
                s.read_exact(&mut len).ok()?;
                let mut body = vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
                s.read_exact(&mut body).ok()?;
                Some(body)
            };
            let Some(mut first) = read_message(&mut s) else {
                continue;
            };
            if first.len() == 4 && first[..4] == 80_877_103u32.to_be_bytes() {
                s.write_all(b"N").unwrap();
                let Some(startup) = read_message(&mut s) else {
                    continue;
                };
                first = startup;
            }
            assert!(first.len() > 4, "a startup message");
            let mut fields = Vec::new();
            for (code, text) in [
                (b'S', "FATAL"),
                (b'V', "FATAL"),
                (b'C', "28P01"),
                (b'M', "password authentication failed for user \"bob\""),
            ] {
                fields.push(code);
                fields.extend_from_slice(text.as_bytes());
                fields.push(0);
            }
            fields.push(0);
            let mut msg = vec![b'E'];
            msg.extend_from_slice(&((fields.len() + 4) as u32).to_be_bytes());
            msg.extend_from_slice(&fields);
            let _ = s.write_all(&msg);
        }
    });
    port
}

#[tokio::test]
async fn a_wrong_password_names_the_user_and_server() {
    let port = refusing_server();
    let url = format!("postgres://bob:not-the-password@127.0.0.1:{port}/app?sslmode=disable");
    let err = PostgresStore::open(&url).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
    assert!(
        text.contains("\"bob\"")
            && text.contains(&format!("127.0.0.1:{port}"))
            && text.contains("password authentication failed")
            && text.contains("postgres://USER:PASSWORD@HOST:PORT/DATABASE"),
        "{text}"
    );
    assert!(
        !text.contains("not-the-password"),
        "the password leaked: {text}"
    );
}

#[tokio::test]
async fn a_missing_database_suggests_createdb() {
    let Some(base) = support::server().await else {
        return;
    };
    let name = support::schema_name();
    let (server_part, _) = base.rsplit_once('/').unwrap();
    let url = format!("{server_part}/{name}");
    let err = PostgresStore::open(&url).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
    assert!(
        text.contains(&format!("database \"{name}\""))
            && text.contains("createdb ")
            && text.contains(&format!(" {name}`"))
            && text.contains("does not exist"),
        "{text}"
    );
}

#[tokio::test]
async fn a_server_that_is_not_running_is_named_with_host_and_port() {
    // a port nothing listens on: bound, then released
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/test");
    let err = PostgresStore::open(&url).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    assert!(
        text.contains(&format!("127.0.0.1:{port}")) && text.contains("server running"),
        "{text}"
    );
}

#[tokio::test]
async fn bad_urls_name_the_parameter_and_what_is_valid() {
    for (url, names) in [
        ("postgres://u@h/db?pool_size=0", "pool_size"),
        ("postgres://u@h/db?schema=Has-Dash", "schema"),
        (
            "postgresql://u:secret@h/db?statement_timeout=later",
            "statement_timeout",
        ),
    ] {
        let err = PostgresStore::open(url).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Invalid { .. }), "{url}: {err:?}");
        assert!(text.contains(names) && text.contains("expected"), "{text}");
        assert!(!text.contains("secret"), "the password leaked: {text}");
    }
}
