//! Showing a sync as it runs: bars per (instance, model) on a terminal
//! (`indicatif`), or plain lines when output is not a terminal, e.g.
//! `gpu-a  llama3.2:latest  pulling 6a0746a1ec1a  42%`, at most
//! [`PLAIN_EVERY`] apart per pull unless the status changes.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::executor::{Event, Summary};
use super::plan::ActionKind;

/// How progress is shown (`--progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// Bars when stdout is a terminal, else plain lines.
    Auto,
    /// Bars (drawn only on a terminal).
    Bars,
    /// Plain lines.
    Plain,
}

/// Shortest gap between two plain lines of one pull with the same status.
pub const PLAIN_EVERY: Duration = Duration::from_millis(250);

/// The bar layout (also how tests recognise bar output).
pub const BAR_TEMPLATE: &str = "{prefix} [{bar:30}] {percent:>3}% {wide_msg}";

/// Renders events as bars or plain lines; then the summary.
pub enum Renderer {
    Plain(Plain),
    Bars(Bars),
}

impl Renderer {
    /// Plain lines on `out`.
    pub fn plain(out: Box<dyn Write + Send>) -> Renderer {
        Renderer::Plain(Plain {
            out,
            widths: (0, 0),
            last: HashMap::new(),
        })
    }

    /// Bars on stdout.
    pub fn bars() -> Renderer {
        Renderer::Bars(Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout_with_hz(10)),
            bars: HashMap::new(),
            remaining: HashMap::new(),
            widths: (0, 0),
        })
    }

    /// Shows one event.
    pub fn show(&mut self, event: &Event) {
        match self {
            Renderer::Plain(p) => p.show(event),
            Renderer::Bars(b) => b.show(event),
        }
    }
}

type Job = (String, String);

/// Column widths of the instance and model names in a plan.
fn widths(plan: &super::plan::Plan) -> (usize, usize) {
    let wi = plan
        .actions
        .iter()
        .map(|a| a.instance.len())
        .max()
        .unwrap_or(0);
    let wm = plan
        .actions
        .iter()
        .map(|a| a.model.len())
        .max()
        .unwrap_or(0);
    (wi, wm)
}

fn plan_line(plan: &super::plan::Plan) -> String {
    let pulls = plan
        .actions
        .iter()
        .filter(|a| a.kind == ActionKind::Pull)
        .count();
    let mut out = format!(
        "plan: {pulls} pulls, {} loads\n",
        plan.actions.len() - pulls
    );
    for n in &plan.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out
}

/// Plain progress lines.
pub struct Plain {
    out: Box<dyn Write + Send>,
    widths: (usize, usize),
    /// Per pull: the last status printed and when.
    last: HashMap<Job, (String, Instant)>,
}

impl Plain {
    fn show(&mut self, event: &Event) {
        let (wi, wm) = self.widths;
        let line = match event {
            Event::Plan(plan) => {
                self.widths = widths(plan);
                plan_line(plan)
            }
            Event::Progress {
                instance,
                model,
                status,
                completed,
                total,
                ..
            } => {
                let job = (instance.clone(), model.clone());
                let now = Instant::now();
                if let Some((last, at)) = self.last.get(&job) {
                    if last == status && now.duration_since(*at) < PLAIN_EVERY {
                        return;
                    }
                }
                self.last.insert(job, (status.clone(), now));
                let pct = match (completed, total) {
                    (Some(c), Some(t)) if *t > 0 => format!("  {}%", c * 100 / t),
                    _ => String::new(),
                };
                format!("{instance:<wi$}  {model:<wm$}  {status}{pct}\n")
            }
            Event::Result {
                instance,
                model,
                kind,
                ok,
                error,
            } => {
                let what = match (ok, kind) {
                    (true, ActionKind::Pull) => "done".to_string(),
                    (true, ActionKind::Warm) => "loaded (kept warm)".to_string(),
                    (false, _) => format!("FAILED: {}", error.as_deref().unwrap_or("")),
                };
                format!("{instance:<wi$}  {model:<wm$}  {what}\n")
            }
            Event::Summary(s) => s.render(),
        };
        let _ = self.out.write_all(line.as_bytes());
        let _ = self.out.flush();
    }
}

/// Terminal bars, one per (instance, model).
pub struct Bars {
    multi: MultiProgress,
    bars: HashMap<Job, ProgressBar>,
    /// Actions of each job not finished yet.
    remaining: HashMap<Job, usize>,
    widths: (usize, usize),
}

