//! The ECS tasks of `deploy/bucketscan.yaml` (the agent) and
//! `deploy/bucketscan-api.yaml` (the API), as the tests run them: the
//! template read as CloudFormation would resolve it for a test stack, the
//! containers' command and environment taken from it, and a local stand-in
//! for the container credentials endpoint Fargate gives a task.

use crate::{clamd, free_port, target_dir, wait_for_port, workspace};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A template of `deploy/` as JSON, long-form intrinsics.
pub fn template(name: &str) -> Value {
    // Parsed once per test binary: a Python process per call adds up.
    static PARSED: std::sync::Mutex<BTreeMap<String, Value>> = std::sync::Mutex::new(BTreeMap::new());
    if let Some(parsed) = PARSED.lock().unwrap().get(name) {
        return parsed.clone();
    }
    let out = Command::new(target_dir().join("tools/venv/bin/python"))
        .arg(workspace().join("tests/support/cfn_to_json.py"))
        .arg(workspace().join("deploy").join(name))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    PARSED.lock().unwrap().insert(name.to_owned(), parsed.clone());
    parsed
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
        Self::with_refs(
            template("bucketscan.yaml"),
            [
                ("EventQueue", queue_url.to_owned()),
                // Nothing listens there: a test that runs the agent sets a
                // real queue (`with_sweep_queue`).
                ("SweepQueue", "http://127.0.0.1:9/no-sweep-queue".to_owned()),
                ("ResultTopic", topic_arn.to_owned()),
                ("StagingBucket", crate::agent::STAGING.to_owned()),
                ("ProductionBucket", crate::agent::PRODUCTION.to_owned()),
                ("QuarantineBucket", crate::agent::QUARANTINE.to_owned()),
                ("ResultsTable", crate::results::TABLE.to_owned()),
                ("DrainTimeout", "20".to_owned()),
                // The tests' databases are built at test time, unsigned,
                // and only a daily one.
                ("UnsignedDatabase", "clamav/daily.cud".to_owned()),
                ("RequiredDatabases", "daily".to_owned()),
            ],
        )
    }

    /// `deploy/bucketscan-api.yaml` for a test world's topic, with one API
    /// key (its SHA-256) and an EventBridge bus; its handoff queue is a
    /// placeholder until a test sets `refs["HandoffQueue"]`.
    pub fn api_for_test(topic_arn: &str, key_sha256: &str, event_bus: &str) -> Self {
        Self::with_refs(
            template("bucketscan-api.yaml"),
            [
                ("ResultTopic", topic_arn.to_owned()),
                ("ScannedBucket", crate::agent::STAGING.to_owned()),
                ("PromotionBucket", crate::agent::PRODUCTION.to_owned()),
                ("QuarantineBucket", crate::agent::QUARANTINE.to_owned()),
                ("ApiKeySha256", key_sha256.to_owned()),
                ("EventBusName", event_bus.to_owned()),
                ("HandoffQueue", "http://127.0.0.1:9/handoff".to_owned()),
                ("UnsignedDatabase", "clamav/daily.cud".to_owned()),
                ("RequiredDatabases", "daily".to_owned()),
            ],
        )
    }

    /// A template with `parameters` set and every other at its default:
    /// what a stack deployed with those would hold ([`materialize`](Self::materialize)).
    pub fn with_parameters(name: &str, parameters: &[(&'static str, &str)]) -> Self {
        Self::with_refs(
            template(name),
            parameters.iter().map(|(name, value)| (*name, (*value).to_owned())),
        )
    }

    fn with_refs(template: Value, refs: impl IntoIterator<Item = (&'static str, String)>) -> Self {
        let mut refs: BTreeMap<&'static str, String> = [
            ("AWS::StackName", "bucketscan-test".to_owned()),
            ("AWS::Region", "us-east-1".to_owned()),
            ("AWS::AccountId", "123456789012".to_owned()),
            ("AWS::Partition", "aws".to_owned()),
            ("SignatureBucket", "signatures".to_owned()),
            ("SignaturePrefix", "clamav/".to_owned()),
        ]
        .into_iter()
        .chain(refs)
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

    /// Evaluates a condition of the template (`Fn::Equals`, `Fn::Not`, `Fn::Or`).
    fn condition(&self, value: &Value) -> bool {
        match value {
            Value::String(name) => self.condition(&self.template["Conditions"][name]),
            Value::Object(map) if map.contains_key("Condition") => self.condition(&map["Condition"]),
            Value::Object(map) if map.contains_key("Fn::Not") => !self.condition(&map["Fn::Not"][0]),
            Value::Object(map) if map.contains_key("Fn::Or") => {
                map["Fn::Or"].as_array().unwrap().iter().any(|c| self.condition(c))
            }
            Value::Object(map) if map.contains_key("Fn::And") => {
                map["Fn::And"].as_array().unwrap().iter().all(|c| self.condition(c))
            }
            Value::Object(map) if map.contains_key("Fn::Equals") => {
                let args = map["Fn::Equals"].as_array().unwrap();
                self.resolve(&args[0]) == self.resolve(&args[1])
            }
            other => panic!("unexpected condition {other}"),
        }
    }

    /// Resolves `Ref`, `Fn::Sub` (both forms), `Fn::FindInMap` and `Fn::If` the way
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
            Value::Object(map) if map.contains_key("Fn::If") => {
                let args = map["Fn::If"].as_array().unwrap();
                if self.condition(&args[0]) {
                    self.resolve(&args[1])
                } else {
                    self.resolve(&args[2])
                }
            }
            Value::Object(map) if map.contains_key("Fn::Join") => {
                let args = map["Fn::Join"].as_array().unwrap();
                let separator = args[0].as_str().unwrap();
                // A list, or a Ref to a CommaDelimitedList parameter.
                let items: Vec<String> = match &args[1] {
                    Value::Array(items) => items.iter().map(|item| self.resolve(item)).collect(),
                    other => self.resolve(other).split(',').map(str::to_owned).collect(),
                };
                items.join(separator)
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

    /// The template as CloudFormation would create it for these
    /// parameters: resources and outputs whose condition is false dropped,
    /// every `Fn::If` replaced by its branch, `AWS::NoValue` removed, the
    /// parameters' defaults set to the values given (so that cfn-lint
    /// checks this very combination).
    pub fn materialize(&self) -> Value {
        let mut template = self.template.clone();
        for section in ["Resources", "Outputs"] {
            let Some(entries) = template[section].as_object_mut() else {
                continue;
            };
            entries.retain(|_, entry| entry.get("Condition").is_none_or(|c| self.condition(c)));
            for entry in entries.values_mut() {
                entry.as_object_mut().unwrap().remove("Condition");
            }
        }
        let mut template = self.prune(&template).unwrap();
        let object = template.as_object_mut().unwrap();
        object.remove("Conditions");
        for (name, parameter) in object["Parameters"].as_object_mut().unwrap() {
            let given = self.refs.get(name.as_str());
            let default = parameter
                .get("Default")
                .map(|d| d.as_str().map(str::to_owned).unwrap_or(d.to_string()));
            if let Some(value) = given.filter(|value| default.as_ref() != Some(value)) {
                parameter["Default"] = Value::String(value.clone());
            }
        }
        template
    }

    /// `value` with every `Fn::If` decided; `None` for `AWS::NoValue`.
    fn prune(&self, value: &Value) -> Option<Value> {
        match value {
            Value::Object(map) if map.get("Ref").and_then(Value::as_str) == Some("AWS::NoValue") => None,
            Value::Object(map) if map.contains_key("Fn::If") => {
                let args = map["Fn::If"].as_array().unwrap();
                let branch = if self.condition(&args[0]) { &args[1] } else { &args[2] };
                self.prune(branch)
            }
            Value::Object(map) => Some(Value::Object(
                map.iter()
                    .filter_map(|(k, v)| Some((k.clone(), self.prune(v)?)))
                    .collect(),
            )),
            Value::Array(items) => Some(Value::Array(items.iter().filter_map(|v| self.prune(v)).collect())),
            other => Some(other.clone()),
        }
    }

    /// The stack with its sweep queue at `url`.
    pub fn with_sweep_queue(mut self, url: &str) -> Self {
        self.refs.insert("SweepQueue", url.to_owned());
        self
    }

    /// Whether the template's condition `name` holds for this stack.
    pub fn holds(&self, name: &str) -> bool {
        self.condition(&Value::String(name.to_owned()))
    }

    /// One container definition of the task, by name.
    pub fn container(&self, name: &str) -> Value {
        self.container_of("TaskDefinition", name)
    }

    /// One container definition of task definition `definition`, by name.
    pub fn container_of(&self, definition: &str, name: &str) -> Value {
        self.template["Resources"][definition]["Properties"]["ContainerDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["Name"] == name)
            .unwrap_or_else(|| panic!("no container `{name}` in {definition}"))
            .clone()
    }

    /// The agent config of the stack (the SSM parameter's value), resolved.
    pub fn agent_config(&self) -> String {
        self.config("AgentConfig")
    }

    /// The value of the SSM parameter `resource`, resolved.
    pub fn config(&self, resource: &str) -> String {
        self.resolve(&self.template["Resources"][resource]["Properties"]["Value"])
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
            // A secret only some stacks have (`!If [COND, SECRET, NoValue]`).
            let secret = match secret.get("Fn::If").and_then(|args| args.as_array()) {
                Some(args) => match &args[if self.condition(&args[0]) { 1 } else { 2 }] {
                    chosen if chosen["Ref"] == "AWS::NoValue" => continue,
                    chosen => chosen,
                },
                None => secret,
            };
            let value = match secret["ValueFrom"]["Ref"].as_str() {
                Some("AgentConfig" | "ApiConfig") => config.to_owned(),
                Some("SealKey") => "a-generated-seal-key-for-this-test-0123456789".into(),
                Some("ConsoleSecret") => "a-generated-console-secret-for-this-test-0123".into(),
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
