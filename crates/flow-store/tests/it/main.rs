//! Integration tests of sequential-flow-store: the conformance suite on every backend (memory,
//! folder, SQLite, PostgreSQL, Redis), and the URL errors users meet.
//!
//! PostgreSQL is `DATABASE_URL_TEST` or `postgres://postgres@127.0.0.1:5432/test`, Redis
//! `REDIS_URL_TEST` or `redis://127.0.0.1:6379`; without a server each of their tests prints
//! one skip line and passes — unless `REQUIRE_POSTGRES=1` / `REQUIRE_REDIS=1`.

mod backends;
mod urls;