impl Bars {
    fn show(&mut self, event: &Event) {
        match event {
            Event::Plan(plan) => self.add_bars(plan),
            Event::Progress {
                instance,
                model,
                status,
                completed,
                total,
                ..
            } => {
                if let Some(bar) = self.bars.get(&(instance.clone(), model.clone())) {
                    if let (Some(c), Some(t)) = (completed, total) {
                        bar.set_length(*t);
                        bar.set_position(*c);
                    }
                    bar.set_message(status.clone());
                }
            }
            Event::Result {
                instance,
                model,
                kind,
                ok,
                error,
            } => {
                let job = (instance.clone(), model.clone());
                let error = (!ok).then(|| error.as_deref().unwrap_or(""));
                self.finish_action(job, *kind, error);
            }
            Event::Summary(s) => {
                for bar in self.bars.values() {
                    if !bar.is_finished() {
                        bar.abandon();
                    }
                }
                let _ = self.multi.println(s.render().trim_end());
                // When the target is hidden (not a terminal), say it anyway.
                if self.multi.is_hidden() {
                    print!("{}", s.render());
                }
            }
        }
    }

    /// One bar per (instance, model) of `plan`, waiting.
    fn add_bars(&mut self, plan: &super::plan::Plan) {
        self.widths = widths(plan);
        let (wi, wm) = self.widths;
        let _ = self.multi.println(plan_line(plan).trim_end());
        let style = ProgressStyle::with_template(BAR_TEMPLATE)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        for a in &plan.actions {
            let job = (a.instance.clone(), a.model.clone());
            *self.remaining.entry(job.clone()).or_default() += 1;
            self.bars.entry(job).or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(0));
                bar.set_style(style.clone());
                bar.set_prefix(format!("{:<wi$}  {:<wm$}", a.instance, a.model));
                bar.set_message("waiting");
                bar
            });
        }
    }

    /// One action of `job` ended (`error` if it failed): the bar fails at
    /// once, or finishes with the job's last action.
    fn finish_action(&mut self, job: Job, kind: ActionKind, error: Option<&str>) {
        let left = self.remaining.get_mut(&job).map_or(0, |n| {
            *n = n.saturating_sub(1);
            *n
        });
        let Some(bar) = self.bars.get(&job) else {
            return;
        };
        if let Some(error) = error {
            bar.abandon_with_message(format!("FAILED: {error}"));
        } else if left == 0 {
            if bar.length() == Some(0) {
                bar.set_length(1);
            }
            bar.set_position(bar.length().unwrap_or(1));
            let what = if kind == ActionKind::Warm {
                "loaded (kept warm)"
            } else {
                "done"
            };
            bar.finish_with_message(what);
        }
    }
}

/// Drains `events` into `renderer`; returns the summary if one came.
pub async fn render(
    mut events: tokio::sync::mpsc::UnboundedReceiver<Event>,
    mut renderer: Renderer,
) -> Option<Summary> {
    let mut summary = None;
    while let Some(event) = events.recv().await {
        renderer.show(&event);
        if let Event::Summary(s) = event {
            summary = Some(s);
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::plan::{Action, Plan};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn progress(pct: u64, status: &str) -> Event {
        Event::Progress {
            instance: "gpu-a".into(),
            model: "llama3.2:latest".into(),
            status: status.into(),
            digest: None,
            completed: Some(pct),
            total: Some(100),
        }
    }

    #[test]
    fn plain_lines_are_throttled_per_pull() {
        let buf = Shared::default();
        let mut r = Renderer::plain(Box::new(buf.clone()));
        let plan = Plan {
            actions: vec![Action {
                kind: ActionKind::Pull,
                instance: "gpu-a".into(),
                model: "llama3.2:latest".into(),
                reason: None,
                current: None,
                want: None,
            }],
            notes: vec![],
        };
        r.show(&Event::Plan(plan));
        r.show(&progress(10, "pulling 6a0746a1ec1a"));
        r.show(&progress(20, "pulling 6a0746a1ec1a"));
        r.show(&progress(42, "pulling 6a0746a1ec1a"));
        r.show(&progress(100, "verifying sha256 digest"));
        r.show(&Event::Result {
            instance: "gpu-a".into(),
            model: "llama3.2:latest".into(),
            kind: ActionKind::Pull,
            ok: false,
            error: Some("boom".into()),
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "plan: 1 pulls, 0 loads\n\
             gpu-a  llama3.2:latest  pulling 6a0746a1ec1a  10%\n\
             gpu-a  llama3.2:latest  verifying sha256 digest  100%\n\
             gpu-a  llama3.2:latest  FAILED: boom\n"
        );
    }
}
