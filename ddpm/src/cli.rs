//! A small command-line flag parser: `--name value`, `--name=value` and boolean
//! `--name`, with errors that name the flag. Hand-written because the program
//! needs only this much, and every flag's help lives next to its use.

use std::collections::BTreeMap;
use std::str::FromStr;

/// Flags that were given, checked against the flags a command knows.
#[derive(Debug)]
pub struct Flags {
    values: BTreeMap<String, Option<String>>,
}

/// A flag a command accepts: its name, whether it takes a value, and its help line.
pub struct Spec {
    /// Without the leading `--`.
    pub name: &'static str,
    /// `Some("N")` for a flag with a value (the placeholder shown in help).
    pub value: Option<&'static str>,
    /// One line of help, with the default.
    pub help: &'static str,
}

impl Flags {
    /// Parses `args` against `specs`; an unknown flag, a missing value or a stray
    /// positional argument is an error that says which.
    pub fn parse(args: &[String], specs: &[Spec]) -> Result<Flags, String> {
        let mut values = BTreeMap::new();
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            let Some(body) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument {arg:?} (flags start with --)"));
            };
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let spec = specs
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| format!("unknown flag --{name}"))?;
            let value = match (spec.value, inline) {
                (Some(_), Some(v)) => Some(v),
                (Some(placeholder), None) => {
                    i += 1;
                    Some(
                        args.get(i)
                            .cloned()
                            .ok_or_else(|| format!("--{name} needs a value ({placeholder})"))?,
                    )
                }
                (None, Some(_)) => return Err(format!("--{name} takes no value")),
                (None, None) => None,
            };
            if values.insert(name.to_string(), value).is_some() {
                return Err(format!("--{name} is given twice"));
            }
            i += 1;
        }
        Ok(Flags { values })
    }

    /// True when the boolean flag `name` was given.
    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// The raw value of `name`, if given.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.values.get(name).and_then(|v| v.as_deref())
    }

    /// The value of `name` parsed as `T`, or `default`; a value that does not parse
    /// is an error naming the flag and the value.
    pub fn get<T: FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.text(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{name}: cannot read {v:?}")),
        }
    }

    /// Like [`Flags::get`], and the value must satisfy `ok` (described by `what`).
    pub fn checked<T: FromStr + Copy>(
        &self,
        name: &str,
        default: T,
        what: &str,
        ok: impl Fn(T) -> bool,
    ) -> Result<T, String> {
        let v = self.get(name, default)?;
        if ok(v) {
            Ok(v)
        } else {
            Err(format!("--{name} must be {what}"))
        }
    }
}

/// The help text of a command: a usage line, then one line per flag.
pub fn help(usage: &str, specs: &[Spec]) -> String {
    let mut out = format!("{usage}\n\nFlags:\n");
    for s in specs {
        let left = match s.value {
            Some(v) => format!("--{} {v}", s.name),
            None => format!("--{}", s.name),
        };
        out.push_str(&format!("  {left:<26} {}\n", s.help));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[Spec] = &[
        Spec {
            name: "steps",
            value: Some("N"),
            help: "steps",
        },
        Spec {
            name: "resume",
            value: None,
            help: "resume",
        },
    ];

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn values_booleans_and_errors() {
        let f = Flags::parse(&args(&["--steps", "5", "--resume"]), SPECS).unwrap();
        assert_eq!((f.get("steps", 0usize).unwrap(), f.has("resume")), (5, true));
        let f = Flags::parse(&args(&["--steps=7"]), SPECS).unwrap();
        assert_eq!(f.get("steps", 0usize).unwrap(), 7);
        assert_eq!(
            Flags::parse(&args(&["--bogus"]), SPECS).unwrap_err(),
            "unknown flag --bogus"
        );
        assert!(Flags::parse(&args(&["--steps"]), SPECS)
            .unwrap_err()
            .contains("needs a value"));
        assert!(Flags::parse(&args(&["--resume=1"]), SPECS)
            .unwrap_err()
            .contains("takes no value"));
        assert!(Flags::parse(&args(&["x"]), SPECS)
            .unwrap_err()
            .contains("unexpected argument"));
        assert!(Flags::parse(&args(&["--steps", "1", "--steps", "2"]), SPECS)
            .unwrap_err()
            .contains("twice"));
        let f = Flags::parse(&args(&["--steps", "x"]), SPECS).unwrap();
        assert_eq!(f.get("steps", 0usize).unwrap_err(), "--steps: cannot read \"x\"");
        assert!(f.checked("resume", 0usize, "positive", |v| v > 0).is_err());
    }
}
