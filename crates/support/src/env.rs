//! On/off switches from the environment, read the way `NO_COLOR` is: set to any non-empty
//! value means on; unset or empty means off.

/// `true` when `name` is set to a non-empty value.
pub fn flag(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

/// `true` when progress bars are turned off (`NO_PROGRESS`).
pub fn no_progress() -> bool {
    flag("NO_PROGRESS")
}

/// `true` when colour is turned off (`NO_COLOR`, <https://no-color.org>).
pub fn no_color() -> bool {
    flag("NO_COLOR")
}
