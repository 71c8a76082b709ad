//! The ECS task of `deploy/bucketscan.yaml`, as the tests run it: the
//! template read as CloudFormation would resolve it for a test stack, the
//! containers' command and environment taken from it, and a local stand-in
//! for the container credentials endpoint Fargate gives a task.

use crate::{clamd, free_port, target_dir, wait_for_port, workspace};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The template as JSON, long-form intrinsics.
pub fn template() -> Value {
    let out = Command::new(target_dir().join("tools/venv/bin/python"))
        .arg(workspace().join("tests/support/cfn_to_json.py"))
        .arg(workspace().join("deploy/bucketscan.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A local stand-in for ECS's container credentials endpoint.
pub struct CredentialsEndpoint {
    pub url: String,
    pub token: String,
    log: std::path::PathBuf,
    _child: std::process::Child,
}

impl CredentialsEndpoint {
    pub fn start(dir: &Path) -> Self {
        let port = free_port();
        let token = "task-token-0123".to_owned();
        let log = dir.join("credentials.jsonl");
        let args = vec![
            workspace()
                .join("tests/support/container_credentials.py")
                .display()
                .to_string(),
            port.to_string(),
            token.clone(),
            log.display().to_string(),
        ];
        let child = clamd::spawn_tied(move || {
            let mut command = Command::new("python3");
            command.args(args).stdout(Stdio::null()).stderr(Stdio::null());
            command
        })
        .unwrap();
        wait_for_port(port, Duration::from_secs(10), "the credentials endpoint");
        Self {
            url: format!("http://127.0.0.1:{port}/v2/credentials/task-1234"),
            token,
            log,
            _child: child,
        }
    }

    pub fn authorized_requests(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"authorized\": true"))
            .count()
    }
}

/// The stack as a test deploys it: the template, and what its `Ref`s
/// resolve to.
pub struct Stack {
    pub template: Value,
    pub refs: BTreeMap<&'static str, String>,
}

impl Stack {
    /// `deploy/bucketscan.yaml` for a test world's queue and topic, with
    /// every other parameter at its default.
    pub fn for_test(queue_url: &str, topic_arn: &str) -> Self {
        let template = template();
        let mut refs: BTreeMap<&'static str, String> = [
            ("AWS::StackName", "bucketscan-test".to_owned()),
            ("AWS::Region", "us-east-1".to_owned()),
            ("AWS::AccountId", "123456789012".to_owned()),
            ("EventQueue", queue_url.to_owned()),
            ("ResultTopic", topic_arn.to_owned()),
            ("SignatureBucket", "signatures".to_owned()),
            ("SignaturePrefix", "clamav/".to_owned()),
            ("StagingBucket", crate::agent::STAGING.to_owned()),
            ("ProductionBucket", crate::agent::PRODUCTION.to_owned()),
            ("QuarantineBucket", crate::agent::QUARANTINE.to_owned()),
            ("DrainTimeout", "20".to_owned()),
        ]
        .into_iter()
        .collect();
        for (name, parameter) in template["Parameters"].as_object().unwrap() {
            if let Some(default) = parameter
                .get("Default")
                .and_then(|d| d.as_str().map(str::to_owned).or(Some(d.to_string())))
            {
                let name: &'static str = Box::leak(name.clone().into_boxed_str());
                refs.entry(name).or_insert(default);
            }
        }
        Self { template, refs }
    }

    /// Resolves `Ref`, `Fn::Sub` (both forms) and `Fn::FindInMap` the way
    /// CloudFormation would for this stack; other intrinsics do not occur
    /// in what the tests read.
    pub fn resolve(&self, value: &Value) -> String {
        match value {
            Value::String(text) => text.clone(),
            Value::Number(n) => n.to_string(),
            Value::Object(map) if map.contains_key("Ref") => {
                let name = map["Ref"].as_str().unwrap();
                self.refs
                    .get(name)
                    .unwrap_or_else(|| panic!("no value for Ref {name}"))
                    .clone()
            }
            Value::Object(map) if map.contains_key("Fn::FindInMap") => {
                let args = map["Fn::FindInMap"].as_array().unwrap();
                let [table, key, field] = [&args[0], &args[1], &args[2]].map(|a| self.resolve(a));
                self.resolve(&self.template["Mappings"][&table][&key][&field])
            }
            Value::Object(map) if map.contains_key("Fn::Sub") => {
                let (mut text, variables) = match &map["Fn::Sub"] {
                    Value::String(text) => (text.clone(), BTreeMap::new()),
                    Value::Array(args) => (
                        args[0].as_str().unwrap().to_owned(),
                        args[1]
                            .as_object()
                            .unwrap()
                            .iter()
                            .map(|(k, v)| (k.clone(), self.resolve(v)))
                            .collect(),
                    ),
                    other => panic!("unexpected Fn::Sub {other}"),
                };
                for (name, value) in variables
                    .iter()
                    .map(|(k, v)| (k.as_str(), v))
                    .chain(self.refs.iter().map(|(k, v)| (*k, v)))
                {
                    text = text.replace(&format!("${{{name}}}"), value);
                }
                assert!(!text.contains("${"), "unresolved substitution in:\n{text}");
                text
            }
            other => panic!("unexpected intrinsic {other}"),
        }
    }

    /// One container definition of the task, by name.
    pub fn container(&self, name: &str) -> Value {
        self.template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["Name"] == name)
            .unwrap_or_else(|| panic!("no container `{name}` in the task definition"))
            .clone()
    }

    /// The agent config of the stack (the SSM parameter's value), resolved.
    pub fn agent_config(&self) -> String {
        self.resolve(&self.template["Resources"]["AgentConfig"]["Properties"]["Value"])
    }

    /// The agent container's environment as ECS would give it: its
    /// `Environment`, its `Secrets` (the config from the SSM parameter,
    /// here `config`; the seal key, here a test value), and `rewrite`
    /// applied to every value (a local port for the health endpoint, say).
    pub fn agent_environment(
        &self,
        agent: &Value,
        config: &str,
        rewrite: impl Fn(String) -> String,
    ) -> Vec<(String, String)> {
        let mut env = Vec::new();
        for variable in agent["Environment"].as_array().unwrap() {
            env.push((
                variable["Name"].as_str().unwrap().to_owned(),
                rewrite(self.resolve(&variable["Value"])),
            ));
        }
        for secret in agent["Secrets"].as_array().unwrap() {
            let value = match secret["ValueFrom"]["Ref"].as_str() {
                Some("AgentConfig") => config.to_owned(),
                Some("SealKey") => "a-generated-seal-key-for-this-test-0123456789".into(),
                other => panic!("unexpected secret source {other:?}"),
            };
            env.push((secret["Name"].as_str().unwrap().to_owned(), value));
        }
        env
    }
}

/// A string array of a container definition (`Command`, `EntryPoint`).
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}
