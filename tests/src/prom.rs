//! A strict parser of the Prometheus text exposition format 0.0.4, written
//! from the format's description (not shared with the gateway), and a
//! scrape helper for `/metrics`.
//!
//! It checks what a Prometheus server relies on: `# HELP`/`# TYPE` before a
//! family's samples, samples of a family kept together, valid names, label
//! escaping, parseable values, and for histograms cumulative buckets ending
//! in `le="+Inf"` equal to `_count`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name (`x_bucket` for a histogram's bucket).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// A metric family: its type, help and samples.
#[derive(Debug, Clone, Default)]
pub struct Family {
    /// `counter`, `gauge`, `histogram`, `summary` or `untyped`.
    pub kind: String,
    /// The `# HELP` text, unescaped.
    pub help: String,
    /// Its samples, in order.
    pub samples: Vec<Sample>,
}

/// A parsed exposition.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// Families by name.
    pub families: BTreeMap<String, Family>,
}

/// A histogram's series: cumulative buckets, sum and count.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// `(le, cumulative count)` in order, `+Inf` last.
    pub buckets: Vec<(f64, f64)>,
    /// `_sum`.
    pub sum: f64,
    /// `_count`.
    pub count: f64,
}

impl Histogram {
    /// Observations at or below `le`.
    pub fn at_or_below(&self, le: f64) -> f64 {
        self.buckets
            .iter()
            .find(|(b, _)| *b >= le)
            .map_or(self.count, |(_, c)| *c)
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        t => t.parse::<f64>().map_err(|_| format!("bad value {t:?}")),
    }
}

/// Parses `name{labels} value`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| format!("no value in {line:?}"))?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        // Where the closing brace is.
        let end: usize;
        loop {
            let start = match chars.peek() {
                Some((i, '}')) => {
                    end = *i;
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
            let eq = eq.ok_or_else(|| format!("label without = in {line:?}"))?;
            let key = &after[start..eq];
            if !valid_label_name(key) {
                return Err(format!("bad label name {key:?} in {line:?}"));
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label value not quoted in {line:?}"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => return Err(format!("bad escape {other:?} in {line:?}")),
                    },
                    Some((_, '"')) => break,
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("unterminated label value in {line:?}")),
                }
            }
            if labels.insert(key.to_owned(), value).is_some() {
                return Err(format!("label {key} twice in {line:?}"));
            }
            match chars.next() {
                Some((_, ',')) => {}
                Some((i, '}')) => {
                    end = i;
                    break;
                }
                other => return Err(format!("expected , or }} not {other:?} in {line:?}")),
            }
        }
        rest = &after[end + 1..];
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| format!("no space before the value in {line:?}"))?;
    // An optional timestamp may follow the value.
    let value_text = rest.split(' ').next().unwrap_or("");
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value: parse_value(value_text)?,
    })
}

