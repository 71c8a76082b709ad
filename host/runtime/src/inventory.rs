//! S3 Inventory reports as a sweep's listing: a bucket of 50 million
//! objects is listed by S3 once a day into a few files, instead of by
//! 50,000 ListObjectsV2 calls. A report is a `manifest.json` naming its
//! source bucket, its format and its data files with their MD5s; this
//! module reads the manifest and the rows of each file, CSV (gzip) or
//! Parquet. ORC is refused by name (no well-kept Rust reader without
//! Arrow's whole stack).
//!
//! Every file is checked against the MD5 the manifest gives before a row
//! of it is used: a truncated or swapped file is refused, not half-read.
//! Rows of delete markers and of versions that are not the latest are
//! not objects anyone is served: they are left out.

use md5::Digest as _;
use serde::Deserialize;

/// What a report lists of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryRow {
    pub key: String,
    pub version_id: Option<String>,
    pub etag: Option<String>,
    pub size: u64,
    pub is_latest: bool,
    pub is_delete_marker: bool,
}

/// The data files' format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Csv,
    Parquet,
}

/// A report's `manifest.json`.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub source_bucket: String,
    /// The bucket the data files are in (from the manifest's ARN).
    pub destination_bucket: String,
    pub format: FileFormat,
    /// CSV: the column names, in order.
    pub columns: Vec<String>,
    pub files: Vec<DataFile>,
}

/// One data file of a report.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DataFile {
    pub key: String,
    pub size: u64,
    #[serde(rename = "MD5checksum")]
    pub md5: String,
}

/// Why a report cannot be used; names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {detail}")]
pub struct InventoryError {
    pub file: String,
    pub detail: String,
}

impl InventoryError {
    fn new(file: &str, detail: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            detail: detail.into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestJson {
    source_bucket: String,
    destination_bucket: String,
    file_format: String,
    #[serde(default)]
    file_schema: String,
    files: Vec<DataFile>,
}

impl Manifest {
    /// Parses `manifest.json` (`name` is where it was read, for errors).
    pub fn parse(name: &str, json: &[u8]) -> Result<Self, InventoryError> {
        let raw: ManifestJson = serde_json::from_slice(json)
            .map_err(|err| InventoryError::new(name, format!("not an S3 Inventory manifest: {err}")))?;
        let format = match raw.file_format.to_ascii_uppercase().as_str() {
            "CSV" => FileFormat::Csv,
            "PARQUET" => FileFormat::Parquet,
            other => {
                return Err(InventoryError::new(
                    name,
                    format!("fileFormat `{other}`: bucketscan reads CSV and Parquet inventories (not ORC)"),
                ));
            }
        };
        let columns: Vec<String> = raw.file_schema.split(',').map(|c| c.trim().to_owned()).collect();
        if format == FileFormat::Csv && !columns.iter().any(|c| c == "Key") {
            return Err(InventoryError::new(name, "fileSchema has no Key column"));
        }
        let destination_bucket = raw
            .destination_bucket
            .strip_prefix("arn:aws:s3:::")
            .unwrap_or(&raw.destination_bucket)
            .to_owned();
        Ok(Self {
            source_bucket: raw.source_bucket,
            destination_bucket,
            format,
            columns,
            files: raw.files,
        })
    }

    /// The rows of data file `file`, whose bytes are `bytes`, all at once
    /// (see [`Manifest::read_rows`]).
    pub fn rows(&self, file: &DataFile, bytes: bytes::Bytes) -> Result<Vec<InventoryRow>, InventoryError> {
        let mut rows = Vec::new();
        self.read_rows(file, bytes, |chunk| {
            rows.extend(chunk);
            Ok(())
        })?;
        Ok(rows)
    }

    /// Hands the rows of data file `file` (its bytes `bytes`, checked
    /// against the manifest's size and MD5 first) to `each`, a chunk at a
    /// time: a file of millions of rows is never all in memory as rows.
    pub fn read_rows(
        &self,
        file: &DataFile,
        bytes: bytes::Bytes,
        mut each: impl FnMut(Vec<InventoryRow>) -> Result<(), String>,
    ) -> Result<(), InventoryError> {
        if bytes.len() as u64 != file.size {
            return Err(InventoryError::new(
                &file.key,
                format!("{} bytes read, the manifest lists {}", bytes.len(), file.size),
            ));
        }
        let md5 = hex::encode(md5::Md5::digest(&bytes));
        if !md5.eq_ignore_ascii_case(&file.md5) {
            return Err(InventoryError::new(
                &file.key,
                format!(
                    "MD5 {md5} is not the manifest's {} ({} bytes read, {} listed): the file changed or was cut short",
                    file.md5,
                    bytes.len(),
                    file.size
                ),
            ));
        }
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut push = |row: InventoryRow| {
            chunk.push(row);
            match chunk.len() == CHUNK {
                true => each(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK))),
                false => Ok(()),
            }
        };
        match self.format {
            FileFormat::Csv => csv_rows(&self.columns, &bytes, &mut push),
            FileFormat::Parquet => parquet_rows(bytes, &mut push),
        }
        .and_then(|()| match chunk.is_empty() {
            true => Ok(()),
            false => each(chunk),
        })
        .map_err(|detail| InventoryError::new(&file.key, detail))
    }
}

