//! Reading a Prometheus text scrape, as the stories check components' metrics.

/// The value of the series `name{labels}` where every `label="value"` pair
/// of `want` is among its labels (summed over the series that match);
/// `None` when no series matches.
pub fn value(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, v)) = line.rsplit_once(' ') else {
            continue;
        };
        let (series_name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        if want
            .iter()
            .all(|(k, val)| labels.split(',').any(|l| l == format!("{k}=\"{val}\"")))
        {
            *total.get_or_insert(0.0) += v.parse::<f64>().unwrap_or(0.0);
        }
    }
    total
}
