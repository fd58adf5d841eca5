//! A strict reader of the Prometheus text exposition format (0.0.4), for
//! tests and lab tools: every line must be a comment, `# HELP`, `# TYPE` or
//! a valid sample; every sample belongs to a family with HELP and TYPE
//! given before it; histograms have cumulative buckets in increasing `le`
//! order per series, a `+Inf` bucket equal to `_count`, and a `_sum`.
//!
//! Written independently of the agent's encoder (`crate::metrics`), so the
//! tests check the encoder against the format, not against itself.
//!
//! Owns nothing. Calls nothing.

use std::collections::BTreeMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One family: its type, help and samples (in order).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Family {
    pub kind: String,
    pub help: String,
    pub samples: Vec<Sample>,
}

/// Every family of an exposition, by name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Exposition {
    pub families: BTreeMap<String, Family>,
}

impl Exposition {
    /// Sum of the samples named `name` whose labels include `want`.
    pub fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.families
            .values()
            .flat_map(|f| &f.samples)
            .filter(|s| s.name == name)
            .filter(|s| {
                want.iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }
}

fn metric_name_ok(n: &str) -> bool {
    let mut b = n.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

fn label_name_ok(n: &str) -> bool {
    let mut b = n.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse::<f64>().map_err(|_| format!("bad value {s:?}")),
    }
}

/// `name{a="b",...} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| format!("no value in {line:?}"))?;
    let name = &line[..name_end];
    if !metric_name_ok(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let close;
        loop {
            // label name
            let start = match chars.peek() {
                Some((_, '}')) => {
                    close = chars.next().map(|(i, _)| i);
                    break;
                }
                Some((i, _)) => *i,
                None => return Err(format!("unterminated labels in {line:?}")),
            };
            let mut eq = None;
            for (i, c) in chars.by_ref() {
                if c == '=' {
                    eq = Some(i);
                    break;
                }
            }
            let eq = eq.ok_or_else(|| format!("label without '=' in {line:?}"))?;
            let lname = &r[start..eq];
            if !label_name_ok(lname) {
                return Err(format!("bad label name {lname:?} in {line:?}"));
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label value not quoted in {line:?}"));
            }
            let mut val = String::new();
            let mut done = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('\\') => val.push('\\'),
                        Some('"') => val.push('"'),
                        Some('n') => val.push('\n'),
                        _ => return Err(format!("bad escape in {line:?}")),
                    },
                    '"' => {
                        done = true;
                        break;
                    }
                    '\n' => return Err("newline in label value".into()),
                    c => val.push(c),
                }
            }
            if !done {
                return Err(format!("unterminated label value in {line:?}"));
            }
            if labels.insert(lname.to_string(), val).is_some() {
                return Err(format!("label {lname} twice in {line:?}"));
            }
            match chars.next() {
                Some((_, ',')) => {}
                Some((i, '}')) => {
                    close = Some(i);
                    break;
                }
                _ => return Err(format!("expected ',' or '}}' in {line:?}")),
            }
        }
        let close = close.ok_or_else(|| format!("unterminated labels in {line:?}"))?;
        rest = &r[close + 1..];
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| format!("no space before the value in {line:?}"))?;
    let mut words = rest.split(' ');
    let value = parse_value(words.next().unwrap_or_default())?;
    if let Some(ts) = words.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp in {line:?}"))?;
    }
    if words.next().is_some() {
        return Err(format!("trailing text in {line:?}"));
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// The family a sample belongs to, given the types declared so far.
fn family_of<'a>(name: &'a str, fams: &BTreeMap<String, Family>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if fams
                .get(base)
                .is_some_and(|f| f.kind == "histogram" || f.kind == "summary")
            {
                return base;
            }
        }
    }
    name
}

