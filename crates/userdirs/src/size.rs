//! Sizes as written in the configuration (`"10%"`, `"512M"`, `"1G"`, `"65536"`) and the
//! arithmetic of limits: percentages of the memory the machine (or its container) really has,
//! inode counts, and the global budget.

use std::fmt;

/// A size as configured: absolute bytes or a percentage of available memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeSpec {
    Bytes(u64),
    /// Per-mille of memory (one decimal of a percent: "12.5%" is 125).
    Permille(u32),
}

impl fmt::Display for SizeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeSpec::Bytes(b) => write!(f, "{b}"),
            SizeSpec::Permille(p) if p % 10 == 0 => write!(f, "{}%", p / 10),
            SizeSpec::Permille(p) => write!(f, "{}.{}%", p / 10, p % 10),
        }
    }
}

/// Parses `"10%"`, `"12.5%"`, `"1048576"`, `"512K"`, `"64M"`, `"2G"`, `"1T"` (powers of 1024;
/// a trailing `iB` or `B` is accepted: `"64MiB"`, `"64MB"` both mean 64 Mi).
pub fn parse_size(s: &str) -> Result<SizeSpec, String> {
    let t = s.trim();
    if let Some(p) = t.strip_suffix('%') {
        let (whole, frac) = match p.split_once('.') {
            Some((w, f)) if f.len() == 1 => (w, f),
            Some(_) => return Err(format!("{s:?}: percentages take at most one decimal")),
            None => (p, "0"),
        };
        let w: u32 = whole
            .parse()
            .map_err(|_| format!("{s:?} is not a percentage"))?;
        let f: u32 = frac
            .parse()
            .map_err(|_| format!("{s:?} is not a percentage"))?;
        let pm = w
            .checked_mul(10)
            .and_then(|x| x.checked_add(f))
            .ok_or_else(|| format!("{s:?} is too large"))?;
        if pm == 0 || pm > 1000 {
            return Err(format!(
                "{s:?}: a percentage must be above 0% and at most 100%"
            ));
        }
        return Ok(SizeSpec::Permille(pm));
    }
    let t = t.trim_end_matches("iB").trim_end_matches('B');
    let (num, mult) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        Some('T') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (bytes, K, M, G, T or a percentage)"))?;
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if bytes == 0 {
        return Err(format!("{s:?}: a size must be above 0"));
    }
    Ok(SizeSpec::Bytes(bytes))
}

/// Memory that percentages are taken of: `min(MemTotal, cgroup memory limit)`, so that a
/// container with a 2 GiB limit on a 256 GiB host gets 10 % of 2 GiB (as systemd does).
pub fn effective_memory(mem_total: u64, cgroup_limit: Option<u64>) -> u64 {
    match cgroup_limit {
        Some(l) if l > 0 && l < mem_total => l,
        _ => mem_total,
    }
}

/// Bytes for `spec` given `memory` bytes, rounded down to whole 4 KiB pages (tmpfs rounds
/// up otherwise, and `statvfs` would disagree with the configuration).
pub fn resolve(spec: SizeSpec, memory: u64) -> u64 {
    let b = match spec {
        SizeSpec::Bytes(b) => b,
        SizeSpec::Permille(p) => (memory as u128 * p as u128 / 1000) as u64,
    };
    (b / 4096).max(1) * 4096
}

/// The default inode limit: size / 4096, rounded up (systemd's `RuntimeDirectoryInodesMax`).
pub fn default_inodes(size: u64) -> u64 {
    size.div_ceil(4096).max(1)
}

/// `MemTotal` from `/proc/meminfo` text.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A cgroup memory limit file's content (`memory.max`: a number or `max`; v1
/// `memory.limit_in_bytes`: a number, huge when unlimited).
pub fn parse_cgroup_limit(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "max" {
        return None;
    }
    let v: u64 = t.parse().ok()?;
    // v1 reports "unlimited" as a page-rounded i64::MAX.
    (v < (1u64 << 62)).then_some(v)
}

