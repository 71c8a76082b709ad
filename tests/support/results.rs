//! The results table as the agent's template creates it: the test reads
//! `ResultsTable` from `deploy/bucketscan.yaml` and creates exactly that
//! (keys, indexes) in the local AWS server, so what the agent writes and
//! queries is checked against the template's schema, not a copy of it.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType,
};
use serde_json::Value;

/// The table's name in tests (the stack's `Ref` resolves to it).
pub const TABLE: &str = "bucketscan-results";

fn key_schema(value: &Value) -> Vec<KeySchemaElement> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|key| {
            KeySchemaElement::builder()
                .attribute_name(key["AttributeName"].as_str().unwrap())
                .key_type(KeyType::from(key["KeyType"].as_str().unwrap()))
                .build()
                .unwrap()
        })
        .collect()
}

/// A reader of [`TABLE`], as the console or an operator reads it.
pub fn reader(dynamodb: &aws_sdk_dynamodb::Client) -> bucketscan_runtime::results::ResultsStore {
    let config = bucketscan_runtime::results::ResultsConfig {
        table: TABLE.into(),
        keep_days: 1,
        batch_wait_ms: 0,
    };
    bucketscan_runtime::results::ResultsStore::new(dynamodb.clone(), config, "reader".into())
}

/// Creates the template's results table as [`TABLE`].
pub async fn create_table(dynamodb: &aws_sdk_dynamodb::Client) {
    let template = crate::task::template("bucketscan.yaml");
    let properties = &template["Resources"]["ResultsTable"]["Properties"];
    let mut request = dynamodb
        .create_table()
        .table_name(TABLE)
        .billing_mode(BillingMode::from(properties["BillingMode"].as_str().unwrap()))
        .set_key_schema(Some(key_schema(&properties["KeySchema"])));
    for attribute in properties["AttributeDefinitions"].as_array().unwrap() {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attribute["AttributeName"].as_str().unwrap())
                .attribute_type(ScalarAttributeType::from(attribute["AttributeType"].as_str().unwrap()))
                .build()
                .unwrap(),
        );
    }
    for index in properties["GlobalSecondaryIndexes"].as_array().unwrap() {
        let projection = ProjectionType::from(index["Projection"]["ProjectionType"].as_str().unwrap());
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index["IndexName"].as_str().unwrap())
                .set_key_schema(Some(key_schema(&index["KeySchema"])))
                .projection(Projection::builder().projection_type(projection).build())
                .build()
                .unwrap(),
        );
    }
    request.send().await.expect("creating the results table");
}

/// The history of `bucket`/`key` once at least `count` results are in it.
/// Results are written in batches after the object's actions, so a test
/// that saw the actions' effect polls for the record instead of racing it.
pub async fn recorded(
    store: &bucketscan_runtime::results::ResultsStore,
    bucket: &str,
    key: &str,
    count: usize,
) -> Vec<bucketscan_runtime::results::StoredResult> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let history = store.history(bucket, key, 10).await.unwrap();
        if history.len() >= count || std::time::Instant::now() > deadline {
            return history;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
