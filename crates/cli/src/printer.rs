//! `serve`'s output, written by a thread of its own: a reader that stops reading (a full
//! pipe) blocks that thread, never the serve loop, so signals and the deadline are still
//! answered. Trace lines beyond the buffer are dropped and counted; the summary waits for
//! room, and the end waits for the output to drain, each for a bounded time.

use std::io::Write;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

/// Lines that may wait for a slow reader before trace lines are dropped.
const BUFFER_LINES: usize = 8192;

/// The sending end of the output thread.
#[derive(Debug)]
pub(crate) struct Printer {
    lines: mpsc::Sender<String>,
    drained: oneshot::Receiver<()>,
    dropped: u64,
}

impl Printer {
    /// Starts the thread that writes to `out`.
    pub(crate) fn start(mut out: impl Write + Send + 'static) -> std::io::Result<Self> {
        let (lines, mut incoming) = mpsc::channel::<String>(BUFFER_LINES);
        let (done, drained) = oneshot::channel();
        std::thread::Builder::new()
            .name("serve-output".to_owned())
            .spawn(move || {
                while let Some(line) = incoming.blocking_recv() {
                    if out.write_all(line.as_bytes()).is_err() {
                        break;
                    }
                    if incoming.is_empty() && out.flush().is_err() {
                        break;
                    }
                }
                let _ = out.flush();
                let _ = done.send(());
            })?;
        Ok(Printer {
            lines,
            drained,
            dropped: 0,
        })
    }

    /// Queues a trace line; drops it (and counts it) when the reader is that far behind.
    pub(crate) fn trace_line(&mut self, line: String) {
        if self.lines.try_send(line).is_err() {
            self.dropped += 1;
        }
    }

    /// Trace lines dropped so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Queues a line that must not be dropped, waiting up to `patience` for room.
    pub(crate) async fn line(&self, line: String, patience: Duration) {
        let _ = self.lines.send_timeout(line, patience).await;
    }

    /// Waits up to `patience` for everything queued to be written.
    pub(crate) async fn finish(self, patience: Duration) {
        let Printer { lines, drained, .. } = self;
        drop(lines);
        let _ = tokio::time::timeout(patience, drained).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that never returns from a write: a pipe nobody reads.
    struct Stuck;

    impl Write for Stuck {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            loop {
                std::thread::park();
            }
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_stuck_reader_costs_dropped_lines_and_bounded_waits_not_a_hang() {
        let mut printer = Printer::start(Stuck).unwrap();
        for n in 0..BUFFER_LINES + 10 {
            printer.trace_line(format!("trace {n}\n"));
        }
        // The thread holds one line in its write; the buffer holds the rest.
        assert!(
            (9..=10).contains(&printer.dropped()),
            "{}",
            printer.dropped()
        );
        printer
            .line("summary\n".to_owned(), Duration::from_millis(10))
            .await;
        printer.finish(Duration::from_millis(10)).await;
    }

    /// A writer into memory the test can read.
    #[derive(Clone, Default)]
    struct Memory(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Memory {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn everything_queued_is_written_before_finish_returns() {
        let memory = Memory::default();
        let mut printer = Printer::start(memory.clone()).unwrap();
        printer.trace_line("a\n".to_owned());
        printer
            .line("b\n".to_owned(), Duration::from_secs(30))
            .await;
        printer.finish(Duration::from_secs(30)).await;
        assert_eq!(memory.0.lock().unwrap().as_slice(), b"a\nb\n");
    }
}
