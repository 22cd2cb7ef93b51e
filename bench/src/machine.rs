//! The machine a run came from, named in every table and figure.

/// What the numbers depend on.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub mem_gib: f64,
    pub date: String,
}

impl Machine {
    /// Read from `/proc` and the clock.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            cpu: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown CPU".into()),
            cores: cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count()
                .max(1),
            mem_gib: kib_field(&meminfo, "MemTotal").unwrap_or(0) as f64 / (1 << 20) as f64,
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        }
    }

    /// One line for a figure's footer or a table caption.
    pub fn label(&self) -> String {
        format!(
            "{} cores, {}, {:.0} GiB, {}",
            self.cores, self.cpu, self.mem_gib, self.date
        )
    }
}

/// `model name` of the first processor in `/proc/cpuinfo`.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "model name").then(|| v.split_whitespace().collect::<Vec<_>>().join(" "))
    })
}

/// A `NAME:   1234 kB` field of `/proc/meminfo` or `/proc/PID/status`.
pub fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_formats() {
        let cpu = "processor\t: 0\nmodel name\t: AMD EPYC  7B13 64-Core Processor\n";
        assert_eq!(cpu_model(cpu).unwrap(), "AMD EPYC 7B13 64-Core Processor");
        let status = "Name:\tsyncd\nVmRSS:\t   12345 kB\nVmSwap:\t0 kB\n";
        assert_eq!(kib_field(status, "VmRSS"), Some(12345));
        assert_eq!(kib_field(status, "VmHWM"), None);
    }
}
