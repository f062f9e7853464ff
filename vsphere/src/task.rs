//! Waiting for tasks.
//!
//! Nouns: a task moref, its `info` (state, progress, result, error).
//!
//! Invariants: waiting ends on `success` (with the result, e.g. the new
//! snapshot's moref), on `error` (as a typed fault from `info.error`), or
//! after the timeout; progress is reported only when it changes.

use std::time::{Duration, Instant};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::soap::{localized_fault, MoRef};
use crate::xml::Element;

impl Client {
    /// Starts a `*_Task` method and returns the task moref.
    pub fn start_task(&self, method: &str, params: &str) -> Result<MoRef> {
        let (_, resp) = self.call(method, params)?;
        resp.child("returnval")
            .and_then(MoRef::from_element)
            .ok_or_else(|| Error::Unexpected {
                method: method.to_string(),
                what: "no task moref".into(),
            })
    }

    /// Waits for a task; `progress` gets the percentage when it changes.
    /// Returns the task's `result` element, if any.
    pub fn wait_task(
        &self,
        task: &MoRef,
        what: &str,
        timeout: Duration,
        progress: &mut dyn FnMut(i32),
    ) -> Result<Option<Element>> {
        let start = Instant::now();
        let mut last = -1;
        let mut delay = Duration::from_millis(50);
        loop {
            let oc = self
                .retrieve_one(task, &["info"])?
                .ok_or_else(|| Error::NotFound {
                    what: format!("task {task}"),
                })?;
            let info = oc.get("info").ok_or_else(|| Error::Unexpected {
                method: what.to_string(),
                what: format!("task {task} has no info"),
            })?;
            match info.child_text("state").unwrap_or("") {
                "success" => {
                    if last != 100 {
                        progress(100);
                    }
                    return Ok(info.child("result").cloned());
                }
                "error" => {
                    return Err(match info.child("error") {
                        Some(e) => localized_fault(what, e),
                        None => Error::Unexpected {
                            method: what.to_string(),
                            what: "task failed without an error".into(),
                        },
                    })
                }
                _ => {}
            }
            if let Some(p) = info.child_i64("progress") {
                let p = p as i32;
                if p != last {
                    last = p;
                    progress(p);
                }
            }
            if start.elapsed() >= timeout {
                return Err(Error::Timeout {
                    task: task.value.clone(),
                    what: what.to_string(),
                    secs: timeout.as_secs(),
                });
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// Starts a task and waits for it with the client's task timeout.
    pub fn run_task(&self, method: &str, params: &str) -> Result<Option<Element>> {
        let task = self.start_task(method, params)?;
        self.wait_task(&task, method, self.task_timeout, &mut |p| {
            log::debug!("{method}: {p}%")
        })
    }
}
