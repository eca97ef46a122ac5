//! What the CLI prints: summaries for people, JSON with `--json`, progress on stderr.

use anyhow::Result;
use ferry_engine::run::{Progress, RunReport};
use ferry_engine::store::{Counts, Failure, XrefRow};
use ferry_engine::schedule::{CronSchedule, Firing};
use ferry_engine::{CheckReport, ConnectorError, Workspace};
use std::time::Duration;

pub struct ProgressBar {
    bar: indicatif::ProgressBar,
}

impl ProgressBar {
    pub fn new(flow: &str) -> Self {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {prefix}: {msg} [{elapsed}]").expect("valid template"),
        );
        bar.set_prefix(flow.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        ProgressBar { bar }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for ProgressBar {
    fn update(&self, c: &Counts) {
        let secs = self.bar.elapsed().as_secs_f64().max(0.001);
        self.bar.set_message(format!(
            "{} read ({:.0}/s), {} created, {} updated, {} unchanged, {} failed",
            c.read,
            c.read as f64 / secs,
            c.created,
            c.updated,
            c.unchanged,
            c.failed
        ));
    }
}

pub fn report(r: &RunReport, json: bool) -> Result<()> {
    if json {
        out!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    let c = &r.counts;
    let verb = if r.dry_run { "would be " } else { "" };
    out!(
        "{}{}: {} read, {} {verb}created, {} {verb}updated, {} unchanged, {} {verb}retired, {} failed, {} skipped in {:.2}s ({:.0} records/s)",
        r.flow,
        if r.dry_run { " (dry run)" } else { "" },
        c.read,
        c.created,
        c.updated,
        c.unchanged,
        c.retired,
        c.failed,
        c.skipped,
        r.duration.as_secs_f64(),
        c.read as f64 / r.duration.as_secs_f64().max(0.000_001),
    );
    // Only when they happened: most runs have neither.
    if c.resumed > 0 || c.warned > 0 {
        out!("  {} {verb}resumed (found in the target after an interrupted write, brought to their end state), {} with a warning", c.resumed, c.warned);
    }
    for p in &r.planned {
        out!("  would {} {}", p.action, p.key);
        for ch in &p.changes {
            let show = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string()).unwrap_or_else(|| "(absent)".into());
            out!("      {}: {} → {}", ch.path, show(&ch.old), show(&ch.new));
        }
    }
    for w in &r.warnings {
        out!("  warning: {w}");
    }
    if !r.failures.is_empty() {
        out!("  failed records (see `ferry failures list {}`):", r.flow);
        for f in &r.failures {
            let field = f.field.as_deref().map(|f| format!(" [{f}]")).unwrap_or_default();
            let retry = if f.retryable { " (will retry)" } else { "" };
            out!("    {} at {}{field}: {}{retry}", f.key, f.stage.as_str(), f.message);
        }
    }
    if let Some(a) = &r.aborted {
        out!("  ABORTED: {a}\n  Work committed before this point is kept; the next run resumes from the last checkpoint.");
    }
    Ok(())
}

/// Prints each connection's check; whether all passed.
pub fn check(results: &[(String, Result<CheckReport, ConnectorError>)], json: bool) -> Result<bool> {
    let ok = results.iter().all(|(_, r)| r.as_ref().is_ok_and(|r| r.ok));
    if json {
        let list: Vec<_> = results
            .iter()
            .map(|(name, r)| match r {
                Ok(r) => serde_json::json!({"connection": name, "ok": r.ok, "details": r.details}),
                Err(e) => serde_json::json!({"connection": name, "ok": false, "error": e.to_string()}),
            })
            .collect();
        out!("{}", serde_json::to_string_pretty(&serde_json::json!({"ok": ok, "connections": list}))?);
        return Ok(ok);
    }
    for (name, result) in results {
        match result {
            Ok(r) => {
                out!("{} {name}", if r.ok { "ok  " } else { "FAIL" });
                for d in &r.details {
                    out!("      {d}");
                }
            }
            Err(e) => out!("FAIL {name}: {e}"),
        }
    }
    Ok(ok)
}

pub fn schedule(flow: &str, s: &CronSchedule, enabled: bool, firings: &[Firing], json: bool) -> Result<()> {
    if json {
        let v = serde_json::json!({"flow": flow, "schedule": s.expr(), "timezone": s.timezone().name(), "enabled": enabled, "firings": firings});
        out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let disabled = if enabled { "" } else { " (flow disabled: `ferry serve` does not run it)" };
    out!("{flow}: \"{}\" in {}{disabled}", s.expr(), s.timezone().name());
    for f in firings {
        out!("  {} {:<5}  {}", f.local, f.zone, f.utc);
    }
    Ok(())
}

pub async fn status(ws: &Workspace, flow: Option<&str>, json: bool) -> Result<()> {
    let names: Vec<String> = match flow {
        Some(f) => vec![f.to_owned()],
        None => ws.config.flows.keys().cloned().collect(),
    };
    let mut out = Vec::new();
    for name in &names {
        let runs = ws.store().runs(Some(name), 5).await?;
        let failures = ws.store().failures(Some(name), None).await?;
        out.push(serde_json::json!({"flow": name, "runs": runs, "open_failures": failures.len()}));
        if json {
            continue;
        }
        out!("{name}: {} open failure(s)", failures.len());
        if runs.is_empty() {
            out!("    never run");
        }
        for r in runs {
            let c = r.counts;
            out!(
                "    #{} {} {} {:<14} read {} · created {} · updated {} · unchanged {} · failed {}{}{}",
                r.id,
                r.started_at.get(..19).unwrap_or(&r.started_at),
                r.mode,
                r.status,
                c.read,
                c.created,
                c.updated,
                c.unchanged,
                c.failed,
                [("resumed", c.resumed), ("skipped", c.skipped), ("warned", c.warned)]
                    .iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(what, n)| format!(" · {what} {n}"))
                    .collect::<String>(),
                r.error.map(|e| format!(" — {e}")).unwrap_or_default()
            );
            const SHOWN: usize = 5;
            for w in r.warnings.iter().take(SHOWN) {
                out!("        warning: {w}");
            }
            if r.warnings.len() > SHOWN {
                out!("        … and {} more warning(s) (`ferry status --json`)", r.warnings.len() - SHOWN);
            }
        }
    }
    if json {
        out!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

pub fn failures(list: &[Failure], json: bool) -> Result<()> {
    if json {
        out!("{}", serde_json::to_string_pretty(list)?);
        return Ok(());
    }
    if list.is_empty() {
        out!("no open failures");
    }
    for f in list {
        out!(
            "#{} {} {} at {}{}: {} — {} attempt(s){}",
            f.id,
            f.flow,
            f.key,
            f.stage,
            f.field.as_deref().map(|x| format!(" [{x}]")).unwrap_or_default(),
            f.message,
            f.attempts,
            match (&f.retryable, &f.next_retry_at) {
                (true, Some(t)) => format!(", retries after {t}"),
                _ => ", waits for a fix: `ferry failures retry FLOW` after fixing the data or mapping".into(),
            }
        );
    }
    Ok(())
}

pub fn xref(rows: &[XrefRow], json: bool) -> Result<()> {
    if json {
        out!("{}", serde_json::to_string_pretty(rows)?);
        return Ok(());
    }
    for r in rows {
        out!("{}: {} → {} (hash {}, synced {})", r.flow, r.key, r.target_id, r.hash, r.synced_at);
    }
    Ok(())
}

pub fn describe(types: &[(&'static str, &'static str)], name: Option<&str>, json: bool) -> Result<()> {
    let listed: Vec<(&str, &str)> = match name {
        Some(n) => match types.iter().find(|(t, _)| *t == n) {
            Some(&t) => vec![t],
            None => {
                let known: Vec<&str> = types.iter().map(|(t, _)| *t).collect();
                anyhow::bail!("unknown connector {n:?}; known: {}", known.join(", "))
            }
        },
        None => types.to_vec(),
    };
    if json {
        let list: Vec<_> = listed.iter().map(|(name, summary)| serde_json::json!({"name": name, "summary": summary})).collect();
        out!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    for (name, summary) in listed {
        out!("{name}: {summary}");
    }
    Ok(())
}

/// What `ferry prune` removed (or would).
pub fn prune(report: &ferry_engine::retention::PruneReport, json: bool) -> Result<()> {
    if json {
        out!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    let verb = if report.dry_run { "would remove" } else { "removed" };
    out!("{verb} {} run(s) with {} run record(s), {} finished job(s), {} pushed record(s)", report.runs, report.run_records, report.jobs, report.pushed_records);
    for c in &report.compacted {
        let verb = match (report.dry_run, c.compaction.lines_after < c.compaction.lines_before) {
            (_, false) => "nothing to compact in",
            (true, true) => "would compact",
            (false, true) => "compacted",
        };
        out!("{verb} {} ({} {}): {} → {} lines", c.compaction.target, c.connection, c.stream, c.compaction.lines_before, c.compaction.lines_after);
    }
    for s in &report.skipped {
        out!("skipped {s}");
    }
    for e in &report.errors {
        out!("error: {e}");
    }
    Ok(())
}