impl InventoryRow {
    /// Whether the row is an object someone is served (the latest
    /// version, not a delete marker).
    pub fn is_current_object(&self) -> bool {
        self.is_latest && !self.is_delete_marker
    }
}

/// Rows handed on at once.
const CHUNK: usize = 1000;
/// The largest data file read (compressed), and what a CSV one may
/// expand to: a report of a bucket that size is split into more files.
pub const MAX_FILE_BYTES: u64 = 1 << 30;
const MAX_EXPANDED_BYTES: u64 = 16 << 30;

type RowSink<'a> = dyn FnMut(InventoryRow) -> Result<(), String> + 'a;

/// A reader that fails past `left` bytes: a gzip bomb stops there.
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: std::io::Read> std::io::Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.left = self
            .left
            .checked_sub(read as u64)
            .ok_or_else(|| std::io::Error::other(format!("expands past {MAX_EXPANDED_BYTES} bytes")))?;
        Ok(read)
    }
}

/// Rows of a gzip-compressed CSV file without a header; `columns` from
/// the manifest. CSV inventories URL-encode keys.
fn csv_rows(columns: &[String], gz: &[u8], push: &mut RowSink<'_>) -> Result<(), String> {
    let column = |name: &str| columns.iter().position(|c| c == name);
    let key_at = column("Key").ok_or("fileSchema has no Key column")?;
    let (version_at, latest_at, marker_at, size_at, etag_at) = (
        column("VersionId"),
        column("IsLatest"),
        column("IsDeleteMarker"),
        column("Size"),
        column("ETag"),
    );
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(Capped {
            inner: flate2::read::MultiGzDecoder::new(gz),
            left: MAX_EXPANDED_BYTES,
        });
    for (line, record) in reader.records().enumerate() {
        let record = record.map_err(|err| format!("line {}: {err}", line + 1))?;
        let field = |at: Option<usize>| at.and_then(|i| record.get(i)).filter(|v| !v.is_empty());
        let raw_key = field(Some(key_at)).ok_or_else(|| format!("line {}: no key", line + 1))?;
        let key =
            crate::events::decode_key(raw_key).map_err(|err| format!("line {}: key `{raw_key}`: {err}", line + 1))?;
        let size = match field(size_at) {
            Some(size) => size
                .parse()
                .map_err(|_| format!("line {}: size `{size}` is not a number", line + 1))?,
            None => 0,
        };
        push(InventoryRow {
            key,
            version_id: field(version_at).map(str::to_owned),
            etag: field(etag_at).map(crate::s3_store::bare_etag),
            size,
            // Without the column the report lists current objects only.
            is_latest: field(latest_at).is_none_or(|v| v.eq_ignore_ascii_case("true")),
            is_delete_marker: field(marker_at).is_some_and(|v| v.eq_ignore_ascii_case("true")),
        })?;
    }
    Ok(())
}

