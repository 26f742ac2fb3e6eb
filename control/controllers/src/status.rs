//! Writing status fields as Kubernetes encodes them.

use serde_json::Value;

/// A count of a Go field tagged `omitempty`: absent when zero. In a merge
/// patch the `null` removes a value written earlier, so the stored status
/// reads as Kubernetes' would.
pub fn omit_zero(n: i32) -> Value {
    if n == 0 {
        Value::Null
    } else {
        Value::from(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_absent() {
        assert_eq!(omit_zero(0), Value::Null);
        assert_eq!(omit_zero(3), Value::from(3));
    }
}
