//! How the CLI prints what it read from the API, in the output a user picks with `-o`:
//! aligned tables for people (`table`; `wide` adds columns), the API's JSON as it was sent
//! (`json`), the same document as YAML (`yaml`), or one name per line (`name`, for scripts and
//! `xargs`). Everything renders to a `String` first, so a watched view is redrawn whole.
//!
//! Invariants: `yaml` is the `json` document, value for value (a YAML parser gives back the
//! same JSON); colours appear only when stdout is a terminal and `NO_COLOR` is not set, and
//! never in `json`, `yaml` or `name`.

use std::io::IsTerminal;

use clap::ValueEnum;
use serde_json::Value;

use crate::model::delivery::DeliveryState;
use crate::model::status::{DeploymentStatus, Health, NamespaceStatus, RevisionState};

/// How a view prints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    #[default]
    Table,
    /// The table with more columns: image, revision, addresses…
    Wide,
    /// The API's JSON, as it sent it.
    Json,
    /// The same document as YAML.
    Yaml,
    /// One name per line (NAMESPACE/NAME for deployments), for scripts.
    Name,
}

/// Whether status words are coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    colour: bool,
}

impl Style {
    /// Colours when stdout is a terminal and `NO_COLOR` is not set.
    pub fn for_stdout() -> Self {
        Self {
            colour: std::io::stdout().is_terminal() && !crate::config::no_color_from_env(),
        }
    }

    /// Whether stdout is a terminal a view may clear and redraw.
    pub fn redraws(self) -> bool {
        std::io::stdout().is_terminal()
    }
}

/// A view of the agent, printable in every output.
pub trait View {
    /// The document as the API sent it (`json`, `yaml`).
    fn document(&self) -> &Value;
    /// One line per thing shown (`name`).
    fn names(&self) -> Vec<String>;
    /// For people; `wide` adds columns.
    fn text(&self, style: Style, wide: bool) -> String;
}

/// The whole of `view` in `output`, ending with a newline (nothing for an empty `name` list).
/// `streamed`: one of several documents printed in a row (`--watch`, `--follow`), so JSON is
/// one compact line each (JSON Lines) and YAML a document each.
pub fn render(view: &dyn View, output: Output, style: Style, streamed: bool) -> String {
    match output {
        Output::Table => view.text(style, false),
        Output::Wide => view.text(style, true),
        Output::Json if streamed => format!("{}\n", view.document()),
        Output::Json => json_text(view.document()),
        Output::Yaml => yaml_text(view.document()),
        Output::Name => view.names().iter().map(|n| format!("{n}\n")).collect(),
    }
}

/// Pretty JSON and a newline.
pub fn json_text(value: &Value) -> String {
    let pretty = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    format!("{pretty}\n")
}

/// One YAML document (`---` first) holding `value`, block style. A string is written plain
/// only when no YAML reader could take it for anything else (a letter first, then letters,
/// digits and `._/-`, and not a word YAML 1.1 or 1.2 reads as a boolean, null or number);
/// every other string is double-quoted with JSON's escapes, which YAML reads the same way.
pub fn yaml_text(value: &Value) -> String {
    let mut out = String::from("---");
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            yaml_block(value, 0, &mut out);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            yaml_block(value, 0, &mut out);
        }
        _ => {
            out.push(' ');
            out.push_str(&yaml_scalar(value));
            out.push('\n');
        }
    }
    out
}

/// A non-empty mapping or sequence at `indent`, each entry on its own line(s); a sequence's
/// nested collection starts on the dash's line (`- name: web`).
fn yaml_block(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    let nested = |v: &Value| match v {
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => false,
    };
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                out.push_str(&format!("{pad}{}:", yaml_string(key)));
                if nested(item) {
                    out.push('\n');
                    yaml_block(item, indent + 2, out);
                } else {
                    out.push_str(&format!(" {}\n", yaml_scalar(item)));
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                if nested(item) {
                    let mut inner = String::new();
                    yaml_block(item, indent + 2, &mut inner);
                    out.push_str(&format!("{pad}- {}", &inner[indent + 2..]));
                } else {
                    out.push_str(&format!("{pad}- {}\n", yaml_scalar(item)));
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

fn yaml_scalar(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) if n.is_f64() => {
            // A float keeps a fraction (1.0, 1.0e-7): YAML 1.1 reads `1e-7` as a string.
            let text = n.to_string();
            match (text.contains('.'), text.find(['e', 'E'])) {
                (true, _) => text,
                (false, Some(at)) => format!("{}.0{}", &text[..at], &text[at..]),
                (false, None) => format!("{text}.0"),
            }
        }
        Value::Number(n) => n.to_string(),
        Value::String(s) => yaml_string(s),
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
    }
}

fn yaml_string(s: &str) -> String {
    const WORDS: [&str; 13] = [
        "true", "false", "yes", "no", "on", "off", "y", "n", "null", "nan", "inf", "infinity",
        "none",
    ];
    let mut chars = s.chars();
    let plain = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
        && !WORDS.contains(&s.to_ascii_lowercase().as_str());
    match plain {
        true => s.to_owned(),
        false => double_quoted(s),
    }
}

/// A YAML double-quoted scalar: every control character, line or paragraph separator and
/// byte-order mark escaped (strict readers refuse them raw).
fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A cell for an optional value: `-` when absent.
pub fn optional(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".to_owned())
}

/// The first `n` characters (ids and digests are long; their prefix identifies them).
pub fn short(text: &str, n: usize) -> String {
    text.chars().take(n).collect()
}

/// How a status reads at a glance: settled, on its way, or in trouble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Good,
    Moving,
    Bad,
}

