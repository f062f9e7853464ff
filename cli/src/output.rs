//! Output helpers: lines on stdout ([`outln!`]: a reader that went away
//! ends the command quietly instead of a panic), progress bars on a
//! terminal (quiet otherwise), human sizes and times, names from the
//! repository made printable, and logging to stderr.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};
use vmkeep_engine::progress::{NoProgress, Progress};

use crate::Global;

/// Standard output was closed by its reader (`vmkeep generations | head`).
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct StdoutClosed;

/// Writes one line to stdout; a closed pipe is [`StdoutClosed`].
pub fn write_line(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{args}").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to standard output")),
    }
}

/// `println!` that returns an error instead of panicking on a closed pipe.
#[macro_export]
macro_rules! outln {
    ($($t:tt)*) => {
        $crate::output::write_line(format_args!($($t)*))
    };
}

/// A name read from the repository (a source, a disk), printable: control
/// characters are escaped, so a hostile name cannot move the cursor or
/// forge lines.
pub fn name(s: &str) -> String {
    if s.chars().any(char::is_control) {
        s.escape_debug().to_string()
    } else {
        s.to_string()
    }
}

/// `n thing` or `n things`.
pub fn count(n: u64, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// Sends `log` records to stderr (warnings and errors; more with RUST_LOG).
pub fn init_logging() {
    struct Stderr(log::LevelFilter);
    impl log::Log for Stderr {
        fn enabled(&self, m: &log::Metadata) -> bool {
            m.level() <= self.0
        }
        fn log(&self, r: &log::Record) {
            if self.enabled(r.metadata()) {
                eprintln!(
                    "vmkeep: {}: {}",
                    r.level().as_str().to_lowercase(),
                    r.args()
                );
            }
        }
        fn flush(&self) {}
    }
    let level = match std::env::var("RUST_LOG").as_deref() {
        Ok("debug") => log::LevelFilter::Debug,
        Ok("info") => log::LevelFilter::Info,
        Ok("trace") => log::LevelFilter::Trace,
        _ => log::LevelFilter::Warn,
    };
    if log::set_boxed_logger(Box::new(Stderr(level))).is_ok() {
        log::set_max_level(level);
    }
}

/// A progress bar with throughput and ETA.
pub struct Bar(ProgressBar);

impl Progress for Bar {
    fn start(&self, label: &str, total: u64) {
        self.0.set_length(total);
        self.0.set_message(label.to_string());
    }
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// A progress bar when stderr is a terminal and output is for humans.
pub fn progress(g: &Global) -> Box<dyn Progress> {
    if g.quiet || g.json || !std::io::stderr().is_terminal() {
        return Box::new(NoProgress);
    }
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    Box::new(Bar(pb))
}

/// Bytes in binary units.
pub fn size(n: u64) -> String {
    vmkeep_engine::ops::size(n)
}

/// A Unix time as RFC 3339 in UTC shifted by `offset` seconds.
pub fn time(t: i64, offset: i32) -> String {
    vmkeep_engine::ops::rfc3339(t, offset)
}

/// Prints a report as one line of JSON.
pub fn print_json<T: serde::Serialize>(report: &T) -> anyhow::Result<()> {
    write_line(format_args!("{}", serde_json::to_value(report)?))
}
