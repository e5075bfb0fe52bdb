//! CSV files of a run: written with a header from the rows' field names, read back into the
//! same rows. Shared by the results writer and the node sampler ([`crate::resources`]), below
//! both.

use std::path::Path;

use crate::LoadgenError;

/// Writes `rows` as a CSV file with a header from their field names.
pub fn write_csv<T: serde::Serialize>(
    path: &Path,
    rows: impl IntoIterator<Item = T>,
) -> Result<(), LoadgenError> {
    let mut w = csv::Writer::from_path(path).map_err(|e| LoadgenError::results(path, e))?;
    for row in rows {
        w.serialize(row)
            .map_err(|e| LoadgenError::results(path, e))?;
    }
    w.flush().map_err(|e| LoadgenError::results(path, e))
}

/// Reads a CSV file written by [`write_csv`].
pub fn read_csv<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, LoadgenError> {
    let mut r = csv::Reader::from_path(path).map_err(|e| LoadgenError::results(path, e))?;
    r.deserialize()
        .collect::<Result<Vec<T>, _>>()
        .map_err(|e| LoadgenError::results(path, e))
}
