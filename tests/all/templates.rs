//! The CloudFormation templates, read the way CloudFormation would for
//! every parameter combination that changes what they create: each passes
//! cfn-lint as that combination; private networking leaves no public IP
//! and no way to the internet; no policy lets anything write to every
//! resource without a condition; the organization's doors carry its
//! conditions. (What AWS itself would do with them — IAM evaluation, S3
//! ABAC, endpoint DNS — cannot run here; README says so.)

use bucketscan_tests::task::Stack;
use bucketscan_tests::{target_dir, workspace};
use serde_json::Value;
use std::process::Command;

const ORGANIZATION: &str = "o-a1b2c3d4e5";

/// Every combination of the central template's resource-changing
/// parameters.
fn central_stacks() -> Vec<(String, Stack)> {
    let mut stacks = Vec::new();
    for private in ["off", "create-endpoints", "existing-endpoints"] {
        for organization in ["", ORGANIZATION] {
            for (notification, schedule, retention, retro, extra_buckets, yara) in [
                ("true", "", "Retain", "7", "", ""),
                (
                    "false",
                    "cron(0 3 ? * SUN *)",
                    "Delete",
                    "0",
                    "api-uploads,linked-uploads",
                    "yara/",
                ),
            ] {
                let parameters = [
                    ("PrivateNetworking", private),
                    ("OrganizationId", organization),
                    ("MemberExternalId", "an-external-id-0123"),
                    ("ManageStagingNotification", notification),
                    ("SweepSchedule", schedule),
                    ("ResultsOnDelete", retention),
                    ("RetroScanDays", retro),
                    ("RouteTableIds", "rtb-0123456789abcdef0"),
                    ("EndpointClientCidr", "10.0.0.0/16"),
                    ("GatewayExtraBuckets", extra_buckets),
                    ("YaraRulesPrefix", yara),
                    ("VpcId", "vpc-0123456789abcdef0"),
                    ("Subnets", "subnet-0123456789abcdef0"),
                    ("SecurityGroups", "sg-0123456789abcdef0"),
                    ("StagingBucket", "uploads"),
                    ("ProductionBucket", "released"),
                    ("QuarantineBucket", "held"),
                    ("SignatureBucket", "signatures"),
                    ("Image", "123456789012.dkr.ecr.us-east-1.amazonaws.com/bucketscan:1"),
                ];
                let name = format!("central private={private} org={organization:?} notification={notification}");
                stacks.push((name, Stack::with_parameters("bucketscan.yaml", &parameters)));
            }
        }
    }
    stacks
}

/// The API stack, public and private.
fn api_stacks() -> Vec<(String, Stack)> {
    ["off", "on"]
        .into_iter()
        .map(|private| {
            let parameters = [
                ("PrivateNetworking", private),
                ("Scheme", "internal"),
                ("AssignPublicIp", "ENABLED"),
                ("VpcId", "vpc-0123456789abcdef0"),
                ("Subnets", "subnet-0123456789abcdef0"),
                (
                    "LoadBalancerSubnets",
                    "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
                ),
                ("AllowedCidr", "10.0.0.0/16"),
                ("Image", "123456789012.dkr.ecr.us-east-1.amazonaws.com/bucketscan:1"),
                // The agent stack's table, in one of the two.
                (
                    "ResultsTableName",
                    if private == "on" { "bucketscan-results" } else { "" },
                ),
            ];
            (
                format!("api private={private}"),
                Stack::with_parameters("bucketscan-api.yaml", &parameters),
            )
        })
        .collect()
}

fn member_stacks() -> Vec<(String, Stack)> {
    ["", "uploads-a,uploads-b"]
        .into_iter()
        .map(|buckets| {
            let parameters = [
                ("ProtectedBuckets", buckets),
                ("AgentTaskRoleArn", "arn:aws:iam::123456789012:role/bucketscan-TaskRole"),
                (
                    "CentralEventBusArn",
                    "arn:aws:events:us-east-1:123456789012:event-bus/bucketscan-organization",
                ),
                ("ExternalId", "an-external-id-0123"),
            ];
            (
                format!("member buckets={buckets:?}"),
                Stack::with_parameters("member-account.yaml", &parameters),
            )
        })
        .collect()
}