/// Rows of a Parquet file; columns by their inventory names.
fn parquet_rows(bytes: bytes::Bytes, push: &mut RowSink<'_>) -> Result<(), String> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    let reader = SerializedFileReader::new(bytes).map_err(|err| format!("not a Parquet file: {err}"))?;
    for (index, row) in reader.get_row_iter(None).map_err(|err| err.to_string())?.enumerate() {
        let row = row.map_err(|err| format!("row {index}: {err}"))?;
        let mut listed = InventoryRow {
            key: String::new(),
            version_id: None,
            etag: None,
            size: 0,
            is_latest: true,
            is_delete_marker: false,
        };
        for (name, field) in row.get_column_iter() {
            match (name.as_str(), field) {
                ("key", Field::Str(key)) => listed.key = key.clone(),
                ("version_id", Field::Str(version)) => listed.version_id = Some(version.clone()),
                ("e_tag", Field::Str(etag)) => listed.etag = Some(crate::s3_store::bare_etag(etag)),
                ("size", Field::Long(size)) => listed.size = (*size).max(0) as u64,
                ("is_latest", Field::Bool(latest)) => listed.is_latest = *latest,
                ("is_delete_marker", Field::Bool(marker)) => listed.is_delete_marker = *marker,
                _ => {}
            }
        }
        if listed.key.is_empty() {
            return Err(format!("row {index}: no key"));
        }
        push(listed)?;
    }
    Ok(())
}

/// The Parquet schema S3 Inventory writes (the columns bucketscan reads).
pub const PARQUET_SCHEMA: &str = "message s3.inventory {
  required binary bucket (UTF8);
  required binary key (UTF8);
  optional binary version_id (UTF8);
  optional boolean is_latest;
  optional boolean is_delete_marker;
  optional int64 size;
  optional binary e_tag (UTF8);
}";

