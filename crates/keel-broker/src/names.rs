use crate::{BrokerError, Result};

/// Kafka's longest topic name: 255 minus room for a partition suffix and ".deleted".
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// Kafka's rules for topic names: 1 to 249 of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(BrokerError::InvalidTopic("the name is empty".into()));
    }
    if name == "." || name == ".." {
        return Err(BrokerError::InvalidTopic(format!(
            "{name:?} is not allowed"
        )));
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(BrokerError::InvalidTopic(format!(
            "the name is {} characters, the limit is {TOPIC_NAME_BYTES_MAX}",
            name.len()
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(BrokerError::InvalidTopic(format!(
            "{name:?} contains {c:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_topic_name_rules() {
        for ok in [
            "a",
            "orders.v1",
            "__consumer_offsets",
            "A-b_c.9",
            &"x".repeat(249),
        ] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a b",
            "naïve",
            "a\0",
            &"x".repeat(250),
        ] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }
}
