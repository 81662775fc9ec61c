//! `RUN_DIR/trace`: the activity log streamed to disk as it happens, in the Chrome trace-event
//! format (JSON array form, one event per line, the closing bracket left off as that format
//! allows), so Perfetto (ui.perfetto.dev) or chrome://tracing open it as it grows, a long run
//! keeps only a bounded window in memory, and `grlhf bench` reads every span back.
//!
//! Busy spans are complete events (`"ph":"X"`) on one thread per actor, named by a metadata
//! event; group milestones are instant events (`"ph":"i"`) on thread 0 (`groups`) with the
//! group's uid in `args`. Each process that writes (a run, then its resumes) is its own `pid`,
//! so its clock, which starts at 0, stays apart from the others'.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use crate::activity_records::{GroupEvent, Milestone, Span};

/// Appends events to a trace file.
#[derive(Debug)]
pub struct TraceWriter {
    out: BufWriter<File>,
    pid: u32,
}

impl TraceWriter {
    /// Opens `path` for appending (creating it with the array's opening bracket) and names this
    /// process's track `label`. A last line cut off by a killed writer is removed first, so the
    /// file stays valid JSON up to its end.
    pub fn append(path: &Path, label: &str) -> std::io::Result<TraceWriter> {
        let fresh = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
        if !fresh {
            cut_partial_line(path)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let mut writer = TraceWriter {
            out: BufWriter::new(file),
            pid: std::process::id(),
        };
        if fresh {
            writeln!(writer.out, "[")?;
        }
        let pid = writer.pid;
        writer.metadata("process_name", pid, 0, label)?;
        writer.metadata("thread_name", pid, 0, "groups")?;
        Ok(writer)
    }

    /// Writes one event line with a single write, so a flush never splits it between calls.
    fn line(&mut self, event: String) -> std::io::Result<()> {
        self.out.write_all(event.as_bytes())
    }

    fn metadata(&mut self, what: &str, pid: u32, tid: u32, name: &str) -> std::io::Result<()> {
        let name = serde_json::to_string(name).expect("a string serialises");
        self.line(format!(
            "{{\"ph\":\"M\",\"name\":\"{what}\",\"pid\":{pid},\"tid\":{tid},\"args\":{{\"name\":{name}}}}},\n"
        ))
    }

    /// Names thread `tid` (an interned actor, from 1) after `actor`.
    pub fn actor(&mut self, tid: u32, actor: &str) -> std::io::Result<()> {
        self.metadata("thread_name", self.pid, tid, actor)
    }

    /// One busy span of thread `tid`; times in seconds since the run started.
    pub fn span(&mut self, tid: u32, kind: &str, start: f64, end: f64) -> std::io::Result<()> {
        let kind = serde_json::to_string(kind).expect("a string serialises");
        self.line(format!(
            "{{\"ph\":\"X\",\"name\":{kind},\"pid\":{},\"tid\":{tid},\"ts\":{:.3},\"dur\":{:.3}}},\n",
            self.pid,
            start * 1e6,
            (end - start).max(0.0) * 1e6
        ))
    }

    /// A group reached a milestone.
    pub fn milestone(&mut self, event: &GroupEvent) -> std::io::Result<()> {
        self.line(format!(
            "{{\"ph\":\"i\",\"s\":\"t\",\"name\":\"{}\",\"pid\":{},\"tid\":0,\"ts\":{:.3},\"args\":{{\"uid\":{}}}}},\n",
            event.milestone.as_str(),
            self.pid,
            event.time * 1e6,
            event.uid
        ))
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Truncates `path` after its last newline (a writer killed mid-line leaves a fragment).
fn cut_partial_line(path: &Path) -> std::io::Result<()> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    // An event line is a few hundred bytes: the last newline is within the last 64 kB.
    let from = len.saturating_sub(64 << 10);
    file.seek(SeekFrom::Start(from))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    match tail.iter().rposition(|&b| b == b'\n') {
        Some(i) if (i as u64) + 1 < len - from => file.set_len(from + i as u64 + 1),
        _ => Ok(()),
    }
}

/// What a trace file holds, per writing process in the order they appear.
#[derive(Debug, Default)]
pub struct TraceContents {
    pub spans: Vec<Span>,
    pub events: Vec<GroupEvent>,
    /// Lines that did not parse (a run killed mid-write leaves at most one, the last).
    pub bad_lines: usize,
}

/// Reads a trace back. Only the events of the last process that wrote to it are returned when
/// `last_process_only` (one run's clock); otherwise all of them.
pub fn read_trace(path: &Path, last_process_only: bool) -> std::io::Result<TraceContents> {
    let file = File::open(path)?;
    let mut names: BTreeMap<(u64, u64), Arc<str>> = BTreeMap::new();
    let mut kinds: BTreeMap<String, Arc<str>> = BTreeMap::new();
    let mut by_pid: Vec<(u64, TraceContents)> = Vec::new();
    let mut bad_lines = 0;
    for line in BufReader::new(file).lines() {
        let line = line?;
        let text = line.trim().trim_end_matches(',');
        if text.is_empty() || text == "[" || text == "]" {
            continue;
        }
        let Ok(event) = serde_json::from_str::<serde_json::Value>(text) else {
            bad_lines += 1;
            continue;
        };
        let pid = event["pid"].as_u64().unwrap_or(0);
        let tid = event["tid"].as_u64().unwrap_or(0);
        if by_pid.last().is_none_or(|(p, _)| *p != pid) {
            by_pid.push((pid, TraceContents::default()));
        }
        let contents = &mut by_pid.last_mut().expect("pushed above").1;
        let ts = event["ts"].as_f64().unwrap_or(0.0) / 1e6;
        match event["ph"].as_str() {
            Some("M") if event["name"] == "thread_name" => {
                let name = event["args"]["name"].as_str().unwrap_or_default();
                names.insert((pid, tid), Arc::from(name));
            }
            Some("X") => {
                let kind = event["name"].as_str().unwrap_or_default();
                let kind = kinds
                    .entry(kind.to_string())
                    .or_insert_with(|| Arc::from(kind))
                    .clone();
                let actor = names
                    .get(&(pid, tid))
                    .cloned()
                    .unwrap_or_else(|| Arc::from(format!("thread-{tid}")));
                let dur = event["dur"].as_f64().unwrap_or(0.0) / 1e6;
                contents.spans.push(Span {
                    actor,
                    kind,
                    start: ts,
                    end: ts + dur,
                });
            }
            Some("i") => {
                let name = event["name"].as_str().unwrap_or_default();
                let milestone = Milestone::ALL.into_iter().find(|m| m.as_str() == name);
                match (milestone, event["args"]["uid"].as_u64()) {
                    (Some(milestone), Some(uid)) => contents.events.push(GroupEvent {
                        uid,
                        milestone,
                        time: ts,
                    }),
                    _ => bad_lines += 1,
                }
            }
            _ => {}
        }
    }
    let mut all = TraceContents::default();
    if last_process_only {
        if let Some((_, last)) = by_pid.pop() {
            all = last;
        }
    } else {
        for (_, c) in by_pid {
            all.spans.extend(c.spans);
            all.events.extend(c.events);
        }
    }
    all.bad_lines = bad_lines;
    Ok(all)
}
