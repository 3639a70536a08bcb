//! Read-only globals that userspace fills before load: tracepoint field
//! offsets of the running kernel and what to trace. They live in `.rodata`,
//! which the verifier treats as constants.
use numatrace_common::{Config, Layouts};

#[unsafe(no_mangle)]
pub static LAYOUTS: Layouts = unsafe { core::mem::zeroed() };

#[unsafe(no_mangle)]
pub static CONFIG: Config = unsafe { core::mem::zeroed() };

/// Reads one field of [`LAYOUTS`] (volatile, so the compiler cannot fold the zero initialiser).
macro_rules! layout {
    ($($field:ident).+) => {
        unsafe { core::ptr::read_volatile(&raw const $crate::config::LAYOUTS.$($field).+) } as usize
    };
}
pub(crate) use layout;

/// Reads one field of [`CONFIG`].
macro_rules! config {
    ($field:ident) => {
        unsafe { core::ptr::read_volatile(&raw const $crate::config::CONFIG.$field) }
    };
}
pub(crate) use config;
