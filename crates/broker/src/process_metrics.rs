//! Process metrics under their conventional unprefixed names (`process_resident_memory_bytes`,
//! `process_open_fds`, ...), read from `/proc/self` at scrape time on Linux and absent elsewhere.
//!
//! Nothing is cached: a scrape costs a few small `/proc` reads, and the values are never stale.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// `/proc` reports process times in USER_HZ ticks, 100 a second on every architecture Linux
/// builds for today (the same assumption Prometheus's own process collector makes).
#[cfg(target_os = "linux")]
const USER_HZ: f64 = 100.0;

#[derive(Debug, Default)]
pub struct ProcessCollector;

impl ProcessCollector {
    pub fn new() -> Self {
        Self
    }
}

/// One scrape's readings; a field is `None` when its source could not be read.
#[derive(Debug, Default, PartialEq)]
struct Reading {
    resident_bytes: Option<u64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
    start_time_seconds: Option<f64>,
    cpu_seconds: Option<f64>,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let r = read();
        let mut gauge = |name: &str, help: &str, v: Option<f64>| match v {
            Some(v) => {
                let g = ConstGauge::new(v);
                g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
            }
            None => Ok(()),
        };
        gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            r.resident_bytes.map(|v| v as f64),
        )?;
        gauge(
            "process_open_fds",
            "Number of open file descriptors",
            r.open_fds.map(|v| v as f64),
        )?;
        gauge(
            "process_max_fds",
            "Maximum number of open file descriptors (the soft limit)",
            r.max_fds.map(|v| v as f64),
        )?;
        gauge(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            r.start_time_seconds,
        )?;
        if let Some(cpu) = r.cpu_seconds {
            let c = ConstCounter::new(cpu);
            c.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                c.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

#[cfg(target_os = "linux")]
fn read() -> Reading {
    let status = std::fs::read_to_string("/proc/self/status").ok();
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| parse_boot_time(&s));
    let limits = std::fs::read_to_string("/proc/self/limits").ok();
    let (start_ticks, cpu_ticks) = stat.as_deref().map(parse_stat).unwrap_or_default();
    Reading {
        resident_bytes: status.as_deref().and_then(parse_vm_rss),
        // The directory handle used to count is itself open while counting.
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| (d.count() as u64).saturating_sub(1)),
        max_fds: limits.as_deref().and_then(parse_max_open_files),
        start_time_seconds: start_ticks
            .zip(boot_time)
            .map(|(ticks, boot)| boot as f64 + ticks as f64 / USER_HZ),
        cpu_seconds: cpu_ticks.map(|t| t as f64 / USER_HZ),
    }
}

#[cfg(not(target_os = "linux"))]
fn read() -> Reading {
    Reading::default()
}

/// `VmRSS:   12345 kB` from `/proc/self/status`, in bytes.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line.split_whitespace().skip(1);
    let kib: u64 = words.next()?.parse().ok()?;
    (words.next()? == "kB").then_some(kib * 1024)
}

/// `btime SECONDS` from `/proc/stat`: the boot time, unix seconds.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// From `/proc/self/stat`: (start time in ticks after boot, utime + stime in ticks). The command
/// name (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_stat(stat: &str) -> (Option<u64>, Option<u64>) {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return (None, None);
    };
    // `rest` starts at field 3 (state); utime, stime and starttime are fields 14, 15 and 22.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let cpu = field(14).zip(field(15)).map(|(u, s)| u + s);
    (field(22), cpu)
}

/// The soft limit from the `Max open files` line of `/proc/self/limits`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        assert_eq!(
            parse_vm_rss("Name:\timsgate\nVmRSS:\t   10240 kB\nVmData: 1 kB\n"),
            Some(10 * 1024 * 1024)
        );
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        assert_eq!(
            parse_boot_time("cpu 1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000)
        );
        // A command name with a space and a parenthesis.
        let stat = "4242 (imsgate (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 8 0 12345 100 200";
        assert_eq!(parse_stat(stat), (Some(12345), Some(300)));
        assert_eq!(parse_stat("garbage"), (None, None));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(parse_max_open_files(limits), Some(1024));
    }

    /// On Linux the collector reads this very process: plausible, live values.
    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let r = read();
        assert!(r.resident_bytes.is_some_and(|b| b > 1024 * 1024), "{r:?}");
        let before = r.open_fds.unwrap();
        let files: Vec<_> = (0..200)
            .map(|_| std::fs::File::open("/proc/self/status").unwrap())
            .collect();
        let during = read().open_fds.unwrap();
        // Other tests in this binary open and close files meanwhile; allow them some slack.
        assert!(during >= before + 150, "{before} then {during}");
        drop(files);
        assert!(r.max_fds.is_some_and(|m| m >= 64), "{r:?}");
        use crate::clock::Clock;
        let now = crate::clock::unix_ms(crate::clock::SystemClock.now()) as f64 / 1000.0;
        let start = r.start_time_seconds.unwrap();
        assert!(
            start <= now + 1.0 && start > now - 3600.0,
            "{start} vs {now}"
        );
        assert!(r.cpu_seconds.is_some());
    }
}
