//! `[serve.console]`: who signs the identity tokens the console trusts,
//! and which claims make which role.

use serde::Deserialize;

/// What a signed-in person may do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Reads every page.
    Viewer,
    /// Also releases quarantined objects.
    Releaser,
    /// Also makes API keys.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Releaser => "releaser",
            Role::Admin => "admin",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "viewer" => Some(Role::Viewer),
            "releaser" => Some(Role::Releaser),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// `[serve.console]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConsoleConfig {
    /// The ARN of the load balancer that authenticates users: the
    /// `signer` every accepted token names.
    pub signer: String,
    /// Where the load balancer's public keys are, by `kid` (appended).
    /// Default: the signer's region's endpoint,
    /// `https://public-keys.auth.elb.REGION.amazonaws.com/`.
    pub key_url: Option<String>,
    /// The claim that lists a user's groups (`groups`, or
    /// `cognito:groups` behind a Cognito user pool).
    #[serde(default = "ConsoleConfig::default_group_claim")]
    pub group_claim: String,
    /// Claims to roles; a user gets the highest role any entry gives.
    #[serde(default)]
    pub roles: Vec<RoleGrant>,
}

/// One `[[serve.console.roles]]` entry: `role` for anyone in one of
/// `groups` or with an email address in one of `email-domains`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RoleGrant {
    pub role: Role,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub email_domains: Vec<String>,
    /// Individual users, by email address or `sub`.
    #[serde(default)]
    pub users: Vec<String>,
}

/// What the token says about who signed in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub groups: Vec<String>,
}

impl Claims {
    /// The address, when the provider says it verified it: an
    /// unverified one is whatever the user typed, maybe someone else's.
    pub fn verified_email(&self) -> Option<&str> {
        self.email.as_deref().filter(|_| self.email_verified)
    }

    /// How people, the audit trail and form tokens name this user: the
    /// verified address, else the provider's subject.
    pub fn name(&self) -> String {
        self.verified_email().unwrap_or(&self.subject).to_owned()
    }
}

impl ConsoleConfig {
    fn default_group_claim() -> String {
        "groups".into()
    }

    /// Checks what can be checked without the network; the error names
    /// the field.
    pub fn validate(&self) -> Result<(), String> {
        let arn = self.signer.strip_prefix("arn:").unwrap_or_default();
        if !arn.contains(":elasticloadbalancing:") {
            return Err(format!(
                "[serve.console] signer `{}`: not a load balancer ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:loadbalancer/app/NAME/ID)",
                self.signer
            ));
        }
        if let Some(url) = &self.key_url
            && !(url.starts_with("https://") || url.starts_with("http://127.0.0.1:"))
        {
            return Err(format!(
                "[serve.console] key-url `{url}`: https only (http is accepted on 127.0.0.1 for tests)"
            ));
        }
        for (index, grant) in self.roles.iter().enumerate() {
            if grant.groups.is_empty() && grant.email_domains.is_empty() && grant.users.is_empty() {
                return Err(format!(
                    "[serve.console] roles[{index}] ({}): names no groups, email-domains or users",
                    grant.role.as_str()
                ));
            }
            if let Some(domain) = grant.email_domains.iter().find(|d| d.is_empty() || d.contains('@')) {
                return Err(format!(
                    "[serve.console] roles[{index}] email-domains: `{domain}` is not a domain (example.com)"
                ));
            }
        }
        Ok(())
    }

    /// The region's public-key endpoint, or `key-url`.
    pub fn key_url(&self) -> String {
        if let Some(url) = &self.key_url {
            return if url.ends_with('/') {
                url.clone()
            } else {
                format!("{url}/")
            };
        }
        let region = self.signer.split(':').nth(3).unwrap_or_default();
        format!("https://public-keys.auth.elb.{region}.amazonaws.com/")
    }

