//! Pulling from an OCI distribution registry over blocking HTTP (`ureq`, rustls).
//!
//! Every response is hostile until checked: documents are capped at 4 MiB before parsing,
//! digests are validated before they name files, every blob is hashed while it streams to disk
//! and must match the digest (and size) it was asked for, and a manifest fetched by tag must
//! match the registry's `Docker-Content-Digest`.

use std::io::Read;
use std::time::Duration;

use base64::Engine as _;
use shoal_model::manifest::image::ImageRef;
use ureq::config::RedirectAuthHeaders;
use ureq::http::Response;
use ureq::Body;

use super::document::{
    parse_document, select_platform, truncate, Descriptor, Document, ImageDigest, DOCKER_LIST,
    DOCKER_MANIFEST, MAX_DOCUMENT_BYTES, OCI_INDEX, OCI_MANIFEST,
};
use super::error::ImageError;
use super::store::{canonical_key, canonical_name, ImageStore, NewImage};
use super::{Image, Platform, PullPolicy, RegistryAuth, StoreConfig};

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
/// Token responses are small JSON objects.
const MAX_TOKEN_RESPONSE: u64 = 64 * 1024;

impl ImageStore {
    /// Makes `reference` available locally for `platform`, following `policy`: returns the
    /// stored image when the policy allows, pulls it from its registry otherwise.
    pub fn pull(
        &self,
        reference: &ImageRef,
        platform: &Platform,
        auth: &RegistryAuth,
        policy: &PullPolicy,
    ) -> Result<Image, ImageError> {
        match policy {
            PullPolicy::Never => {
                return self.resolve(reference).ok_or_else(|| ImageError::NotFound {
                    reference: canonical_key(reference),
                })
            }
            PullPolicy::IfNotPresent => {
                if let Some(image) = self.resolve(reference) {
                    self.mark_used(&image.digest)?;
                    return Ok(image);
                }
            }
            PullPolicy::Always => {}
        }
        let _gc = self.gc_shared();
        let key = canonical_key(reference);
        let mut client = Client::new(reference, auth, &self.config);
        tracing::info!(reference = %key, %platform, "pulling image");

        let wanted = reference
            .digest
            .clone()
            .unwrap_or_else(|| reference.tag_or_latest().to_string());
        let (bytes, content_type) = client.manifest(&wanted, None)?;
        let top_digest = ImageDigest::of(&bytes);
        let document = parse_document(&bytes, content_type.as_deref(), &key)?;
        let (manifest_digest, manifest_size, index_digest, manifest, check_platform) =
            match document {
                Document::Manifest(manifest) => {
                    (top_digest, bytes.len() as u64, None, manifest, true)
                }
                Document::Index(index) => {
                    let chosen = select_platform(&index, platform, &key)?.clone();
                    let digest = chosen.digest(&key)?;
                    let (bytes, content_type) = client.manifest(digest.as_str(), Some(&chosen))?;
                    let content_type = content_type.unwrap_or_else(|| chosen.media_type.clone());
                    let Document::Manifest(manifest) =
                        parse_document(&bytes, Some(&content_type), &key)?
                    else {
                        return Err(client.error(format!(
                        "the index entry for {platform} ({digest}) is another index, not a manifest"
                    )));
                    };
                    (
                        digest,
                        bytes.len() as u64,
                        Some(top_digest),
                        manifest,
                        false,
                    )
                }
            };

        self.check_layers_size(&manifest, &key)?;
        if manifest.config.size > MAX_DOCUMENT_BYTES {
            return Err(ImageError::TooLarge {
                what: "image config".into(),
                source_name: key,
                limit: MAX_DOCUMENT_BYTES,
                hint: "this is not an image config",
            });
        }
        for descriptor in std::iter::once(&manifest.config).chain(&manifest.layers) {
            self.fetch_blob(&mut client, descriptor, &key)?;
        }
        // The manifest goes in last: a stored manifest means its blobs were there.
        self.store_manifest(&mut client, &manifest_digest, manifest_size)?;

        let mut refs = vec![key.clone()];
        if let (Some(index), None) = (&index_digest, &reference.digest) {
            let (registry, repository) = canonical_name(reference);
            refs.push(format!("{registry}/{repository}@{index}"));
        }
        self.install(NewImage {
            manifest_digest,
            manifest_size,
            index_digest,
            manifest: &manifest,
            source: key,
            refs,
            platform: if check_platform { Some(platform) } else { None },
        })
    }

