//! The one file reader, shared by [`TracingConfig`](super::TracingConfig) and
//! [`SamplingConfig`](crate::sampler::SamplingConfig): the format follows the extension
//! (`.toml`, `.json`, and `.yaml`/`.yml` with the `yaml` feature; anything else is refused),
//! files and documents are bounded ([`MAX_CONFIG_FILE_BYTES`]), and parse errors name the
//! key and position without quoting the input (a line of a configuration file may hold a
//! secret).

use crate::Error;
use serde::de::DeserializeOwned;
use std::io::Read;
use std::path::Path;

/// Largest configuration file (or document given as text) that is read: 1 MiB.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1 << 20;

/// A configuration format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Toml,
    Json,
    #[cfg(feature = "yaml")]
    Yaml,
}

impl Format {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::Toml => "TOML",
            Format::Json => "JSON",
            #[cfg(feature = "yaml")]
            Format::Yaml => "YAML",
        }
    }

    /// The format `path`'s extension names (case-insensitively).
    pub(crate) fn of(field: &str, path: &Path) -> Result<Format, Error> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("toml") => Ok(Format::Toml),
            Some("json") => Ok(Format::Json),
            #[cfg(feature = "yaml")]
            Some("yaml" | "yml") => Ok(Format::Yaml),
            #[cfg(not(feature = "yaml"))]
            Some("yaml" | "yml") => Err(Error::missing_feature(
                field,
                path.display(),
                "is a YAML file",
                "yaml",
            )),
            _ => Err(Error::file(
                field,
                path,
                format!(
                    "the extension does not name a format: use .toml or .json{}",
                    if cfg!(feature = "yaml") {
                        ", .yaml or .yml"
                    } else {
                        " (or .yaml with the `yaml` feature)"
                    }
                ),
                None,
            )),
        }
    }
}

/// Reads `path` as UTF-8 text, refusing more than [`MAX_CONFIG_FILE_BYTES`]. `field` names
/// the setting that named the file, for the error.
pub(crate) fn read_text(field: &str, path: &Path) -> Result<String, Error> {
    let bytes = read_bytes(field, path, MAX_CONFIG_FILE_BYTES)?;
    String::from_utf8(bytes)
        .map_err(|_| Error::file(field, path, "the file is not UTF-8 text", None))
}

/// Reads at most `max` bytes of `path`; a larger file is an error (it is not read whole).
pub(crate) fn read_bytes(field: &str, path: &Path, max: u64) -> Result<Vec<u8>, Error> {
    let io_error = |e: std::io::Error| {
        Error::file(
            field,
            path,
            format!("cannot read it: {e}"),
            Some(Box::new(e)),
        )
    };
    let file = std::fs::File::open(path).map_err(io_error)?;
    if file.metadata().map_err(io_error)?.is_dir() {
        return Err(Error::file(
            field,
            path,
            "it is a directory, not a file",
            None,
        ));
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > max {
        return Err(Error::file(
            field,
            path,
            format!("the file is larger than {max} bytes"),
            None,
        ));
    }
    Ok(bytes)
}

/// Reads and parses `path` in the format its extension names.
pub(crate) fn load<T: DeserializeOwned>(field: &str, path: &Path) -> Result<T, Error> {
    let format = Format::of(field, path)?;
    let text = read_text(field, path)?;
    parse_file(field, path, format, &text)
}

/// Parses the content of `path` (already read); parse errors become [`Error::File`] naming
/// the file.
pub(crate) fn parse_file<T: DeserializeOwned>(
    field: &str,
    path: &Path,
    format: Format,
    text: &str,
) -> Result<T, Error> {
    parse(format, text).map_err(|e| match e {
        Error::Parse {
            format,
            reason,
            source,
        } => Error::file(field, path, format!("not valid {format}: {reason}"), source),
        other => other,
    })
}

/// Parses a document; errors are [`Error::Parse`].
pub(crate) fn parse<T: DeserializeOwned>(format: Format, text: &str) -> Result<T, Error> {
    if text.len() as u64 > MAX_CONFIG_FILE_BYTES {
        return Err(parse_error(
            format,
            format!(
                "the document is {} bytes long; at most {MAX_CONFIG_FILE_BYTES} are accepted",
                text.len()
            ),
        ));
    }
    match format {
        Format::Toml => toml::from_str(text).map_err(|e| {
            // toml 0.9's `Display` quotes the offending source line, which may hold a secret
            // (an OTLP header, a debug token): report the message, key and position only.
            let place = e
                .span()
                .map(|span| toml_place(text, span.start))
                .unwrap_or_default();
            parse_error(format, format!("{}{place}", redact(e.message().trim())))
        }),
        Format::Json => {
            serde_json::from_str(text).map_err(|e| parse_error(format, redact(&e.to_string())))
        }
        #[cfg(feature = "yaml")]
        Format::Yaml => {
            serde_yaml_ng::from_str(text).map_err(|e| parse_error(format, redact(&e.to_string())))
        }
    }
}

fn parse_error(format: Format, reason: String) -> Error {
    Error::parse(format.name(), reason)
}

/// Longest parser message kept.
const MAX_MESSAGE_CHARS: usize = 512;

/// A parser message without the input's strings: serde quotes the values it rejects
/// (`invalid type: string "s3cret", expected a sequence`), and a secret given with the wrong
/// type would be printed. Double-quoted text becomes `"…"`; keys stay (serde puts them in
/// backticks). Control characters are escaped and the message is bounded.
pub(crate) fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE_CHARS));
    let mut chars = message.chars();
    let mut kept = 0;
    while let Some(c) = chars.next() {
        if kept >= MAX_MESSAGE_CHARS {
            out.push('…');
            break;
        }
        kept += 1;
        if c == '"' {
            // Skip to the closing quote (serde writes strings with `{:?}`, so inner quotes
            // are escaped).
            let mut escaped = false;
            for c in chars.by_ref() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => break,
                    _ => {}
                }
            }
            out.push_str("\"…\"");
        } else if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// ` (key `batch.max_queue_size`, line 2, column 18)` for an error at byte `offset`: the key
/// is the text before `=` on that line, prefixed with the last `[table]` header above it.
fn toml_place(text: &str, offset: usize) -> String {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_no = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or("");
    let table = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim());
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let shown = |s: &str| super::validate::truncate(s, 64).escape_debug().to_string();
    let key = match (table, key) {
        (Some(table), Some(key)) => format!("key `{}.{}`, ", shown(table), shown(key)),
        (None, Some(key)) => format!("key `{}`, ", shown(key)),
        _ => String::new(),
    };
    format!(" ({key}line {line_no}, column {column})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_removes_quoted_values_and_control_characters() {
        assert_eq!(
            redact(r#"invalid type: string "s3cr\"et", expected a sequence"#),
            r#"invalid type: string "…", expected a sequence"#
        );
        assert_eq!(redact("unknown field `x\ny`"), "unknown field `x\\ny`");
        assert!(redact(&"x".repeat(10_000)).chars().count() <= MAX_MESSAGE_CHARS + 1);
        assert_eq!(redact("unterminated \"abc"), "unterminated \"…\"");
    }
}
