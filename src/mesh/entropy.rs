//! Seeded entropy for a simulation's thread.
//!
//! Everything that draws randomness in a libp2p node reaches the operating system through
//! one C function, glibc's `getrandom`: std's `HashMap` keys (so every hash map's iteration
//! order, and tokio's and futures' `select!` seeds derived from them), rand's thread-local
//! generator (gossipsub's peer sampling, Kademlia's random walks, the memory transport's
//! ports), snow's noise keys — std and getrandom 0.3/0.4 look the function up by name.
//! This module defines it in the test binary, which takes precedence over glibc's, and
//! answers from a SplitMix64 stream on a thread where [`seed_this_thread`] ran and from the
//! kernel (the same system call glibc makes, flags and errors unchanged) everywhere else.
//!
//! A thread's hash keys and rand's generator are drawn once, at their first use on that
//! thread: only a thread seeded before anything on it hashed or drew replays, which is why
//! [`super::simulate`] starts a thread of its own. ring's getrandom 0.2 makes the system
//! call itself and stays random; ring serves TLS and QUIC, which a simulation does not use.

use std::cell::Cell;
use std::ffi::{c_uint, c_void};

use crate::splitmix::SplitMix64;

/// Mixed into the seed so that the entropy stream differs from every other stream the
/// kit derives from the same seed (keys, link draws, span ids).
const ENTROPY_SALT: u64 = 0x656e_7472_6f70_7921;

thread_local! {
    /// The state of this thread's stream, when seeded.
    static STREAM: Cell<Option<u64>> = const { Cell::new(None) };
}

/// From now on, every random byte this thread asks the operating system for comes from
/// `seed`'s stream.
pub(crate) fn seed_this_thread(seed: u64) {
    // Keeps the interposer linked into every binary that runs a simulation: the archive
    // member defining it is pulled in by this reference, not only by name lookups at run
    // time.
    std::hint::black_box(getrandom as unsafe extern "C" fn(*mut c_void, usize, c_uint) -> isize);
    STREAM.with(|stream| stream.set(Some(seed ^ ENTROPY_SALT)));
}

/// Fills `len` bytes at `buffer` from this thread's stream, if seeded; `None` otherwise.
fn fill_seeded(buffer: *mut c_void, len: usize) -> Option<isize> {
    let state = STREAM.try_with(Cell::get).ok().flatten()?;
    // SAFETY: the caller of `getrandom` hands a buffer of `len` writable bytes.
    let out = unsafe { std::slice::from_raw_parts_mut(buffer.cast::<u8>(), len) };
    let mut stream = SplitMix64::new(state);
    for chunk in out.chunks_mut(8) {
        chunk.copy_from_slice(&stream.next_u64().to_le_bytes()[..chunk.len()]);
    }
    let _ = STREAM.try_with(|cell| cell.set(Some(stream.state())));
    // A buffer never holds more than isize::MAX bytes.
    Some(out.len() as isize)
}

/// glibc's `getrandom(2)` wrapper, with the same contract: fills `buffer` with up to `len`
/// random bytes and returns how many, or -1 with `errno` set.
///
/// # Safety
///
/// `buffer` must be valid for `len` bytes of writes, as for glibc's function.
#[no_mangle]
pub(crate) unsafe extern "C" fn getrandom(buffer: *mut c_void, len: usize, flags: c_uint) -> isize {
    if len == 0 {
        return 0;
    }
    if let Some(filled) = fill_seeded(buffer, len) {
        return filled;
    }
    // SAFETY: the arguments are the caller's, passed on unchanged to the system call
    // glibc's own wrapper makes; the kernel checks the buffer and sets errno.
    unsafe { libc::syscall(libc::SYS_getrandom, buffer, len, flags) as isize }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn on_a_seeded_thread(seed: u64) -> (Vec<u32>, [u8; 40]) {
        std::thread::spawn(move || {
            seed_this_thread(seed);
            let map: HashMap<u32, ()> = (0..64).map(|key| (key, ())).collect();
            let mut bytes = [0u8; 40];
            // SAFETY: 40 writable bytes.
            let filled = unsafe { getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
            assert_eq!(filled, 40);
            (map.into_keys().collect(), bytes)
        })
        .join()
        .unwrap()
    }

    /// The same seed gives the same hash order and the same bytes on two threads; another
    /// seed, others.
    #[test]
    fn a_seeded_thread_draws_the_same_hash_order_and_bytes_for_the_same_seed() {
        let first = on_a_seeded_thread(5);
        assert_eq!(first, on_a_seeded_thread(5));
        let other = on_a_seeded_thread(6);
        assert_ne!(first.0, other.0);
        assert_ne!(first.1, other.1);
    }

    /// Threads that were not seeded get the kernel's randomness.
    #[test]
    fn an_unseeded_thread_draws_from_the_kernel() {
        assert_eq!(STREAM.with(Cell::get), None, "not seeded");
        let draw = || {
            let mut bytes = [0u8; 32];
            // SAFETY: 32 writable bytes.
            let filled = unsafe { getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
            assert_eq!(filled, 32);
            bytes
        };
        assert_ne!(draw(), draw());
    }
}
