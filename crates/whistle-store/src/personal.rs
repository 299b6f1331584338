//! Residents' personal data (DESIGN §6): stored apart from the event payloads, written and
//! erased only inside appends (`AppendRequest::personal`), so a report and its contact
//! record commit together and an erasure removes the record in the same transaction as
//! the `ContactErased` event that says so. Read by id for the roles that may see it.

use sqlx::Row;
use uuid::Uuid;

use crate::error::StoreError;
use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;
use crate::store::Store;

/// A resident's contact details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalData {
    pub contact_id: Uuid,
    pub case_id: String,
    pub name: String,
    pub phone: String,
    pub address: String,
}

/// A change to the personal-data table, applied with an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersonalOp {
    Put(PersonalData),
    Erase(Uuid),
}

fn corrupt(err: sqlx::Error) -> StoreError {
    StoreError::Corrupt(err.to_string())
}

pub(crate) async fn pg_apply(
    tx: &mut sqlx::PgConnection,
    ops: &[&PersonalOp],
) -> Result<(), sqlx::Error> {
    for op in ops {
        match op {
            PersonalOp::Put(p) => {
                sqlx::query(
                    "INSERT INTO personal_data (contact_id, case_id, name, phone, address) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (contact_id) DO NOTHING",
                )
                .bind(p.contact_id)
                .bind(p.case_id.as_str())
                .bind(p.name.as_str())
                .bind(p.phone.as_str())
                .bind(p.address.as_str())
                .execute(&mut *tx)
                .await?;
            }
            PersonalOp::Erase(id) => {
                sqlx::query("DELETE FROM personal_data WHERE contact_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    Ok(())
}

pub(crate) async fn lite_apply(
    tx: &mut sqlx::SqliteConnection,
    ops: &[&PersonalOp],
    now_us: i64,
) -> Result<(), StoreError> {
    for op in ops {
        match op {
            PersonalOp::Put(p) => {
                sqlx::query(
                    "INSERT INTO personal_data (contact_id, case_id, name, phone, address, \
                     recorded_at) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (contact_id) DO NOTHING",
                )
                .bind(p.contact_id.hyphenated().to_string())
                .bind(p.case_id.as_str())
                .bind(p.name.as_str())
                .bind(p.phone.as_str())
                .bind(p.address.as_str())
                .bind(now_us)
                .execute(&mut *tx)
                .await?;
            }
            PersonalOp::Erase(id) => {
                sqlx::query("DELETE FROM personal_data WHERE contact_id = $1")
                    .bind(id.hyphenated().to_string())
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    Ok(())
}

impl PgStore {
    pub async fn get_personal(&self, id: Uuid) -> Result<Option<PersonalData>, StoreError> {
        let row = sqlx::query(
            "SELECT contact_id, case_id, name, phone, address FROM personal_data \
             WHERE contact_id = $1",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            Ok(PersonalData {
                contact_id: r.try_get("contact_id").map_err(corrupt)?,
                case_id: r.try_get("case_id").map_err(corrupt)?,
                name: r.try_get("name").map_err(corrupt)?,
                phone: r.try_get("phone").map_err(corrupt)?,
                address: r.try_get("address").map_err(corrupt)?,
            })
        })
        .transpose()
    }

    pub async fn count_personal(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM personal_data")
            .fetch_one(&self.read)
            .await?;
        crate::decode_u64("personal data count", n)
    }
}

impl SqliteStore {
    pub async fn get_personal(&self, id: Uuid) -> Result<Option<PersonalData>, StoreError> {
        let row = sqlx::query(
            "SELECT contact_id, case_id, name, phone, address FROM personal_data \
             WHERE contact_id = $1",
        )
        .bind(id.hyphenated().to_string())
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            let id: String = r.try_get("contact_id").map_err(corrupt)?;
            Ok(PersonalData {
                contact_id: Uuid::parse_str(&id)
                    .map_err(|e| StoreError::Corrupt(format!("contact id {id:?}: {e}")))?,
                case_id: r.try_get("case_id").map_err(corrupt)?,
                name: r.try_get("name").map_err(corrupt)?,
                phone: r.try_get("phone").map_err(corrupt)?,
                address: r.try_get("address").map_err(corrupt)?,
            })
        })
        .transpose()
    }

    pub async fn count_personal(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM personal_data")
            .fetch_one(&self.read)
            .await?;
        crate::decode_u64("personal data count", n)
    }
}

impl Store {
    /// A contact record (`None`: never stored, or erased).
    pub async fn get_personal(&self, id: Uuid) -> Result<Option<PersonalData>, StoreError> {
        match self {
            Store::Postgres(s) => s.get_personal(id).await,
            Store::Sqlite(s) => s.get_personal(id).await,
        }
    }

    /// Stored contact records (tests prove erasure with it).
    pub async fn count_personal(&self) -> Result<u64, StoreError> {
        match self {
            Store::Postgres(s) => s.count_personal().await,
            Store::Sqlite(s) => s.count_personal().await,
        }
    }
}
