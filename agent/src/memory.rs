//! Keeping the agent small on small devices: glibc keeps freed heap in per-thread arenas, so a
//! burst of work (unpacking an image) would otherwise stay in the agent's RSS for good.
#![allow(unsafe_code)]

/// Limits malloc to two arenas (the agent has few busy threads). Call first thing in the agent.
pub fn limit_arenas() {
    // SAFETY: mallopt only changes allocator tunables; called before the agent starts threads.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns freed heap memory to the system (after image imports and pulls).
pub fn release_free_memory() {
    // SAFETY: malloc_trim walks the allocator's free lists under its own locks; it has no
    // preconditions on the caller.
    unsafe {
        libc::malloc_trim(0);
    }
}
