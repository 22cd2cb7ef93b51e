//! Injected faults, set through `POST /_emu/fault` and combined until
//! `{"kind":"none"}` clears them all.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The active faults (except `refuse`, which the listener handles).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Faults {
    /// Non-control requests are accepted and never answered (until cleared).
    pub hang: bool,
    /// Delay before every non-control response.
    pub slow_ms: Option<u64>,
    /// `/api/tags` answers 200 with invalid JSON.
    pub tags_invalid_json: bool,
    /// `/api/tags` answers 200 with a valid JSON body of this many bytes.
    pub tags_huge: Option<usize>,
    /// Streams break the connection after this many chunks.
    pub cut_stream: Option<usize>,
    /// Pulls fail after this many progress lines.
    pub fail_pull: Option<usize>,
    /// Every non-control route answers this status with an Ollama error.
    pub status: Option<u16>,
    /// Limits `status` to paths starting with one of these (empty: all),
    /// e.g. the generation routes only, while `/api/tags` stays fine.
    pub status_paths: Vec<String>,
}

impl Faults {
    /// The status fault's code, if it applies to `path`.
    pub fn status_for(&self, path: &str) -> Option<u16> {
        let applies =
            self.status_paths.is_empty() || self.status_paths.iter().any(|p| path.starts_with(p));
        self.status.filter(|_| applies)
    }
}

/// The body of `POST /_emu/fault`.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultRequest {
    None,
    Refuse {
        ms: u64,
    },
    Hang,
    Slow {
        ms: u64,
    },
    TagsInvalidJson,
    TagsHuge {
        #[serde(default = "ten_megabytes")]
        bytes: usize,
    },
    CutStream {
        after_chunks: usize,
    },
    FailPull {
        #[serde(default)]
        after_chunks: usize,
    },
    Status {
        code: u16,
        /// Only paths starting with one of these (default: every route).
        #[serde(default)]
        paths: Vec<String>,
    },
}

fn ten_megabytes() -> usize {
    10 << 20
}

/// What applying a fault request asks of the caller besides new state.
pub enum Applied {
    Done,
    /// Close the listener for this long.
    Refuse(Duration),
}

impl Faults {
    /// Applies one request; `Err` names a bad value.
    pub fn apply(&mut self, req: FaultRequest) -> Result<Applied, String> {
        match req {
            FaultRequest::None => *self = Faults::default(),
            FaultRequest::Refuse { ms } => return Ok(Applied::Refuse(Duration::from_millis(ms))),
            FaultRequest::Hang => self.hang = true,
            FaultRequest::Slow { ms } => self.slow_ms = Some(ms),
            FaultRequest::TagsInvalidJson => self.tags_invalid_json = true,
            FaultRequest::TagsHuge { bytes } => self.tags_huge = Some(bytes),
            FaultRequest::CutStream { after_chunks } => self.cut_stream = Some(after_chunks),
            FaultRequest::FailPull { after_chunks } => self.fail_pull = Some(after_chunks),
            FaultRequest::Status { code, paths } => {
                if !(100..=599).contains(&code) {
                    return Err(format!("status code {code} is not an HTTP status"));
                }
                self.status = Some(code);
                self.status_paths = paths;
            }
        }
        Ok(Applied::Done)
    }
}
