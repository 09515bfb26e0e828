//! OTLP-JSON lines files in the Collector file exporter's format: one export request per
//! line, so the `jq` queries of a Collector set-up work unchanged.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use super::ReceiverError;

/// Which of the three files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum File {
    Traces,
    Metrics,
    Logs,
}

/// One file per signal under a folder: `traces.jsonl`, `metrics.jsonl`, `logs.jsonl`.
#[derive(Debug)]
pub(crate) struct JsonLines {
    folder: PathBuf,
    traces: Mutex<BufWriter<std::fs::File>>,
    metrics: Mutex<BufWriter<std::fs::File>>,
    logs: Mutex<BufWriter<std::fs::File>>,
    errors: AtomicU64,
}

fn open(folder: &Path, name: &str) -> Result<Mutex<BufWriter<std::fs::File>>, ReceiverError> {
    let path = folder.join(name);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|source| ReceiverError::ExportFile { path, source })?;
    Ok(Mutex::new(BufWriter::new(file)))
}

impl JsonLines {
    pub(crate) fn create(folder: &Path) -> Result<Self, ReceiverError> {
        std::fs::create_dir_all(folder).map_err(|source| ReceiverError::ExportFile {
            path: folder.to_owned(),
            source,
        })?;
        Ok(JsonLines {
            folder: folder.to_owned(),
            traces: open(folder, "traces.jsonl")?,
            metrics: open(folder, "metrics.jsonl")?,
            logs: open(folder, "logs.jsonl")?,
            errors: AtomicU64::new(0),
        })
    }

    pub(crate) fn folder(&self) -> &Path {
        &self.folder
    }

    /// Failed writes so far; each is also reported by the receiver's `/metrics`.
    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// One request as a JSON line (without the newline); `None` if it cannot be
    /// serialized, which is then counted as a write error.
    pub(crate) fn line(request: &impl Serialize) -> Option<Vec<u8>> {
        serde_json::to_vec(request).ok()
    }

    /// Appends one request's line to `file` (a `None` line counts as a write error).
    pub(crate) fn write(&self, file: File, line: Option<Vec<u8>>) {
        let file = match file {
            File::Traces => &self.traces,
            File::Metrics => &self.metrics,
            File::Logs => &self.logs,
        };
        let Some(line) = line else {
            self.errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut file = crate::store::lock(file);
        let written = file
            .write_all(&line)
            .and_then(|()| file.write_all(b"\n"))
            // Flushed per request so that a reader (jq, a test) sees every line at once.
            .and_then(|()| file.flush());
        if written.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}
