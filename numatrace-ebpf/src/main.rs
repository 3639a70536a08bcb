//! numatrace's kernel programs. They filter to the traced process first
//! thing, collect, aggregate hot sources into runs and count; every
//! interpretation happens in userspace.
#![no_std]
// Atomic add on a map value (see movers.rs); the build enables unstable features.
#![feature(core_intrinsics)]
#![allow(internal_features, reason = "core_intrinsics: the atomic add on a map value in movers.rs")]
#![no_main]

mod config;
mod emit;
mod maps;
mod movers;
mod probes;
mod runs;
mod stacks;
mod tracking;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this never runs.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