/// A status word the CLI colours; every value is placed explicitly, so a new status is a
/// compile error here, not a blank or mis-coloured cell.
pub trait Toned: std::fmt::Display + Copy {
    fn tone(self) -> Tone;
}

impl Toned for DeploymentStatus {
    fn tone(self) -> Tone {
        match self {
            DeploymentStatus::Running | DeploymentStatus::Completed => Tone::Good,
            DeploymentStatus::Pending | DeploymentStatus::Creating | DeploymentStatus::Deleted => {
                Tone::Moving
            }
            DeploymentStatus::Failed
            | DeploymentStatus::CrashLoopBackOff
            | DeploymentStatus::InsufficientResources
            | DeploymentStatus::ImagePullBackOff
            | DeploymentStatus::CreateContainerError
            | DeploymentStatus::NetworkError
            | DeploymentStatus::ConfigError
            | DeploymentStatus::FileSystemError
            | DeploymentStatus::Error => Tone::Bad,
        }
    }
}

impl Toned for Health {
    fn tone(self) -> Tone {
        match self {
            Health::Healthy => Tone::Good,
            Health::Degraded | Health::Unhealthy => Tone::Bad,
        }
    }
}

impl Toned for NamespaceStatus {
    fn tone(self) -> Tone {
        match self {
            NamespaceStatus::Running => Tone::Good,
            NamespaceStatus::Starting | NamespaceStatus::Stopping | NamespaceStatus::Stopped => {
                Tone::Moving
            }
            NamespaceStatus::Error | NamespaceStatus::Warning => Tone::Bad,
        }
    }
}

impl Toned for DeliveryState {
    fn tone(self) -> Tone {
        match self {
            DeliveryState::Delivered => Tone::Good,
            DeliveryState::Pending => Tone::Moving,
            DeliveryState::Dead => Tone::Bad,
        }
    }
}

impl Toned for crate::model::run::RunOutcome {
    fn tone(self) -> Tone {
        use crate::model::run::RunOutcome;
        match self {
            RunOutcome::Completed => Tone::Good,
            RunOutcome::Running | RunOutcome::Skipped => Tone::Moving,
            RunOutcome::Failed => Tone::Bad,
        }
    }
}

/// "850ms", "42s", "3m05s", "2h10m": how long something took.
pub fn took(ms: i64) -> String {
    let secs = ms / 1000;
    match ms {
        ms if ms < 1000 => format!("{ms}ms"),
        _ if secs < 60 => format!("{secs}s"),
        _ if secs < 3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

impl Toned for RevisionState {
    fn tone(self) -> Tone {
        match self {
            RevisionState::Succeeded => Tone::Good,
            RevisionState::Queued | RevisionState::Applying | RevisionState::Superseded => {
                Tone::Moving
            }
            RevisionState::Failed
            | RevisionState::Invalid
            | RevisionState::RolledBack
            | RevisionState::Quarantined => Tone::Bad,
        }
    }
}

/// A status word, coloured when the style allows: green settled, yellow progressing, red
/// failures.
pub fn paint(style: Style, status: impl Toned) -> String {
    if !style.colour {
        return status.to_string();
    }
    let colour = match status.tone() {
        Tone::Good => "32",
        Tone::Moving => "33",
        Tone::Bad => "31",
    };
    format!("\x1b[{colour}m{status}\x1b[0m")
}

/// "3m", "2h", "5d" since an RFC 3339 instant.
pub fn age(rfc3339: &str) -> String {
    let Some(then) = crate::model::time::parse_rfc3339(rfc3339) else {
        return "-".to_owned();
    };
    let secs = (crate::clock::now().millis() - then.millis()).max(0) / 1000;
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Aligned columns with a header line (ANSI colour codes do not count towards the width).
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(visible_width(cell));
        }
    }
    let line = |cells: &[String]| -> String {
        let padded: String = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w.saturating_sub(visible_width(c)) + 2)))
            .collect();
        format!("{}\n", padded.trim_end())
    };
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let mut out = line(&header);
    for row in &rows {
        out.push_str(&line(row));
    }
    out
}