fn resources(template: &Value) -> impl Iterator<Item = (&String, &Value)> {
    template["Resources"].as_object().unwrap().iter()
}

#[test]
fn every_template_and_combination_passes_cfn_lint() {
    let templates: Vec<String> = [
        "deploy/bucketscan.yaml",
        "deploy/bucketscan-api.yaml",
        "deploy/cross-account-role.yaml",
        "deploy/protected-bucket-policy.yaml",
        "deploy/member-account.yaml",
    ]
    .iter()
    .map(|t| workspace().join(t).display().to_string())
    .collect();
    cfn_lint(&templates, &[], "the templates");
    let dir = tempfile::tempdir().unwrap();
    for (name, stack) in central_stacks().into_iter().chain(api_stacks()).chain(member_stacks()) {
        let path = dir.path().join("combination.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&stack.materialize()).unwrap()).unwrap();
        // A parameter only a dropped branch used is unused here.
        cfn_lint(&[path.display().to_string()], &["--ignore-checks=W2001"], &name);
    }
}

fn cfn_lint(files: &[String], options: &[&str], what: &str) {
    let out = Command::new(target_dir().join("tools/venv/bin/cfn-lint"))
        .args(options)
        .args(files)
        .output()
        .expect("cfn-lint runs (scripts/setup)");
    assert!(
        out.status.success(),
        "{what}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn private_networking_leaves_no_public_ip_and_no_route_out() {
    for (name, stack) in central_stacks().into_iter().chain(api_stacks()) {
        let template = stack.materialize();
        for (id, resource) in resources(&template) {
            let kind = resource["Type"].as_str().unwrap();
            assert!(
                !matches!(
                    kind,
                    "AWS::EC2::InternetGateway"
                        | "AWS::EC2::NatGateway"
                        | "AWS::EC2::EIP"
                        | "AWS::EC2::Route"
                        | "AWS::EC2::EgressOnlyInternetGateway"
                        | "AWS::EC2::VPCGatewayAttachment"
                ),
                "{name}: {id} is a {kind}"
            );
        }
        if stack.holds("PrivateOn") {
            let public_ips = values_of(&template["Resources"], "AssignPublicIp");
            assert!(!public_ips.is_empty(), "{name}: no task network configuration found");
            for value in public_ips {
                assert_eq!(stack.resolve(&value), "DISABLED", "{name}");
            }
        }
        let endpoints: Vec<String> = resources(&template)
            .filter(|(_, r)| r["Type"] == "AWS::EC2::VPCEndpoint")
            .map(|(_, r)| stack.resolve(&r["Properties"]["ServiceName"]))
            .collect();
        if name.starts_with("api") {
            continue;
        }
        if stack.holds("CreatesEndpoints") {
            for service in [
                "sqs",
                "sns",
                "sts",
                "ecr.api",
                "ecr.dkr",
                "logs",
                "events",
                "ssm",
                "secretsmanager",
                "s3",
                "dynamodb",
            ] {
                let wanted = format!("com.amazonaws.us-east-1.{service}");
                assert!(
                    endpoints.contains(&wanted),
                    "{name}: no endpoint for {service}: {endpoints:?}"
                );
            }
            let s3 = resources(&template)
                .find(|(id, _)| *id == "S3GatewayEndpoint")
                .unwrap()
                .1;
            let allowed: Vec<String> = statements(&s3["Properties"]["PolicyDocument"])
                .iter()
                .filter(|s| s.get("Condition").is_none())
                .flat_map(|s| names(&stack, &s["Resource"]))
                .collect();
            assert!(allowed.contains(&"arn:aws:s3:::uploads/*".to_owned()), "{allowed:?}");
            if stack.holds("HasGatewayExtraBuckets") {
                for extra in ["arn:aws:s3:::api-uploads", "arn:aws:s3:::linked-uploads/*"] {
                    assert!(allowed.contains(&extra.to_owned()), "{name}: {extra}: {allowed:?}");
                }
            }
            assert!(
                allowed.contains(&"arn:aws:s3:::cloudformation-custom-resource-response-useast1/*".to_owned()),
                "{allowed:?}"
            );
            assert!(
                allowed.iter().all(|r| !r.starts_with("arn:aws:s3:::*") && r != "*"),
                "{name}: the S3 gateway lets through any bucket: {allowed:?}"
            );
        } else {
            assert!(endpoints.is_empty(), "{name}: {endpoints:?}");
        }
    }
}

#[test]
fn no_policy_writes_everywhere_without_a_condition() {
    for (name, stack) in central_stacks().into_iter().chain(api_stacks()).chain(member_stacks()) {
        let template = stack.materialize();
        let mut checked = 0;
        for (id, resource) in resources(&template) {
            for statement in policy_statements(resource) {
                checked += 1;
                if statement["Effect"] != "Allow" || statement.get("Condition").is_some() {
                    continue;
                }
                let actions = names(&stack, &statement["Action"]);
                assert!(!actions.iter().any(|a| a == "*"), "{name}: {id}: Action *");
                let unscoped: Vec<String> = names(&stack, &statement["Resource"])
                    .into_iter()
                    .filter(|r| is_everything(r))
                    .collect();
                let writes: Vec<&String> = actions.iter().filter(|a| !is_read_only(a)).collect();
                assert!(
                    unscoped.is_empty() || writes.is_empty(),
                    "{name}: {id}: {writes:?} on {unscoped:?} without a condition"
                );
            }
        }
        assert!(checked >= 4, "{name}: only {checked} statements found");
    }
}

#[test]
fn the_organization_doors_carry_the_organization() {
    for (name, stack) in central_stacks() {
        let template = stack.materialize();
        let find = |id: &str| resources(&template).find(|(i, _)| *i == id).map(|(_, r)| r.clone());
        if !stack.holds("OrganizationOn") {
            assert!(find("OrganizationEventBus").is_none(), "{name}");
            continue;
        }
        let policy = find("OrganizationEventBusPolicy").unwrap();
        let condition = &policy["Properties"]["Statement"]["Condition"]["StringEquals"]["aws:PrincipalOrgID"];
        assert_eq!(stack.resolve(condition), ORGANIZATION, "{name}");
        let rule = find("OrganizationObjectCreatedRule").unwrap();
        assert_eq!(
            rule["Properties"]["EventPattern"]["source"],
            serde_json::json!(["aws.s3"])
        );
        let assume = policy_statements(&find("TaskRole").unwrap())
            .into_iter()
            .find(|s| s["Sid"] == "AssumeMemberRolesOfTheOrganization")
            .unwrap();
        assert_eq!(
            stack.resolve(&assume["Condition"]["StringEquals"]["aws:ResourceOrgID"]),
            ORGANIZATION
        );
        let from_bus = policy_statements(&find("EventQueuePolicy").unwrap())
            .into_iter()
            .find(|s| s["Sid"] == "OrganizationObjectCreated")
            .unwrap();
        assert!(
            from_bus["Condition"]["ArnEquals"]["aws:SourceArn"].is_object(),
            "{from_bus}"
        );
        let config = text(&stack, &find("AgentConfig").unwrap()["Properties"]["Value"]);
        assert!(
            config.contains("[organization]\nrole-name = \"bucketscan-scanner\""),
            "{config}"
        );
    }
    for (name, stack) in member_stacks() {
        let template = stack.materialize();
        let role = resources(&template).find(|(i, _)| *i == "ScannerRole").unwrap().1;
        let trust = &role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0];
        assert!(
            trust["Condition"]["StringEquals"]["sts:ExternalId"].is_object(),
            "{name}"
        );
        let by_tag = policy_statements(role)
            .into_iter()
            .find(|s| s["Sid"] == "ReadAndTagObjectsOfTaggedBuckets");
        assert_eq!(by_tag.is_some(), stack.holds("SelectsByTag"), "{name}");
        if let Some(statement) = by_tag {
            assert_eq!(
                statement["Condition"]["StringEquals"]["aws:ResourceTag/bucketscan:protect"],
                "true"
            );
        }
    }
}

#[test]
fn the_agent_config_of_every_combination_is_valid() {
    for (name, stack) in central_stacks() {
        let template = stack.materialize();
        let text = text(&stack, &template["Resources"]["AgentConfig"]["Properties"]["Value"]);
        let config = bucketscan_runtime::config::Config::parse(bucketscan_core::config::ConfigText::new(
            "$BUCKETSCAN_CONFIG",
            &text,
        ))
        .unwrap_or_else(|err| panic!("{name}: {err}\n{text}"));
        assert_eq!(config.organization.is_some(), stack.holds("OrganizationOn"), "{name}");
        assert_eq!(config.yara.is_some(), stack.holds("YaraOn"), "{name}");
        let stages = &config.buckets["uploads"].stages;
        let has_yara_stage = stages.iter().any(|s| s.plugin.get_ref() == "yara-bridge");
        assert_eq!(has_yara_stage, stack.holds("YaraOn"), "{name}");
    }
}

#[test]
fn the_api_config_of_every_combination_is_valid_and_records_where_asked() {
    for (name, stack) in api_stacks() {
        let template = stack.materialize();
        let text = text(&stack, &template["Resources"]["ApiConfig"]["Properties"]["Value"]);
        let config = bucketscan_runtime::config::Config::parse(bucketscan_core::config::ConfigText::new(
            "$BUCKETSCAN_CONFIG",
            &text,
        ))
        .unwrap_or_else(|err| panic!("{name}: {err}\n{text}"));
        let table = config.results.as_ref().map(|results| results.table.as_str());
        let recording = stack.holds("HasResults");
        assert_eq!(table, recording.then_some("bucketscan-results"), "{name}");
        // The task may record and query there, and nothing more.
        let policies = values_of(&template["Resources"]["TaskRole"], "Action")
            .into_iter()
            .flat_map(|a| list(&a));
        let dynamodb: Vec<Value> = policies
            .filter(|action| action.as_str().is_some_and(|a| a.starts_with("dynamodb:")))
            .collect();
        let expected: Vec<Value> = if recording {
            vec![
                "dynamodb:PutItem".into(),
                "dynamodb:Query".into(),
                "dynamodb:BatchWriteItem".into(),
            ]
        } else {
            Vec::new()
        };
        assert_eq!(dynamodb, expected, "{name}");
        if recording {
            assert_batches_reach_results_only(&name, &template["Resources"]["TaskRole"]);
        }
    }
}

/// `BatchWriteItem` deletes as well as puts: every statement allowing it
/// keeps it to results' items (`object#` partitions), away from the
/// revocations, claims and sweeps the table also holds.
fn assert_batches_reach_results_only(name: &str, role: &Value) {
    let batch = Value::from("dynamodb:BatchWriteItem");
    let allowing: Vec<Value> = policy_statements(role)
        .into_iter()
        .filter(|statement| list(&statement["Action"]).contains(&batch))
        .collect();
    assert!(!allowing.is_empty(), "{name}: no statement allows BatchWriteItem");
    for statement in allowing {
        let keys = &statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"];
        assert_eq!(keys, &serde_json::json!(["object#*"]), "{name}: {statement}");
    }
}

#[test]
fn the_agent_task_writes_results_in_batches_to_results_items_only() {
    for (name, stack) in central_stacks() {
        let template = stack.materialize();
        assert_batches_reach_results_only(&name, &template["Resources"]["TaskRole"]);
    }
}

/// Every `Key: value` anywhere under `value`.
fn values_of(value: &Value, key: &str) -> Vec<Value> {
    match value {
        Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| {
                let here = (k == key).then(|| v.clone());
                here.into_iter().chain(values_of(v, key))
            })
            .collect(),
        Value::Array(items) => items.iter().flat_map(|v| values_of(v, key)).collect(),
        _ => Vec::new(),
    }
}

