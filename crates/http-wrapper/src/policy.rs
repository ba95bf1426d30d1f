//! Retry policy and client limits, and how they are read from a task's `config.json`.

use std::time::Duration;

use sequential_support::duration;
use serde_json::Value;

use crate::error::ConfigError;

/// How the delay grows between attempts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Backoff {
    /// The same delay every time.
    Fixed,
    /// `initial_delay * factor^(retry - 1)`.
    Exponential {
        /// The growth factor (2.0 doubles).
        factor: f64,
    },
}

/// How much randomness is added to each delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly the computed delay.
    None,
    /// A uniform random delay between 0 and the computed delay ("full jitter"), which spreads
    /// retries of many clients best.
    Full,
}

/// When and how often a failed request is retried.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts, the first included (1 = never retry).
    pub attempts: u32,
    /// Delay before the first retry.
    pub initial_delay: Duration,
    /// No delay (including `Retry-After`) is longer than this.
    pub max_delay: Duration,
    /// Growth of the delay.
    pub backoff: Backoff,
    /// Randomness of the delay.
    pub jitter: Jitter,
}

impl Default for RetryPolicy {
    /// 4 attempts (the first plus `TASK_MAX_RETRIES` = 3), 200 ms doubling, capped at 30 s,
    /// full jitter.
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            backoff: Backoff::Exponential { factor: 2.0 },
            jitter: Jitter::Full,
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1 = the first retry), before jitter, capped.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let d = match self.backoff {
            Backoff::Fixed => self.initial_delay.as_secs_f64(),
            Backoff::Exponential { factor } => {
                self.initial_delay.as_secs_f64() * factor.powi(retry.saturating_sub(1) as i32)
            }
        };
        Duration::from_secs_f64(d.min(self.max_delay.as_secs_f64()).max(0.0))
    }

    /// The delay before retry `retry`, with jitter applied using `random` ∈ [0, 1).
    pub fn delay(&self, retry: u32, random: f64) -> Duration {
        let base = self.base_delay(retry);
        match self.jitter {
            Jitter::None => base,
            Jitter::Full => base.mul_f64(random.clamp(0.0, 1.0)),
        }
    }

    /// Reads `retry: {attempts, initialDelay, maxDelay, backoff, jitter}` from a task's
    /// `config.json`, starting from `defaults`. Durations are milliseconds or strings in the
    /// grammar of `sequential_support::duration` (`"500ms"`, `"2s"`, `"1h 30m"`, `"1w"`); `backoff` is `"exponential"`, `"fixed"` or a number (the
    /// factor); `jitter` is `"full"`, `"none"`, `true` or `false`.
    pub fn from_config(config: &Value, defaults: &RetryPolicy) -> Result<Self, ConfigError> {
        let mut p = defaults.clone();
        let Some(retry) = config.get("retry") else {
            return Ok(p);
        };
        let obj = retry.as_object().ok_or_else(|| ConfigError {
            key: "retry".into(),
            value: retry.to_string(),
            expected: "an object such as {\"attempts\": 5, \"initialDelay\": \"200ms\"}".into(),
        })?;
        for (k, v) in obj {
            let bad = |expected: &str| ConfigError {
                key: format!("retry.{k}"),
                value: v.to_string(),
                expected: expected.to_string(),
            };
            match k.as_str() {
                "attempts" => {
                    p.attempts = v
                        .as_u64()
                        .filter(|n| (1..=100).contains(n))
                        .ok_or_else(|| bad("a whole number from 1 to 100"))?
                        as u32
                }
                "initialDelay" => {
                    p.initial_delay = duration_value(v).ok_or_else(|| bad(duration::FORMS))?
                }
                "maxDelay" => {
                    p.max_delay = duration_value(v).ok_or_else(|| bad(duration::FORMS))?
                }
                "backoff" => {
                    p.backoff = match v {
                        Value::String(s) if s == "exponential" => {
                            Backoff::Exponential { factor: 2.0 }
                        }
                        Value::String(s) if s == "fixed" => Backoff::Fixed,
                        Value::Number(n) if n.as_f64().is_some_and(|f| f >= 1.0) => {
                            Backoff::Exponential {
                                factor: n.as_f64().unwrap_or(2.0),
                            }
                        }
                        _ => return Err(bad("\"exponential\", \"fixed\" or a factor ≥ 1")),
                    }
                }
                "jitter" => {
                    p.jitter = match v {
                        Value::String(s) if s == "full" => Jitter::Full,
                        Value::String(s) if s == "none" => Jitter::None,
                        Value::Bool(true) => Jitter::Full,
                        Value::Bool(false) => Jitter::None,
                        _ => return Err(bad("\"full\", \"none\", true or false")),
                    }
                }
                _ => {
                    return Err(bad(
                        "one of the keys attempts, initialDelay, maxDelay, backoff, jitter",
                    ));
                }
            }
        }
        Ok(p)
    }
}

/// A duration in the one grammar of `sequential_support::duration`: a number is milliseconds.
fn duration_value(v: &Value) -> Option<Duration> {
    match v {
        Value::Number(n) => n.as_u64().map(Duration::from_millis),
        Value::String(s) => duration::parse(s).ok(),
        _ => None,
    }
}

