//! Latency percentiles, the one way every benchmark driver reports them.

/// The `p`th percentile (0–100) of `samples` by nearest rank on the sorted
/// samples (rounding the fractional index); NaN when there are none.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let index = ((p.clamp(0.0, 100.0) / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[index]
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_of_ten_samples() {
        let samples: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        assert_eq!(percentile(&samples, 0.0), 1.0);
        assert_eq!(percentile(&samples, 50.0), 6.0);
        assert_eq!(percentile(&samples, 99.0), 10.0);
        assert_eq!(percentile(&samples, 100.0), 10.0);
    }

    #[test]
    fn no_samples_give_nan() {
        assert!(percentile(&[], 50.0).is_nan());
    }
}
