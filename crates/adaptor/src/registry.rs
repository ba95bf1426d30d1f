//! `Registry`: URL scheme → adapter factory. The mechanism only; which backends are compiled in
//! and what an unset `DATABASE_URL` means is the binary's policy.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::adapter::StorageAdapter;
use crate::error::{Error, Result};

/// Opens adapters for one URL scheme.
#[async_trait]
pub trait AdapterFactory: Send + Sync {
    /// Opens the storage at `url` (the whole URL, scheme included).
    async fn open(&self, url: &str) -> Result<Arc<dyn StorageAdapter>>;
}

struct Entry {
    form: String,
    factory: Arc<dyn AdapterFactory>,
}

/// URL scheme → factory.
///
/// ```
/// # use sequential_adaptor::Registry;
/// let registry = Registry::new();
/// let err = block_on(registry.open("mysql://db")).unwrap_err();
/// assert!(err.to_string().contains("mysql"));
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Default)]
pub struct Registry {
    entries: BTreeMap<String, Entry>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("schemes", &self.entries.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `factory` for URLs starting `scheme:`; `form` is the URL form shown in errors
    /// (e.g. `sqlite:PATH`). A later registration of the same scheme replaces the earlier one.
    pub fn register(
        &mut self,
        scheme: &str,
        form: &str,
        factory: impl AdapterFactory + 'static,
    ) -> &mut Self {
        self.entries.insert(
            scheme.to_ascii_lowercase(),
            Entry {
                form: form.to_string(),
                factory: Arc::new(factory),
            },
        );
        self
    }

    /// The registered schemes, sorted.
    pub fn schemes(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }

    /// The URL forms of the registered schemes, for messages.
    pub fn forms(&self) -> Vec<&str> {
        self.entries.values().map(|e| e.form.as_str()).collect()
    }

    /// Opens `url` with the factory of its scheme. An unknown or missing scheme is `Invalid`,
    /// listing the valid forms.
    pub async fn open(&self, url: &str) -> Result<Arc<dyn StorageAdapter>> {
        let scheme = scheme_of(url);
        match scheme.and_then(|s| self.entries.get(&s)) {
            Some(entry) => entry.factory.open(url).await,
            None => Err(Error::invalid(
                format!("storage URL {url:?}"),
                format!("one of: {}", self.forms().join(", ")),
            )),
        }
    }
}

/// The scheme of `url` (`postgres://…` → `postgres`, `sqlite::memory:` → `sqlite`), lowercased;
/// `None` when it does not start with `letters:`.
pub fn scheme_of(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once(':')?;
    let valid = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| scheme.to_ascii_lowercase())
}

/// The part of `url` after `scheme:` (and after `//` when present): `sqlite:./a.db` → `./a.db`,
/// `folder:///tmp/x` → `/tmp/x`.
pub fn strip_scheme(url: &str) -> &str {
    let rest = url.split_once(':').map_or(url, |(_, r)| r);
    rest.strip_prefix("//").unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_are_parsed_and_stripped() {
        assert_eq!(scheme_of("postgres://u@h/db").as_deref(), Some("postgres"));
        assert_eq!(scheme_of("sqlite::memory:").as_deref(), Some("sqlite"));
        assert_eq!(scheme_of("SQLite:a.db").as_deref(), Some("sqlite"));
        assert_eq!(scheme_of("./tasks"), None);
        assert_eq!(scheme_of("1x:y"), None);
        assert_eq!(strip_scheme("sqlite:./a.db"), "./a.db");
        assert_eq!(strip_scheme("folder:///tmp/x"), "/tmp/x");
        assert_eq!(strip_scheme("sqlite::memory:"), ":memory:");
    }

    #[test]
    fn unknown_scheme_lists_the_valid_forms() {
        struct Never;
        #[async_trait]
        impl AdapterFactory for Never {
            async fn open(&self, url: &str) -> Result<Arc<dyn StorageAdapter>> {
                Err(Error::unsupported(url.to_string()))
            }
        }
        let mut r = Registry::new();
        r.register("sqlite", "sqlite:PATH", Never)
            .register("folder", "folder:PATH", Never);
        assert_eq!(r.schemes(), vec!["folder", "sqlite"]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = rt.block_on(r.open("mysql://x")).unwrap_err().to_string();
        assert!(
            err.contains("mysql://x") && err.contains("folder:PATH, sqlite:PATH"),
            "{err}"
        );
        let err = rt.block_on(r.open("sqlite:a.db")).unwrap_err().to_string();
        assert!(err.contains("unsupported: sqlite:a.db"), "{err}");
    }
}
