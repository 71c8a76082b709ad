"""The demo's AWS side, against the local AWS-compatible server (moto).

    demo_world.py setup  ENDPOINT            -> prints the queue URL and topic ARN
                                                (and creates the template's results table)
    demo_world.py upload ENDPOINT DIR        -> uploads every file in DIR to s3://staging/
    demo_world.py report ENDPOINT NAMES...   -> waits for each upload's outcome and prints it

Uses boto3, which comes with moto in target/tools/venv.
"""

import json
import os
import sys
import time

import boto3
import yaml

STAGING, PRODUCTION, QUARANTINE = "staging", "production", "quarantine"
RULES = "security-rules"
RULES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "yara")
RESULTS_TABLE = "bucketscan-results"


def clients(endpoint):
    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    return boto3.client("s3", **kw), boto3.client("sqs", **kw), boto3.client("sns", **kw)


def setup(endpoint):
    s3, sqs, sns = clients(endpoint)
    for bucket in (STAGING, PRODUCTION, QUARANTINE, RULES):
        s3.create_bucket(Bucket=bucket)
    # The YARA rule set the agent syncs (examples/yara/).
    for name in os.listdir(RULES_DIR):
        with open(os.path.join(RULES_DIR, name), "rb") as f:
            s3.put_object(Bucket=RULES, Key=f"yara/webshells/{name}", Body=f.read())
    dlq = sqs.create_queue(QueueName="scan-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(
        QueueName="scan-events",
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})},
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=STAGING,
        NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]},
    )
    topic = sns.create_topic(Name="scan-results")["TopicArn"]
    results = sqs.create_queue(QueueName="scan-results-subscriber")["QueueUrl"]
    results_arn = sqs.get_queue_attributes(QueueUrl=results, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=results_arn)
    create_results_table(endpoint)
    print(queue)
    print(topic)


def create_results_table(endpoint):
    """The results table exactly as deploy/bucketscan.yaml declares it
    (keys and indexes read from the template, not copied here)."""

    class Template(yaml.SafeLoader):
        pass

    # CloudFormation's short forms (!Ref, !If, ...): not needed for the table's keys.
    Template.add_multi_constructor("!", lambda loader, suffix, node: None)
    with open(os.path.join(os.path.dirname(__file__), "..", "deploy", "bucketscan.yaml")) as f:
        table = yaml.load(f, Loader=Template)["Resources"]["ResultsTable"]["Properties"]
    dynamodb = boto3.client(
        "dynamodb", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )
    dynamodb.create_table(
        TableName=RESULTS_TABLE,
        BillingMode=table["BillingMode"],
        AttributeDefinitions=table["AttributeDefinitions"],
        KeySchema=table["KeySchema"],
        GlobalSecondaryIndexes=table["GlobalSecondaryIndexes"],
    )


def upload(endpoint, directory):
    """Uploads every file; `NAME.gz` goes up as `NAME` with
    `Content-Encoding: gzip` (what a browser decodes on receipt)."""
    s3, _, _ = clients(endpoint)
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as f:
            body = f.read()
        extra = {}
        if name.endswith(".gz"):
            name, extra = name[:-3], {"ContentEncoding": "gzip"}
        s3.put_object(Bucket=STAGING, Key=name, Body=body, Tagging="uploaded-by=demo", **extra)


def tags(s3, bucket, key):
    return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}


def exists(s3, bucket, key):
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except s3.exceptions.ClientError:
        return False


def report(endpoint, names):
    s3, sqs, _ = clients(endpoint)
    deadline = time.time() + 90
    pending = list(names)
    print(f"   {'uploaded as':<22} {'result':<10} {'now in':<40} signature / reason")
    while pending and time.time() < deadline:
        for name in list(pending):
            for bucket, key in ((PRODUCTION, name), (QUARANTINE, f"{STAGING}/{name}"), (STAGING, name)):
                if exists(s3, bucket, key):
                    t = tags(s3, bucket, key)
                    if bucket == STAGING and t.get("bucketscan-result") != "unscannable":
                        continue  # not handled yet (unscannable objects are held where they are)
                    print(f"   s3://{STAGING}/{name:<12} {t.get('bucketscan-result', '?'):<10} "
                          f"s3://{bucket}/{key:<28} {t.get('bucketscan-signature', '')}")
                    pending.remove(name)
                    break
        time.sleep(0.3)
    for name in pending:
        print(f"   s3://{STAGING}/{name}: no outcome within 90 s")
    results = sqs.get_queue_url(QueueName="scan-results-subscriber")["QueueUrl"]
    seen = []
    while True:
        messages = sqs.receive_message(QueueUrl=results, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not messages:
            break
        for m in messages:
            body = json.loads(m["Body"])
            seen.append(body["MessageAttributes"]["scan-result"]["Value"])
    print(f"   SNS result notifications: {len(seen)} ({', '.join(sorted(seen))})")
    sys.exit(1 if pending else 0)


if __name__ == "__main__":
    command, endpoint, *rest = sys.argv[1:]
    {"setup": lambda: setup(endpoint), "upload": lambda: upload(endpoint, rest[0]), "report": lambda: report(endpoint, rest)}[command]()
