//! The few things read from `/proc`: a process's memory, the CPU model.

/// A process's resident memory as `/proc/<pid>/status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// Peak resident set ("high water mark"), in bytes.
    pub hwm_bytes: u64,
    /// Current resident set, in bytes.
    pub rss_bytes: u64,
}

/// One `Name:   1234 kB` line of a status file, in bytes. The kernel's "kB"
/// is 1024 bytes.
fn field_bytes(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        let mut parts = rest.split_whitespace();
        let value: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") => Some(value * 1024),
            _ => None,
        }
    })
}

/// `VmHWM` and `VmRSS` from the text of `/proc/<pid>/status`; `None` when
/// either is missing (a zombie has neither).
pub fn parse_status(status: &str) -> Option<Memory> {
    Some(Memory {
        hwm_bytes: field_bytes(status, "VmHWM")?,
        rss_bytes: field_bytes(status, "VmRSS")?,
    })
}

/// Reads a live process's memory.
pub fn memory_of(pid: u32) -> anyhow::Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let text =
        std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("reading {path}: {e}"))?;
    parse_status(&text).ok_or_else(|| anyhow::anyhow!("{path} has no VmHWM/VmRSS"))
}

/// The first `model name` of a `/proc/cpuinfo` text.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == "model name").then(|| v.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\trequest\nUmask:\t0022\nState:\tS (sleeping)\n\
        VmPeak:\t   20840 kB\nVmSize:\t   20776 kB\nVmLck:\t       0 kB\n\
        VmHWM:\t    5312 kB\nVmRSS:\t    5100 kB\nRssAnon:\t     604 kB\n\
        VmRSSX:\t 9 kB\nThreads:\t1\n";

    #[test]
    fn reads_hwm_and_rss_in_bytes() {
        // GIVEN a real-shaped status file WHEN parsed
        let m = parse_status(STATUS).unwrap();
        // THEN the kB values are converted, and VmRSSX is not mistaken for VmRSS
        assert_eq!(m.hwm_bytes, 5312 * 1024);
        assert_eq!(m.rss_bytes, 5100 * 1024);
    }

    #[test]
    fn missing_or_malformed_fields_are_none() {
        assert_eq!(parse_status("Name:\tzombie\nState:\tZ (zombie)\n"), None);
        assert_eq!(parse_status("VmHWM:\t12 MB\nVmRSS:\t5 kB\n"), None);
        assert_eq!(parse_status("VmHWM:\tlots kB\nVmRSS:\t5 kB\n"), None);
    }

    #[test]
    fn cpu_model_is_the_first_model_name() {
        let info = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\n\
                    processor\t: 1\nmodel name\t: other\n";
        assert_eq!(cpu_model(info).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_model("processor : 0\n"), None);
    }

    #[test]
    fn reads_this_process() {
        let m = memory_of(std::process::id()).unwrap();
        assert!(m.rss_bytes > 0 && m.hwm_bytes >= m.rss_bytes);
    }
}