/// A table with the wide columns appended when `wide` (each row's extra cells likewise).
pub fn table_maybe_wide(
    wide: bool,
    headers: &[&str],
    extra_headers: &[&str],
    rows: Vec<(Vec<String>, Vec<String>)>,
) -> String {
    let mut all: Vec<&str> = headers.to_vec();
    if wide {
        all.extend_from_slice(extra_headers);
    }
    let rows = rows
        .into_iter()
        .map(|(mut cells, extra)| {
            if wide {
                cells.extend(extra);
            }
            cells
        })
        .collect();
    table(&all, rows)
}

fn visible_width(s: &str) -> usize {
    let mut n = 0;
    let mut in_escape = false;
    for c in s.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => n += 1,
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON a YAML text reads back as (what a user's YAML tool sees).
    fn read_back(text: &str) -> Value {
        use yaml_rust2::Yaml;
        fn json_of(y: &Yaml) -> Value {
            match y {
                Yaml::Null => Value::Null,
                Yaml::Boolean(b) => Value::Bool(*b),
                Yaml::Integer(i) => Value::from(*i),
                Yaml::Real(r) => serde_json::from_str(r).unwrap(),
                Yaml::String(s) => Value::String(s.clone()),
                Yaml::Array(a) => Value::Array(a.iter().map(json_of).collect()),
                Yaml::Hash(h) => Value::Object(
                    h.iter()
                        .map(|(k, v)| (k.as_str().unwrap().to_owned(), json_of(v)))
                        .collect(),
                ),
                other => panic!("unexpected {other:?}"),
            }
        }
        let docs = yaml_rust2::YamlLoader::load_from_str(text).unwrap();
        assert_eq!(docs.len(), 1, "{text}");
        json_of(&docs[0])
    }

    #[test]
    fn yaml_reads_back_as_the_same_json_whatever_the_strings_look_like() {
        let doc = serde_json::json!({
            "plain": "web", "empty": "", "bool_like": "true", "null_like": "null", "yes": "yes",
            "number_like": "123", "float_like": "1.5", "colon": "a: b", "hash": "# not a comment",
            "dash": "- item", "quote": "it's \"quoted\"", "newline": "two\nlines", "tab": "a\tb",
            "spaces": " padded ", "unicode": "déjà → ✓", "star": "*alias", "amp": "&anchor",
            "int": 42, "negative": -7, "big": u64::MAX, "float": 0.5, "whole_float": 2.0,
            "t": true, "f": false, "none": null, "list": [1, "2", [], {}], "map": {"k": {"n": []}},
        });
        assert_eq!(read_back(&yaml_text(&doc)), doc);
        let doc = serde_json::json!({
            "controls": "bell\u{7} esc\u{1b} del\u{7f} nel\u{85} ls\u{2028}", "octal": "0o17",
            "inf": "+.inf", "under": "1_000", "date": "2024-01-01", "tiny": 1e-7, "Yes": "Off",
            "nested": [{"a": 1, "b": [{"c": null}]}, [1, [2]]], "key: odd": "v", "": "empty key",
        });
        assert_eq!(read_back(&yaml_text(&doc)), doc);
        assert_eq!(
            read_back(&yaml_text(&serde_json::json!([]))),
            serde_json::json!([])
        );
    }

    #[test]
    fn colour_codes_do_not_count_towards_the_width() {
        let style = Style { colour: true };
        let text = table(
            &["A", "B"],
            vec![
                vec![paint(style, DeploymentStatus::Running), "x".into()],
                vec!["crash_loop_back_off".into(), "y".into()],
            ],
        );
        let columns: Vec<usize> = text
            .lines()
            .map(|l| {
                let plain: String = l.replace("\x1b[32m", "").replace("\x1b[0m", "");
                plain.find(['x', 'y', 'B']).unwrap()
            })
            .collect();
        assert_eq!(columns, [21, 21, 21], "{text}");
        assert_eq!(paint(Style { colour: false }, Health::Healthy), "healthy");
    }
}