/// Limits of one client.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientConfig {
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Time for one whole attempt (connect, send, receive the body).
    pub timeout: Duration,
    /// Largest response body accepted; larger ones fail with `TooLarge`.
    pub max_response_bytes: usize,
    /// The default retry policy.
    pub retry: RetryPolicy,
    /// `User-Agent` header.
    pub user_agent: String,
}

impl Default for ClientConfig {
    /// Connect 10 s, whole attempt 300 s (`TASK_TIMEOUT`'s default), 16 MiB bodies.
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(300),
            max_response_bytes: 16 << 20,
            retry: RetryPolicy::default(),
            user_agent: concat!("sequential-ecosystem/", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

impl ClientConfig {
    /// The defaults with `TASK_TIMEOUT` (ms) and `TASK_MAX_RETRIES` applied from `env`
    /// (pass `|k| std::env::var(k).ok()`); a malformed value is an error naming it.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut c = ClientConfig::default();
        if let Some(v) = env("TASK_TIMEOUT") {
            let ms: u64 = v.trim().parse().map_err(|_| ConfigError {
                key: "TASK_TIMEOUT".into(),
                value: v.clone(),
                expected: "milliseconds, e.g. 300000".into(),
            })?;
            c.timeout = Duration::from_millis(ms);
        }
        if let Some(v) = env("TASK_MAX_RETRIES") {
            let n: u32 = v
                .trim()
                .parse()
                .ok()
                .filter(|n| *n <= 99)
                .ok_or_else(|| ConfigError {
                    key: "TASK_MAX_RETRIES".into(),
                    value: v.clone(),
                    expected: "a whole number from 0 to 99".into(),
                })?;
            c.retry.attempts = n + 1;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn delays_accept_every_spelling_of_the_duration_grammar() {
        let delay = |v: Value| {
            RetryPolicy::from_config(&json!({"retry": {"maxDelay": v}}), &RetryPolicy::default())
                .map(|p| p.max_delay)
        };
        assert_eq!(delay(json!("250ms")), Ok(Duration::from_millis(250)));
        assert_eq!(delay(json!("1.5s")), Ok(Duration::from_millis(1500)));
        assert_eq!(delay(json!("2d")), Ok(Duration::from_secs(172_800)));
        assert_eq!(delay(json!("40")), Ok(Duration::from_millis(40)));
        assert_eq!(delay(json!(40)), Ok(Duration::from_millis(40)));
        assert_eq!(delay(json!("1w")), Ok(Duration::from_secs(604_800)));
        assert_eq!(delay(json!("1 week")), Ok(Duration::from_secs(604_800)));
        assert_eq!(delay(json!("1h 30m")), Ok(Duration::from_secs(5_400)));
        for bad in [json!("soon"), json!("3 months"), json!(-1), json!(true)] {
            let err = delay(bad.clone()).unwrap_err();
            assert_eq!(err.key, "retry.maxDelay", "{bad}");
            assert_eq!(err.expected, duration::FORMS, "{bad}");
        }
        let p = RetryPolicy::from_config(
            &json!({"retry": {"initialDelay": "5 minutes"}}),
            &RetryPolicy::default(),
        )
        .unwrap();
        assert_eq!(p.initial_delay, Duration::from_secs(300));
    }

    #[test]
    fn exponential_backoff_is_capped() {
        let p = RetryPolicy {
            attempts: 10,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            backoff: Backoff::Exponential { factor: 2.0 },
            jitter: Jitter::Full,
        };
        let base: Vec<_> = (1..=5).map(|r| p.base_delay(r).as_millis()).collect();
        assert_eq!(base, vec![100, 200, 400, 500, 500]);
        assert_eq!(p.delay(3, 0.5), Duration::from_millis(200));
        assert!(p.delay(3, 0.999) < Duration::from_millis(400));
    }

    #[test]
    fn config_overrides_defaults_and_names_bad_keys() {
        let cfg = json!({"retry": {"attempts": 5, "initialDelay": "1s", "maxDelay": 2000, "backoff": "fixed", "jitter": false}});
        let p = RetryPolicy::from_config(&cfg, &RetryPolicy::default()).unwrap();
        assert_eq!(p.attempts, 5);
        assert_eq!(p.initial_delay, Duration::from_secs(1));
        assert_eq!(p.max_delay, Duration::from_secs(2));
        assert_eq!((p.backoff, p.jitter), (Backoff::Fixed, Jitter::None));
        let err = RetryPolicy::from_config(&json!({"retry": {"attempts": 0}}), &p).unwrap_err();
        assert!(err.to_string().contains("retry.attempts"), "{err}");
        let err = RetryPolicy::from_config(&json!({"retry": {"tries": 3}}), &p).unwrap_err();
        assert!(err.to_string().contains("retry.tries"), "{err}");
        assert_eq!(RetryPolicy::from_config(&json!({}), &p).unwrap(), p);
    }

    #[test]
    fn env_sets_timeout_and_retries() {
        let c = ClientConfig::from_env(|k| match k {
            "TASK_TIMEOUT" => Some("1500".into()),
            "TASK_MAX_RETRIES" => Some("0".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.timeout, Duration::from_millis(1500));
        assert_eq!(c.retry.attempts, 1);
        let err =
            ClientConfig::from_env(|k| (k == "TASK_TIMEOUT").then(|| "5s".into())).unwrap_err();
        assert!(err.to_string().contains("TASK_TIMEOUT"), "{err}");
    }
}