/// Reads the memory available to this process: MemTotal, capped by the cgroup v2 limit of
/// our own cgroup (or the v1 memory controller's limit).
pub fn system_memory() -> std::io::Result<u64> {
    let total =
        parse_meminfo_total(&std::fs::read_to_string("/proc/meminfo")?).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "no MemTotal in /proc/meminfo",
            )
        })?;
    let mut limit = None;
    if let Ok(cg) = std::fs::read_to_string("/proc/self/cgroup") {
        for line in cg.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, ctrl, path) = (
                parts.next(),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            let file = if ctrl.is_empty() {
                format!("/sys/fs/cgroup{path}/memory.max")
            } else if ctrl.split(',').any(|c| c == "memory") {
                format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
            } else {
                continue;
            };
            if let Some(l) = std::fs::read_to_string(&file)
                .ok()
                .as_deref()
                .and_then(parse_cgroup_limit)
            {
                limit = Some(limit.map_or(l, |x: u64| x.min(l)));
            }
        }
    }
    Ok(effective_memory(total, limit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_every_documented_form() {
        assert_eq!(parse_size("10%"), Ok(SizeSpec::Permille(100)));
        assert_eq!(parse_size("12.5%"), Ok(SizeSpec::Permille(125)));
        assert_eq!(parse_size("100%"), Ok(SizeSpec::Permille(1000)));
        assert_eq!(parse_size("65536"), Ok(SizeSpec::Bytes(65536)));
        assert_eq!(parse_size("512K"), Ok(SizeSpec::Bytes(512 << 10)));
        assert_eq!(parse_size("64M"), Ok(SizeSpec::Bytes(64 << 20)));
        assert_eq!(parse_size("64MiB"), Ok(SizeSpec::Bytes(64 << 20)));
        assert_eq!(parse_size("2G"), Ok(SizeSpec::Bytes(2 << 30)));
        assert_eq!(parse_size(" 1T "), Ok(SizeSpec::Bytes(1 << 40)));
        for bad in [
            "",
            "0",
            "0%",
            "101%",
            "1.25%",
            "ten",
            "5X",
            "-1M",
            "99999999999999999999T",
            "%",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        assert_eq!(SizeSpec::Permille(125).to_string(), "12.5%");
    }

    #[test]
    fn percent_of_container_aware_memory() {
        let gib = 1u64 << 30;
        assert_eq!(effective_memory(256 * gib, Some(2 * gib)), 2 * gib);
        assert_eq!(effective_memory(8 * gib, None), 8 * gib);
        assert_eq!(effective_memory(8 * gib, Some(16 * gib)), 8 * gib);
        assert_eq!(resolve(SizeSpec::Permille(100), 2 * gib), 214_745_088); // 10 % rounded to pages
        assert_eq!(resolve(SizeSpec::Bytes(5000), 0), 4096);
        assert_eq!(default_inodes(1 << 20), 256);
        assert_eq!(default_inodes(4097), 2);
    }

    #[test]
    fn parses_proc_and_cgroup_files() {
        assert_eq!(
            parse_meminfo_total("MemTotal:       24567800 kB\nMemFree: 1 kB\n"),
            Some(24567800 * 1024)
        );
        assert_eq!(parse_cgroup_limit("max\n"), None);
        assert_eq!(parse_cgroup_limit("2147483648\n"), Some(2 << 30));
        assert_eq!(parse_cgroup_limit("9223372036854771712\n"), None);
        assert!(system_memory().unwrap() > 0);
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,24}") {
            let _ = parse_size(&s);
        }

        #[test]
        fn resolved_sizes_are_whole_pages_within_memory(pm in 1u32..=1000, mem in 4096u64..(1 << 44)) {
            let b = resolve(SizeSpec::Permille(pm), mem);
            prop_assert_eq!(b % 4096, 0);
            prop_assert!(b <= mem.max(4096));
        }
    }
}