fn unescape_help(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some(o) => {
                    out.push('\\');
                    out.push(o);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `sample` may belong to family `family` of type `kind`.
fn belongs(sample: &str, family: &str, kind: &str) -> bool {
    if sample == family {
        return kind != "histogram";
    }
    let suffix = sample.strip_prefix(family);
    match kind {
        "histogram" => matches!(suffix, Some("_bucket" | "_sum" | "_count")),
        "summary" => matches!(suffix, Some("_sum" | "_count")),
        _ => false,
    }
}

impl Scrape {
    /// Parses and checks an exposition; the error names the offending line.
    pub fn parse(text: &str) -> Result<Scrape, String> {
        let mut scrape = Scrape::default();
        let mut current: Option<String> = None;
        let mut help: BTreeMap<String, String> = BTreeMap::new();
        for line in text.lines() {
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
                if !valid_name(name) {
                    return Err(format!("bad name in {line:?}"));
                }
                if scrape.families.contains_key(name) || help.contains_key(name) {
                    return Err(format!("family {name} appears twice"));
                }
                help.insert(name.to_owned(), unescape_help(text));
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .ok_or_else(|| format!("TYPE without a type: {line:?}"))?;
                if !matches!(
                    kind,
                    "counter" | "gauge" | "histogram" | "summary" | "untyped"
                ) {
                    return Err(format!("unknown type in {line:?}"));
                }
                if scrape.families.contains_key(name) {
                    return Err(format!("family {name} appears twice"));
                }
                scrape.families.insert(
                    name.to_owned(),
                    Family {
                        kind: kind.to_owned(),
                        help: help.get(name).cloned().unwrap_or_default(),
                        samples: Vec::new(),
                    },
                );
                current = Some(name.to_owned());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let sample = parse_sample(line)?;
            let family_name = current
                .clone()
                .ok_or_else(|| format!("sample before any TYPE: {line:?}"))?;
            let family = scrape
                .families
                .get_mut(&family_name)
                .expect("current family");
            if !belongs(&sample.name, &family_name, &family.kind) {
                return Err(format!(
                    "sample {line:?} is outside family {family_name} ({})",
                    family.kind
                ));
            }
            if family.kind == "counter" && !family_name.ends_with("_total") {
                return Err(format!("counter {family_name} does not end in _total"));
            }
            family.samples.push(sample);
        }
        for name in help.keys() {
            if !scrape.families.contains_key(name) {
                return Err(format!("HELP without TYPE for {name}"));
            }
        }
        for (name, f) in &scrape.families {
            if f.help.is_empty() {
                return Err(format!("family {name} has no HELP"));
            }
            if f.kind == "histogram" {
                scrape.check_histograms(name)?;
            }
        }
        Ok(scrape)
    }

    /// Every histogram series of `name`: buckets non-decreasing, ending with
    /// `+Inf`, which equals `_count`.
    fn check_histograms(&self, name: &str) -> Result<(), String> {
        let f = &self.families[name];
        let mut series: BTreeMap<Vec<(String, String)>, Vec<&Sample>> = BTreeMap::new();
        for s in &f.samples {
            if s.name.ends_with("_bucket") {
                let key: Vec<(String, String)> = s
                    .labels
                    .iter()
                    .filter(|(k, _)| *k != "le")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                series.entry(key).or_default().push(s);
            }
        }
        for (labels, buckets) in series {
            let mut last_le = f64::NEG_INFINITY;
            let mut last = 0.0;
            for b in &buckets {
                let le = parse_value(b.labels.get("le").ok_or("bucket without le")?)?;
                if le <= last_le || b.value < last {
                    return Err(format!("{name}{labels:?}: buckets not cumulative"));
                }
                last_le = le;
                last = b.value;
            }
            if last_le != f64::INFINITY {
                return Err(format!("{name}{labels:?}: no +Inf bucket"));
            }
            let map: BTreeMap<String, String> = labels.into_iter().collect();
            let count = self
                .value(&format!("{name}_count"), &map)
                .ok_or_else(|| format!("{name}: no _count"))?;
            if count != last {
                return Err(format!("{name}{map:?}: _count {count} != +Inf {last}"));
            }
            self.value(&format!("{name}_sum"), &map)
                .ok_or_else(|| format!("{name}: no _sum"))?;
        }
        Ok(())
    }

    fn value(&self, sample: &str, labels: &BTreeMap<String, String>) -> Option<f64> {
        self.families
            .values()
            .flat_map(|f| &f.samples)
            .find(|s| s.name == sample && &s.labels == labels)
            .map(|s| s.value)
    }

    /// The value of sample `name` whose labels are exactly `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let map: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.value(name, &map)
    }

    /// Like [`Scrape::get`], 0 when the series is absent.
    pub fn val(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// Sum of every sample `name` whose labels include `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.families
            .values()
            .flat_map(|f| &f.samples)
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// The histogram `name` with labels `labels` (besides `le`).
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Option<Histogram> {
        let map: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let bucket = format!("{name}_bucket");
        let buckets: Vec<(f64, f64)> = self
            .families
            .get(name)?
            .samples
            .iter()
            .filter(|s| s.name == bucket)
            .filter(|s| {
                let mut l = s.labels.clone();
                l.remove("le");
                l == map
            })
            .filter_map(|s| Some((parse_value(s.labels.get("le")?).ok()?, s.value)))
            .collect();
        if buckets.is_empty() {
            return None;
        }
        Some(Histogram {
            buckets,
            sum: self.value(&format!("{name}_sum"), &map)?,
            count: self.value(&format!("{name}_count"), &map)?,
        })
    }
}

/// `GET /metrics` from the gateway at `http`: the parsed exposition (panics
/// with the text when it does not parse, or on a status other than 200).
pub async fn scrape(http: SocketAddr) -> Scrape {
    let reply = crate::aws::http_request(http, "GET", "/metrics", "")
        .await
        .expect("GET /metrics");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let ct = reply.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("text/plain") && ct.contains("version=0.0.4"),
        "content-type {ct}"
    );
    match Scrape::parse(&reply.body) {
        Ok(s) => s,
        Err(e) => panic!("/metrics does not parse: {e}\n{}", reply.body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_families_labels_escapes_and_histograms() {
        let text = "# HELP a_total A \\\\ thing.\n# TYPE a_total counter\n\
            a_total{q=\"x\\\"y\\\\z\\nw\",p=\"1\"} 3\n\
            # HELP h H.\n# TYPE h histogram\n\
            h_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 4\nh_sum 2.5\nh_count 4\n";
        let s = Scrape::parse(text).unwrap();
        assert_eq!(s.families["a_total"].help, "A \\ thing.");
        assert_eq!(
            s.get("a_total", &[("p", "1"), ("q", "x\"y\\z\nw")]),
            Some(3.0)
        );
        let h = s.histogram("h", &[]).unwrap();
        assert_eq!(h.buckets, vec![(0.5, 1.0), (f64::INFINITY, 4.0)]);
        assert_eq!((h.sum, h.count), (2.5, 4.0));
        assert_eq!(h.at_or_below(0.1), 1.0);
    }

    #[test]
    fn rejects_what_prometheus_would_reject() {
        for bad in [
            "a 1\n",                                  // no TYPE
            "# HELP a x\n# TYPE a gauge\nb 1\n",      // outside family
            "# HELP a x\n# TYPE a gauge\na{l=x} 1\n", // unquoted
            "# HELP a x\n# TYPE a gauge\na one\n",    // bad value
            "# HELP a x\n# TYPE a counter\na 1\n",    // counter without _total
            "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 1\n",
            "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 0\nh_count 2\n",
            "# HELP a x\n# TYPE a gauge\na 1\n# HELP a x\n# TYPE a gauge\n", // twice
            "# TYPE a gauge\na 1\n",                                         // no HELP
        ] {
            assert!(Scrape::parse(bad).is_err(), "accepted {bad:?}");
        }
    }
}