/// The permission statements of a resource: role policies, resource
/// policies and endpoint policies (trust policies say who, not what).
fn policy_statements(resource: &Value) -> Vec<Value> {
    let properties = &resource["Properties"];
    let mut documents: Vec<&Value> = Vec::new();
    if let Some(policies) = properties["Policies"].as_array() {
        documents.extend(policies.iter().map(|p| &p["PolicyDocument"]));
    }
    documents.push(&properties["PolicyDocument"]);
    let mut found: Vec<Value> = documents.into_iter().flat_map(statements).collect();
    if resource["Type"] == "AWS::Events::EventBusPolicy" {
        found.push(properties["Statement"].clone());
    }
    found
}

fn statements(document: &Value) -> Vec<Value> {
    list(&document["Statement"])
}

/// A policy field that may be one value or a list.
fn list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

/// A policy's `Action` or `Resource` as the strings CloudFormation would
/// make of it; what only exists once deployed (`Fn::GetAtt`, a resource's
/// `${X.Arn}`) stays a `<placeholder>`, which names one resource.
fn names(stack: &Stack, value: &Value) -> Vec<String> {
    // A Ref to a CommaDelimitedList parameter is a list too.
    if value.get("Ref").is_some() {
        return text(stack, value).split(',').map(str::to_owned).collect();
    }
    list(value)
        .iter()
        .flat_map(|item| match item.get("Fn::Split") {
            Some(args) => text(stack, &args[1])
                .split(args[0].as_str().unwrap())
                .map(str::to_owned)
                .collect(),
            None => vec![text(stack, item)],
        })
        .collect()
}

