//! The report: one Markdown section per campaign, each with tables and pass/fail checks.

use std::{fmt::Write as _, time::Duration};

/// A Markdown table.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    /// Column headers.
    pub(crate) columns: Vec<String>,
    /// Rows, each as long as `columns`.
    pub(crate) rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub(crate) fn new<S: Into<String>>(columns: impl IntoIterator<Item = S>) -> Table {
        Table { columns: columns.into_iter().map(Into::into).collect(), rows: Vec::new() }
    }

    /// Appends a row (cells rendered with `Display`).
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.columns.len(), "row width");
        self.rows.push(cells);
    }

    fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "| {} |", self.columns.join(" | "));
        let _ = writeln!(s, "|{}", "---|".repeat(self.columns.len()));
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
            let _ = writeln!(s, "| {} |", cells.join(" | "));
        }
        s
    }
}

/// One campaign's results.
#[derive(Debug, Clone)]
pub(crate) struct Section {
    /// The campaign's name, e.g. "Crash".
    pub(crate) name: String,
    /// One line on what was done.
    pub(crate) summary: String,
    /// Result tables.
    pub(crate) tables: Vec<Table>,
    /// Free-form notes (caveats, what was not covered and why).
    pub(crate) notes: Vec<String>,
    /// Failed checks; empty when the campaign passed.
    pub(crate) failures: Vec<String>,
    /// Wall time.
    pub(crate) took: Option<Duration>,
}

impl Section {
    /// An empty section.
    pub(crate) fn new(name: impl Into<String>, summary: impl Into<String>) -> Section {
        Section {
            name: name.into(),
            summary: summary.into(),
            tables: Vec::new(),
            notes: Vec::new(),
            failures: Vec::new(),
            took: None,
        }
    }

    /// A section for a campaign that could not run to the end.
    pub(crate) fn errored(name: String, error: &anyhow::Error) -> Section {
        let mut s = Section::new(name, "the campaign stopped with an error");
        s.failures.push(format!("error: {error:#}"));
        s
    }

    /// Records a check: `ok == false` adds `what` to the failures.
    pub(crate) fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.failures.push(what.into());
        }
    }

    /// Adds a note.
    pub(crate) fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Sets the wall time.
    pub(crate) fn took(mut self, took: Duration) -> Section {
        self.took = Some(took);
        self
    }

    /// The section as Markdown.
    pub(crate) fn to_markdown(&self) -> String {
        let mut s = String::new();
        let verdict = if self.failures.is_empty() { "passed" } else { "FAILED" };
        let _ = writeln!(s, "## {}: {verdict}\n", self.name);
        let _ = write!(s, "{}", self.summary);
        if let Some(took) = self.took {
            let _ = write!(s, " ({:.1} s)", took.as_secs_f64());
        }
        let _ = writeln!(s, "\n");
        for table in &self.tables {
            let _ = writeln!(s, "{}", table.to_markdown());
        }
        for note in &self.notes {
            let _ = writeln!(s, "- {note}");
        }
        for failure in &self.failures {
            let _ = writeln!(s, "- **FAILED**: {failure}");
        }
        s
    }
}

/// The whole run.
#[derive(Debug)]
pub(crate) struct Report {
    quick: bool,
    seed: u64,
    sections: Vec<Section>,
}

impl Report {
    pub(crate) fn new(quick: bool, seed: u64) -> Report {
        Report { quick, seed, sections: Vec::new() }
    }

    pub(crate) fn push(&mut self, section: Section) {
        self.sections.push(section);
    }

    /// Every failed check, prefixed with its campaign.
    pub(crate) fn failures(&self) -> Vec<String> {
        self.sections
            .iter()
            .flat_map(|s| s.failures.iter().map(move |f| format!("{}: {f}", s.name)))
            .collect()
    }

    pub(crate) fn to_markdown(&self) -> String {
        let mut s = String::new();
        let form = if self.quick { "quick" } else { "full" };
        let flag = if self.quick { " --quick" } else { "" };
        let _ = writeln!(s, "# Torture run ({form} form, seed {})\n", self.seed);
        let _ = writeln!(s, "Reproduce: `cargo xtask torture{flag} -- --seed {}`\n", self.seed);
        let _ = writeln!(s, "| campaign | verdict | wall time |\n|---|---|---|");
        for sec in &self.sections {
            let verdict = if sec.failures.is_empty() { "passed" } else { "FAILED" };
            let took = sec.took.map_or(String::new(), |t| format!("{:.1} s", t.as_secs_f64()));
            let _ = writeln!(s, "| {} | {verdict} | {took} |", sec.name);
        }
        let _ = writeln!(s);
        for sec in &self.sections {
            let _ = writeln!(s, "{}", sec.to_markdown());
        }
        s
    }
}