/// `rows` of `bucket` as S3 Inventory writes a Parquet data file: for
/// tests and benches, which have no S3 Inventory to run.
pub fn write_parquet(bucket: &str, rows: &[InventoryRow]) -> Result<Vec<u8>, String> {
    use parquet::data_type::{BoolType, ByteArray, ByteArrayType, Int64Type};
    use parquet::file::writer::SerializedFileWriter;
    let schema =
        std::sync::Arc::new(parquet::schema::parser::parse_message_type(PARQUET_SCHEMA).map_err(|e| e.to_string())?);
    let mut out = Vec::new();
    let mut writer = SerializedFileWriter::new(&mut out, schema, Default::default()).map_err(|e| e.to_string())?;
    let mut group = writer.next_row_group().map_err(|e| e.to_string())?;
    let text = |value: &str| ByteArray::from(value.as_bytes().to_vec());
    let present = vec![1i16; rows.len()];
    let mut index = 0;
    while let Some(mut column) = group.next_column().map_err(|e| e.to_string())? {
        let written = match index {
            0 | 1 => {
                let values: Vec<ByteArray> = rows
                    .iter()
                    .map(|row| text(if index == 0 { bucket } else { &row.key }))
                    .collect();
                column.typed::<ByteArrayType>().write_batch(&values, None, None)
            }
            2 | 6 => {
                let field = |row: &InventoryRow| match index {
                    2 => row.version_id.clone(),
                    _ => row.etag.clone(),
                };
                let values: Vec<ByteArray> = rows.iter().filter_map(|r| field(r).map(|v| text(&v))).collect();
                let levels: Vec<i16> = rows.iter().map(|r| i16::from(field(r).is_some())).collect();
                column
                    .typed::<ByteArrayType>()
                    .write_batch(&values, Some(&levels), None)
            }
            3 | 4 => {
                let values: Vec<bool> = rows
                    .iter()
                    .map(|r| if index == 3 { r.is_latest } else { r.is_delete_marker })
                    .collect();
                column.typed::<BoolType>().write_batch(&values, Some(&present), None)
            }
            _ => {
                let values: Vec<i64> = rows.iter().map(|r| r.size as i64).collect();
                column.typed::<Int64Type>().write_batch(&values, Some(&present), None)
            }
        };
        written.map_err(|e| e.to_string())?;
        column.close().map_err(|e| e.to_string())?;
        index += 1;
    }
    group.close().map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn row(key: &str, version: Option<&str>, latest: bool, marker: bool) -> InventoryRow {
        InventoryRow {
            key: key.into(),
            version_id: version.map(str::to_owned),
            etag: Some("9b2cf535f27731c974343645a3985328".into()),
            size: 68,
            is_latest: latest,
            is_delete_marker: marker,
        }
    }

    fn manifest(format: &str, schema: &str, file: &[u8]) -> Manifest {
        let json = serde_json::json!({
            "sourceBucket": "staging",
            "destinationBucket": "arn:aws:s3:::inventory",
            "version": "2016-11-30",
            "fileFormat": format,
            "fileSchema": schema,
            "files": [{"key": "inv/data/1", "size": file.len(), "MD5checksum": hex::encode(md5::Md5::digest(file))}],
        });
        Manifest::parse("manifest.json", json.to_string().as_bytes()).unwrap()
    }

    fn gzip(text: &str) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text.as_bytes()).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn a_csv_report_decodes_keys_and_marks_what_is_not_served() {
        let csv = gzip(concat!(
            "\"staging\",\"in/a+b%2Bc.txt\",\"v2\",\"true\",\"false\",\"68\",\"9b2cf535f27731c974343645a3985328\"\n",
            "\"staging\",\"in/a+b%2Bc.txt\",\"v1\",\"false\",\"false\",\"10\",\"x\"\n",
            "\"staging\",\"gone.txt\",\"v3\",\"true\",\"true\",\"\",\"\"\n",
        ));
        let manifest = manifest(
            "CSV",
            "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, ETag",
            &csv,
        );
        assert_eq!(manifest.destination_bucket, "inventory");
        let rows = manifest.rows(&manifest.files[0], csv.into()).unwrap();
        assert_eq!(rows[0], row("in/a b+c.txt", Some("v2"), true, false));
        assert!(!rows[1].is_current_object() && !rows[2].is_current_object());
        assert_eq!(rows[2].size, 0);
    }

    #[test]
    fn a_parquet_report_reads_back_what_was_written() {
        let written = vec![
            row("in/ü.pdf", None, true, false),
            row("old.pdf", Some("v1"), false, false),
        ];
        let file = write_parquet("staging", &written).unwrap();
        let manifest = manifest("Parquet", PARQUET_SCHEMA, &file);
        assert_eq!(manifest.rows(&manifest.files[0], file.into()).unwrap(), written);
    }

    #[test]
    fn a_file_that_is_not_the_manifests_or_an_orc_report_is_refused_by_name() {
        let csv = gzip("\"staging\",\"a\"\n");
        let manifest = manifest("CSV", "Bucket, Key", &csv);
        let cut = bytes::Bytes::copy_from_slice(&csv[..csv.len() - 4]);
        let err = manifest.rows(&manifest.files[0], cut).unwrap_err();
        assert_eq!(err.file, "inv/data/1");
        assert!(err.detail.contains("bytes read, the manifest lists"), "{err}");
        let mut swapped = csv.clone();
        let last = swapped.len() - 1;
        swapped[last] ^= 1;
        let err = manifest.rows(&manifest.files[0], swapped.into()).unwrap_err();
        assert!(err.detail.contains("is not the manifest's"), "{err}");
        let orc = serde_json::json!({
            "sourceBucket": "s", "destinationBucket": "d", "fileFormat": "ORC", "files": []
        });
        let err = Manifest::parse("s3://d/m.json", orc.to_string().as_bytes()).unwrap_err();
        assert!(err.to_string().starts_with("s3://d/m.json: fileFormat `ORC`"), "{err}");
    }

    #[test]
    fn a_capped_reader_fails_past_its_limit_instead_of_stopping_short() {
        use std::io::Read as _;
        let mut capped = Capped {
            inner: &[7u8; 100][..],
            left: 64,
        };
        let mut out = Vec::new();
        let err = capped.read_to_end(&mut out).unwrap_err();
        assert!(err.to_string().contains("expands past"), "{err}");
    }
}