    fn fetch_blob(
        &self,
        client: &mut Client<'_>,
        descriptor: &Descriptor,
        key: &str,
    ) -> Result<(), ImageError> {
        let digest = descriptor.digest(key)?;
        if self.has_blob(&digest, Some(descriptor.size)) {
            tracing::debug!(blob = %digest, "blob already stored");
            return Ok(());
        }
        let mut response = client.get(&format!("blobs/{digest}"), None)?;
        let what = format!("blob {digest} of {key}");
        let mut reader = response
            .body_mut()
            .with_config()
            .limit(descriptor.size.saturating_add(1))
            .reader();
        self.write_blob(
            &mut reader,
            Some(&digest),
            Some(descriptor.size),
            descriptor.size,
            &what,
        )?;
        Ok(())
    }

    fn store_manifest(
        &self,
        client: &mut Client<'_>,
        digest: &ImageDigest,
        size: u64,
    ) -> Result<(), ImageError> {
        if self.has_blob(digest, Some(size)) {
            return Ok(());
        }
        let bytes = client
            .last_manifest
            .take()
            .ok_or_else(|| client.error("the manifest went missing".into()))?;
        self.write_blob(
            &mut bytes.as_slice(),
            Some(digest),
            Some(size),
            size,
            "manifest",
        )?;
        Ok(())
    }
}

/// One pull's conversation with one registry.
struct Client<'a> {
    agent: ureq::Agent,
    /// `http://127.0.0.1:5099/v2/busybox/`
    base: String,
    registry: String,
    repository: String,
    auth: &'a RegistryAuth,
    authorization: Option<String>,
    insecure_registries: Vec<String>,
    /// The platform manifest's bytes, stored once its blobs are in.
    last_manifest: Option<Vec<u8>>,
}

fn is_insecure(registry: &str, insecure_registries: &[String]) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => registry,
    };
    insecure_registries
        .iter()
        .any(|entry| entry == registry || entry == host)
}

