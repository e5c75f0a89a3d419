//! Giving memory back to the system after a crowd leaves.
//!
//! glibc's allocator keeps freed memory for reuse; after thousands of connections come and
//! go, the process would stay at its high-water mark. When the number of connections has
//! fallen well below the mark since the last trim, `malloc_trim(3)` returns the free pages.
//!
//! Invariant: a trim happens only after at least [`MIN_DROP`] connections (and half of the
//! mark) went away, so steady churn at a stable level never triggers one.

/// Connections that must have gone away since the high-water mark before a trim.
const MIN_DROP: usize = 1_000;

/// Tracks the connection count's high-water mark since the last trim.
#[derive(Debug, Default)]
pub(crate) struct Trimmer {
    high_water: usize,
}

impl Trimmer {
    /// Notes the number of connections after one arrived.
    pub fn grew(&mut self, connections: usize) {
        self.high_water = self.high_water.max(connections);
    }

    /// Notes the number of connections after one left; trims when the crowd is gone.
    pub fn shrank(&mut self, connections: usize) {
        let dropped = self.high_water.saturating_sub(connections);
        if dropped >= MIN_DROP.max(self.high_water / 2) {
            self.high_water = connections;
            release_free_memory();
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}