/// Read and check a whole exposition.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut fams: BTreeMap<String, Family> = BTreeMap::new();
    let mut help_seen: BTreeMap<String, bool> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}", n + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            let c = c.trim_start();
            if let Some(h) = c.strip_prefix("HELP ") {
                let (name, help) = h.split_once(' ').unwrap_or((h, ""));
                if !metric_name_ok(name) {
                    return Err(at(format!("bad name in HELP {name:?}")));
                }
                if help_seen.insert(name.to_string(), true).is_some() {
                    return Err(at(format!("second HELP for {name}")));
                }
                fams.entry(name.to_string()).or_default().help = help.to_string();
            } else if let Some(t) = c.strip_prefix("TYPE ") {
                let (name, kind) = t
                    .split_once(' ')
                    .ok_or_else(|| at("TYPE without a type".into()))?;
                if !matches!(
                    kind,
                    "counter" | "gauge" | "histogram" | "summary" | "untyped"
                ) {
                    return Err(at(format!("unknown type {kind:?}")));
                }
                let f = fams.entry(name.to_string()).or_default();
                if !f.kind.is_empty() {
                    return Err(at(format!("second TYPE for {name}")));
                }
                if !f.samples.is_empty() {
                    return Err(at(format!("TYPE for {name} after its samples")));
                }
                f.kind = kind.to_string();
            }
            continue;
        }
        let s = parse_sample(line).map_err(at)?;
        let fam = family_of(&s.name, &fams).to_string();
        let f = fams
            .get_mut(&fam)
            .ok_or_else(|| at(format!("sample {} before its HELP/TYPE", s.name)))?;
        if f.kind.is_empty() || !help_seen.contains_key(&fam) {
            return Err(at(format!("family {fam} lacks HELP or TYPE")));
        }
        if f.kind == "histogram" && s.name == fam {
            return Err(at(format!("histogram {fam} has a plain sample")));
        }
        f.samples.push(s);
    }
    for (name, f) in &fams {
        if f.kind.is_empty() || !help_seen.contains_key(name) {
            return Err(format!("family {name} lacks HELP or TYPE"));
        }
        if f.kind == "histogram" {
            check_histogram(name, f)?;
        }
    }
    Ok(Exposition { families: fams })
}

fn check_histogram(name: &str, f: &Family) -> Result<(), String> {
    type Key = BTreeMap<String, String>;
    let mut buckets: BTreeMap<Key, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<Key, f64> = BTreeMap::new();
    let mut sums: BTreeMap<Key, f64> = BTreeMap::new();
    for s in &f.samples {
        let mut key = s.labels.clone();
        if s.name.ends_with("_bucket") {
            let le = key
                .remove("le")
                .ok_or_else(|| format!("{name}: bucket without le"))?;
            let le = parse_value(&le)?;
            buckets.entry(key).or_default().push((le, s.value));
        } else if s.name.ends_with("_count") {
            counts.insert(key, s.value);
        } else {
            sums.insert(key, s.value);
        }
    }
    if buckets.is_empty() {
        return Err(format!("{name}: no buckets"));
    }
    for (key, b) in &buckets {
        for w in b.windows(2) {
            if w[1].0 <= w[0].0 {
                return Err(format!("{name}{key:?}: le not increasing"));
            }
            if w[1].1 < w[0].1 {
                return Err(format!("{name}{key:?}: buckets not cumulative"));
            }
        }
        let last = b.last().copied().unwrap_or_default();
        if last.0 != f64::INFINITY {
            return Err(format!("{name}{key:?}: no +Inf bucket"));
        }
        match counts.get(key) {
            Some(c) if *c == last.1 => {}
            other => {
                return Err(format!(
                    "{name}{key:?}: +Inf bucket {} != _count {other:?}",
                    last.1
                ))
            }
        }
        if !sums.contains_key(key) {
            return Err(format!("{name}{key:?}: no _sum"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_valid_exposition() {
        let t = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\"} 3\n\
                 # HELP h H.\n# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 2\n\
                 h_sum 0.3\nh_count 2\n";
        let e = parse(t).unwrap();
        assert_eq!(e.sum("a_total", &[("x", "1")]), 3.0);
        assert_eq!(e.families["a_total"].samples[0].labels["y"], "q\"");
        assert_eq!(e.sum("h_count", &[]), 2.0);
    }

    #[test]
    fn refuses_broken_ones() {
        for bad in [
            "a 1\n",                                            // no HELP/TYPE
            "# HELP a x\n# TYPE a gauge\na{b=1} 1\n",           // unquoted
            "# HELP a x\n# TYPE a gauge\na 1 2 3\n",            // trailing
            "# HELP a x\n# TYPE a gauge\na one\n",              // value
            "# HELP a x\n# TYPE a wobble\n",                    // type
            "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 1\n",
            "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0\nh_count 3\n",
            "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 0\nh_count 1\n",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