impl<'a> Client<'a> {
    fn new(reference: &ImageRef, auth: &'a RegistryAuth, config: &StoreConfig) -> Client<'a> {
        let (registry, repository) = canonical_name(reference);
        let host = if registry == "docker.io" {
            "registry-1.docker.io".to_string()
        } else {
            registry.clone()
        };
        let insecure = is_insecure(&registry, &config.insecure_registries);
        let scheme = if insecure { "http" } else { "https" };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .https_only(!insecure)
            .max_redirects(5)
            .redirect_auth_headers(RedirectAuthHeaders::SameHost)
            .timeout_connect(Some(config.request_timeout))
            .timeout_recv_response(Some(config.request_timeout))
            .timeout_per_read(Some(config.request_timeout))
            .timeout_resolve(Some(Duration::from_secs(15)))
            .user_agent(concat!("shoal-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client {
            agent,
            base: format!("{scheme}://{host}/v2/{repository}/"),
            registry,
            repository,
            auth,
            authorization: None,
            insecure_registries: config.insecure_registries.clone(),
            last_manifest: None,
        }
    }

    fn error(&self, what: String) -> ImageError {
        ImageError::Registry {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            what,
        }
    }

    fn unauthorized(&self, what: String) -> ImageError {
        ImageError::Unauthorized {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            what,
        }
    }

    /// Fetches a manifest or index by tag or digest, checked against the digest asked for (or
    /// the registry's `Docker-Content-Digest`). Returns its bytes and content type.
    fn manifest(
        &mut self,
        reference: &str,
        descriptor: Option<&Descriptor>,
    ) -> Result<(Vec<u8>, Option<String>), ImageError> {
        let mut response = self.get(&format!("manifests/{reference}"), Some(MANIFEST_ACCEPT))?;
        let content_type = header(&response, "content-type");
        let announced = header(&response, "docker-content-digest");
        if let Some(length) =
            header(&response, "content-length").and_then(|l| l.parse::<u64>().ok())
        {
            if length > MAX_DOCUMENT_BYTES {
                return Err(self.too_large(reference));
            }
        }
        let mut bytes = Vec::new();
        response
            .body_mut()
            .with_config()
            .limit(MAX_DOCUMENT_BYTES + 1)
            .reader()
            .read_to_end(&mut bytes)
            .map_err(|e| {
                if e.to_string().contains("limit") {
                    self.too_large(reference)
                } else {
                    self.error(format!("reading manifest {reference} failed: {e}"))
                }
            })?;
        if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
            return Err(self.too_large(reference));
        }
        let actual = ImageDigest::of(&bytes);
        let expected = if reference.starts_with("sha256:") {
            Some(reference.to_string())
        } else {
            announced.filter(|d| d.starts_with("sha256:"))
        };
        if let Some(expected) = expected {
            if expected != actual.as_str() {
                return Err(ImageError::DigestMismatch {
                    what: format!(
                        "manifest {} from {}/{}",
                        truncate(reference),
                        self.registry,
                        self.repository
                    ),
                    expected: truncate(&expected),
                    actual: actual.to_string(),
                });
            }
        }
        if let Some(descriptor) = descriptor {
            if descriptor.size != bytes.len() as u64 {
                return Err(self.error(format!(
                    "manifest {reference} has {} bytes but the index says {}",
                    bytes.len(),
                    descriptor.size
                )));
            }
        }
        if !matches!(
            content_type
                .as_deref()
                .map(|c| c.split(';').next().unwrap_or(c).trim()),
            None | Some(
                OCI_MANIFEST | OCI_INDEX | DOCKER_MANIFEST | DOCKER_LIST | "application/json" | ""
            )
        ) {
            tracing::debug!(content_type = ?content_type, "unusual manifest content type");
        }
        self.last_manifest = Some(bytes.clone());
        Ok((bytes, content_type))
    }

    fn too_large(&self, reference: &str) -> ImageError {
        ImageError::TooLarge {
            what: format!("manifest {}", truncate(reference)),
            source_name: format!("{}/{}", self.registry, self.repository),
            limit: MAX_DOCUMENT_BYTES,
            hint: "this is not an image manifest",
        }
    }

    /// GET `<base><path>`, answering one authentication challenge. Only 200 comes back.
    fn get(&mut self, path: &str, accept: Option<&str>) -> Result<Response<Body>, ImageError> {
        let url = format!("{}{path}", self.base);
        for attempt in 0..2 {
            let mut request = self.agent.get(&url);
            if let Some(accept) = accept {
                request = request.header("Accept", accept);
            }
            if let Some(authorization) = &self.authorization {
                request = request.header("Authorization", authorization);
            }
            tracing::debug!(%url, attempt, "registry request");
            let response = request
                .call()
                .map_err(|e| self.error(format!("GET {url} failed: {e}")))?;
            let status = response.status().as_u16();
            tracing::debug!(%url, status, "registry answered");
            match status {
                200 => return Ok(response),
                401 if attempt == 0 => {
                    let challenge = header(&response, "www-authenticate").unwrap_or_default();
                    self.authenticate(&challenge)?;
                }
                401 | 403 => {
                    return Err(self.unauthorized(format!("GET {url} answered {status}")));
                }
                404 => {
                    let what = if path.starts_with("manifests/") {
                        format!(
                            "{} not found (GET {url} answered 404): check the image name and tag",
                            truncate(path.trim_start_matches("manifests/"))
                        )
                    } else {
                        format!(
                            "GET {url} answered 404: the registry lost a blob the manifest names"
                        )
                    };
                    return Err(self.error(what));
                }
                other => return Err(self.error(format!("GET {url} answered HTTP {other}"))),
            }
        }
        Err(self.unauthorized(format!("GET {url} still answered 401 after authenticating")))
    }

    /// Answers a `WWW-Authenticate` challenge: Basic with the credentials, or Bearer by getting
    /// a token from the realm (with the credentials, when there are some).
    fn authenticate(&mut self, challenge: &str) -> Result<(), ImageError> {
        let (scheme, params) = parse_challenge(challenge);
        let basic = match self.auth {
            RegistryAuth::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            RegistryAuth::Anonymous => None,
        };
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => {
                if self.authorization.is_some() || basic.is_none() {
                    return Err(self.unauthorized(
                        "the registry wants a user name and password and none were given".into(),
                    ));
                }
                self.authorization = basic;
                Ok(())
            }
            "bearer" => {
                let realm = params
                    .iter()
                    .find(|(k, _)| k == "realm")
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| self.unauthorized("the Bearer challenge has no realm".into()))?;
                // Plain HTTP only to a token service that is itself listed as insecure.
                let plain_ok = realm
                    .strip_prefix("http://")
                    .map(|rest| rest.split(['/', '?']).next().unwrap_or(rest))
                    .is_some_and(|host| is_insecure(host, &self.insecure_registries));
                if !(realm.starts_with("https://") || plain_ok) {
                    return Err(self.unauthorized(format!(
                        "the token service `{}` is not HTTPS; refusing to send credentials there",
                        truncate(&realm)
                    )));
                }
                let scope = params
                    .iter()
                    .find(|(k, _)| k == "scope")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| format!("repository:{}:pull", self.repository));
                let mut url = format!(
                    "{realm}{}scope={}",
                    if realm.contains('?') { '&' } else { '?' },
                    encode(&scope)
                );
                if let Some((_, service)) = params.iter().find(|(k, _)| k == "service") {
                    url.push_str(&format!("&service={}", encode(service)));
                }
                let mut request = self.agent.get(&url);
                if let Some(basic) = &basic {
                    request = request.header("Authorization", basic);
                }
                tracing::debug!(%url, "token request");
                let mut response = request.call().map_err(|e| {
                    self.unauthorized(format!("token request to {} failed: {e}", truncate(&realm)))
                })?;
                if response.status().as_u16() != 200 {
                    return Err(self.unauthorized(format!(
                        "the token service {} answered HTTP {}",
                        truncate(&realm),
                        response.status().as_u16()
                    )));
                }
                let mut bytes = Vec::new();
                response
                    .body_mut()
                    .with_config()
                    .limit(MAX_TOKEN_RESPONSE)
                    .reader()
                    .read_to_end(&mut bytes)
                    .map_err(|e| self.unauthorized(format!("reading the token failed: {e}")))?;
                let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                    self.unauthorized(format!("the token service answered invalid JSON: {e}"))
                })?;
                let token = value
                    .get("token")
                    .or_else(|| value.get("access_token"))
                    .and_then(|t| t.as_str())
                    .filter(|t| {
                        !t.is_empty()
                            && t.len() < 16 * 1024
                            && t.bytes().all(|b| b.is_ascii_graphic())
                    })
                    .ok_or_else(|| {
                        self.unauthorized("the token service answered no usable token".into())
                    })?;
                self.authorization = Some(format!("Bearer {token}"));
                Ok(())
            }
            _ => Err(self.unauthorized(format!(
                "the registry asks for authentication this agent does not speak: `{}`",
                truncate(challenge)
            ))),
        }
    }
}