fn text(stack: &Stack, value: &Value) -> String {
    let Value::Object(map) = value else {
        return value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
    };
    if let Some(name) = map.get("Ref").and_then(Value::as_str) {
        return stack.refs.get(name).cloned().unwrap_or_else(|| format!("<{name}>"));
    }
    if let Some(sub) = map.get("Fn::Sub") {
        let (mut out, variables) = match sub {
            Value::Array(args) => (args[0].as_str().unwrap().to_owned(), args[1].as_object().cloned()),
            other => (other.as_str().unwrap().to_owned(), None),
        };
        for (name, variable) in variables.iter().flatten() {
            out = out.replace(&format!("${{{name}}}"), &text(stack, variable));
        }
        for (name, value) in &stack.refs {
            out = out.replace(&format!("${{{name}}}"), value);
        }
        return out;
    }
    if map.contains_key("Fn::FindInMap") {
        return stack.resolve(value);
    }
    if let Some(args) = map.get("Fn::Join") {
        return names(stack, &args[1]).join(args[0].as_str().unwrap());
    }
    format!("<{}>", map.keys().next().unwrap())
}

/// A resource pattern that names no resource in particular.
fn is_everything(resource: &str) -> bool {
    let parts: Vec<&str> = resource.split(':').collect();
    resource == "*" || resource.starts_with("arn:aws:s3:::*") || (parts.len() >= 6 && parts[5..].join(":") == "*")
}

fn is_read_only(action: &str) -> bool {
    let verb = action.split(':').nth(1).unwrap_or(action);
    ["Get", "List", "Describe", "Query", "BatchGet", "Head"]
        .iter()
        .any(|prefix| verb.starts_with(prefix))
}
