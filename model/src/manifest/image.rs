//! Image references: `[registry[:port]/]repository[:tag][@sha256:<64 hex>]`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A parsed, validated image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageRef {
    /// `host[:port]`, when the reference names one.
    pub registry: Option<String>,
    /// Lower-case path components separated by `/`.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<64 lower-case hex>`.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses and validates a reference, saying what is wrong when it is not one.
    pub fn parse(text: &str) -> Result<ImageRef, String> {
        if text.is_empty() {
            return Err("the image reference is empty".into());
        }
        if text.len() > 512 {
            return Err("the image reference is longer than 512 characters".into());
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                let hex = digest.strip_prefix("sha256:").ok_or_else(|| {
                    format!("`{digest}` is not a digest: use `sha256:` followed by 64 hex digits")
                })?;
                if hex.len() != 64
                    || !hex
                        .chars()
                        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
                {
                    return Err(format!(
                        "`{digest}` is not a digest: use `sha256:` followed by 64 lower-case hex digits"
                    ));
                }
                (rest, Some(digest.to_string()))
            }
            None => (text, None),
        };
        // A registry is the first component when it looks like a host: has a dot or a
        // port, or is `localhost`.
        let (registry, path) = match rest.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (Some(first.to_string()), path)
            }
            _ => (None, rest),
        };
        if let Some(host) = &registry {
            validate_host(host)?;
        }
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) => (repo, Some(tag.to_string())),
            None => (path, None),
        };
        validate_repository(repository)?;
        if let Some(tag) = &tag {
            let valid = !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                && !tag.starts_with(['.', '-']);
            if !valid {
                return Err(format!(
                    "`{tag}` is not a valid tag: use letters, digits, `_`, `.` and `-` (at most 128, not starting with `.` or `-`)"
                ));
            }
        }
        Ok(ImageRef {
            registry,
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// The tag to pull when neither tag nor digest is given.
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or("latest")
    }
}

fn validate_host(host: &str) -> Result<(), String> {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    if let Some(port) = port {
        if port.parse::<u16>().map(|p| p == 0).unwrap_or(true) {
            return Err(format!(
                "`{host}` has an invalid port: use a number from 1 to 65535"
            ));
        }
    }
    let valid = !name.is_empty()
        && name.split('.').all(|part| {
            !part.is_empty()
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        });
    if valid {
        Ok(())
    } else {
        Err(format!("`{host}` is not a valid registry host"))
    }
}

fn validate_repository(repository: &str) -> Result<(), String> {
    let component_ok = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            && part.starts_with(|c: char| c.is_ascii_alphanumeric())
            && part.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    if repository.is_empty() || !repository.split('/').all(component_ok) {
        return Err(format!(
            "`{repository}` is not a valid repository: use lower-case letters, digits and `._-`, in components separated by `/`"
        ));
    }
    Ok(())
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(registry) = &self.registry {
            write!(f, "{registry}/")?;
        }
        write!(f, "{}", self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_into_registry_repository_tag_and_digest() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let full = format!("127.0.0.1:5099/lib/busybox:1.36@{digest}");
        let image = ImageRef::parse(&full).expect("valid");
        assert_eq!(image.registry.as_deref(), Some("127.0.0.1:5099"));
        assert_eq!(image.repository, "lib/busybox");
        assert_eq!(image.tag.as_deref(), Some("1.36"));
        assert_eq!(image.digest.as_deref(), Some(digest.as_str()));
        assert_eq!(image.to_string(), full);

        let plain = ImageRef::parse("busybox").expect("valid");
        assert_eq!((plain.registry, plain.tag), (None, None));
        let local = ImageRef::parse("localhost/hello:v1").expect("valid");
        assert_eq!(local.registry.as_deref(), Some("localhost"));
    }

    #[test]
    fn malformed_references_are_refused_with_a_reason() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox@sha256:abc",
            "busybox@md5:00",
            "reg.example:99999/busybox",
            "a//b",
            "-x",
            "busybox:-tag",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