fn header(response: &Response<Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `Bearer realm="https://auth",service="reg",scope="repository:a:pull"` → scheme and
/// parameters; quoted values may contain commas.
fn parse_challenge(challenge: &str) -> (String, Vec<(String, String)>) {
    let challenge = challenge.trim();
    let (scheme, rest) = challenge.split_once(' ').unwrap_or((challenge, ""));
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut escaped = false;
            for c in chars.by_ref() {
                match (escaped, c) {
                    (false, '\\') => escaped = true,
                    (false, '"') => break,
                    (_, c) => {
                        value.push(c);
                        escaped = false;
                    }
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        params.push((key.trim().to_ascii_lowercase(), value));
    }
    (scheme.to_string(), params)
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_are_split_into_realm_service_and_scope() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(scheme, "Bearer");
        assert_eq!(
            params,
            vec![
                ("realm".into(), "https://auth.example/token".into()),
                ("service".into(), "registry.example".into()),
                ("scope".into(), "repository:a/b:pull,push".into()),
            ]
        );
    }

    #[test]
    fn only_listed_registries_are_spoken_to_over_plain_http() {
        let config = StoreConfig::default().insecure_registries;
        assert!(is_insecure("127.0.0.1:5099", &config));
        assert!(is_insecure("localhost", &config));
        assert!(!is_insecure("registry.example:5000", &config));
        assert!(!is_insecure("127.0.0.1.evil.example", &config));
    }
}
