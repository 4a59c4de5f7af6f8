//! Drops the shim's clean file-backed pages (program text, read-only data, shared libraries)
//! from its page tables once the monitor is set up. They stay in the page cache and fault back
//! in on use, so only the monitor's hot path remains resident.
#![allow(unsafe_code)]

/// One mapping of `/proc/self/smaps` that can be dropped safely.
#[derive(Debug, PartialEq, Eq)]
pub struct CleanMapping {
    pub start: usize,
    pub len: usize,
}

/// Picks mappings that are file-backed, not writable and hold no private (copied) pages:
/// dropping those loses nothing, the file has the same bytes.
pub fn clean_file_mappings(smaps: &str) -> Vec<CleanMapping> {
    let mut out = Vec::new();
    let mut current: Option<(CleanMapping, bool)> = None;
    for line in smaps.lines() {
        let mut parts = line.split_whitespace();
        let first = parts.next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            if let Some((m, true)) = current.take() {
                out.push(m);
            }
            let perms = parts.next().unwrap_or("");
            let inode = parts.nth(2).unwrap_or("0");
            let path = parts.next().unwrap_or("");
            let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) else {
                continue;
            };
            let eligible =
                perms.as_bytes().get(1) == Some(&b'-') && inode != "0" && path.starts_with('/');
            current = Some((
                CleanMapping {
                    start,
                    len: end.saturating_sub(start),
                },
                eligible,
            ));
        } else if first == "Anonymous:"
            && parts.next() != Some("0")
            && let Some((_, eligible)) = current.as_mut()
        {
            *eligible = false;
        }
    }
    if let Some((m, true)) = current {
        out.push(m);
    }
    out
}

/// Drops the clean file-backed pages of this process. Errors are ignored: this only saves memory.
pub fn drop_clean_file_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for m in clean_file_mappings(&smaps) {
        // SAFETY: the range is a whole, read-only, file-backed mapping without private pages, so
        // MADV_DONTNEED only unmaps pages that fault back in from the file unchanged.
        unsafe {
            libc::madvise(m.start as *mut libc::c_void, m.len, libc::MADV_DONTNEED);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_only_clean_read_only_file_mappings() {
        let smaps = "\
55a0-55b0 r--p 00000000 fe:00 5315885 /bin/shim
Rss: 8 kB
Anonymous: 0 kB
55b0-55c0 r-xp 00442000 fe:00 5315885 /bin/shim
Anonymous: 0 kB
55c0-55d0 r--p 00eba000 fe:00 5315885 /bin/shim
Anonymous: 436 kB
55d0-55e0 rw-p 00f76000 fe:00 5315885 /bin/shim
Anonymous: 0 kB
7f00-7f10 rw-p 00000000 00:00 0
Anonymous: 12 kB
7ff0-7ff1 r-xp 00000000 00:00 0 [vdso]
Anonymous: 0 kB
";
        let got = clean_file_mappings(smaps);
        assert_eq!(
            got,
            [
                CleanMapping {
                    start: 0x55a0,
                    len: 0x10
                },
                CleanMapping {
                    start: 0x55b0,
                    len: 0x10
                }
            ]
        );
    }
}