    /// The highest role the grants give `claims`; `None`: signed in, but
    /// allowed nothing.
    pub fn role_of(&self, claims: &Claims) -> Option<Role> {
        // An email domain proves membership only when the provider says
        // it verified the address.
        let domain = claims
            .verified_email()
            .and_then(|email| email.rsplit_once('@'))
            .map(|(_, domain)| domain.to_ascii_lowercase());
        self.roles
            .iter()
            .filter(|grant| {
                grant.groups.iter().any(|g| claims.groups.contains(g))
                    || grant
                        .email_domains
                        .iter()
                        .any(|d| domain.as_deref() == Some(d.to_ascii_lowercase().as_str()))
                    || grant
                        .users
                        .iter()
                        .any(|u| *u == claims.subject || claims.verified_email() == Some(u.as_str()))
            })
            .map(|grant| grant.role)
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(roles: Vec<RoleGrant>) -> ConsoleConfig {
        ConsoleConfig {
            signer: "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/bs/50dc6c495c0c9188".into(),
            key_url: None,
            group_claim: "groups".into(),
            roles,
        }
    }

    fn grant(role: Role, groups: &[&str], domains: &[&str]) -> RoleGrant {
        RoleGrant {
            role,
            groups: groups.iter().map(|s| s.to_string()).collect(),
            email_domains: domains.iter().map(|s| s.to_string()).collect(),
            users: vec![],
        }
    }

    #[test]
    fn the_highest_matching_grant_wins_and_no_match_is_no_role() {
        let config = config(vec![
            grant(Role::Viewer, &[], &["example.com"]),
            grant(Role::Releaser, &["secops"], &[]),
        ]);
        let mut claims = Claims {
            subject: "u1".into(),
            email: Some("ana@Example.com".into()),
            email_verified: true,
            groups: vec!["secops".into()],
        };
        assert_eq!(config.role_of(&claims), Some(Role::Releaser));
        claims.groups.clear();
        assert_eq!(config.role_of(&claims), Some(Role::Viewer));
        // An unverified address proves nothing about the domain.
        claims.email_verified = false;
        assert_eq!(config.role_of(&claims), None);
        claims.email = Some("ana@example.com.evil.test".into());
        claims.email_verified = true;
        assert_eq!(config.role_of(&claims), None);
    }

    #[test]
    fn a_user_named_by_address_needs_it_verified() {
        let config = config(vec![RoleGrant {
            role: Role::Admin,
            groups: vec![],
            email_domains: vec![],
            users: vec!["ana@example.com".into()],
        }]);
        let mut claims = Claims {
            subject: "attacker-sub".into(),
            email: Some("ana@example.com".into()),
            email_verified: false,
            groups: vec![],
        };
        assert_eq!(config.role_of(&claims), None, "an address anyone can type");
        assert_eq!(
            claims.name(),
            "attacker-sub",
            "nor does it name them in the audit trail"
        );
        claims.email_verified = true;
        assert_eq!(config.role_of(&claims), Some(Role::Admin));
        assert_eq!(claims.name(), "ana@example.com");
    }

    #[test]
    fn the_key_endpoint_is_the_signers_region_unless_set() {
        assert_eq!(
            config(vec![]).key_url(),
            "https://public-keys.auth.elb.eu-west-1.amazonaws.com/"
        );
        let mut local = config(vec![]);
        local.key_url = Some("http://127.0.0.1:9000".into());
        assert_eq!(local.key_url(), "http://127.0.0.1:9000/");
        local.key_url = Some("http://keys.example.com/".into());
        assert!(local.validate().unwrap_err().contains("https only"));
    }

    #[test]
    fn a_grant_that_names_nobody_and_a_bad_signer_are_refused() {
        let err = config(vec![grant(Role::Admin, &[], &[])]).validate().unwrap_err();
        assert!(err.contains("roles[0] (admin): names no groups"), "{err}");
        let mut bad = config(vec![]);
        bad.signer = "arn:aws:iam::123456789012:role/x".into();
        assert!(bad.validate().unwrap_err().contains("not a load balancer ARN"));
    }
}
