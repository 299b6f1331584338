//! `whistle rebuild [--projection NAME]`: empty read models and project the whole log
//! again, with a progress bar. Safe while servers run (see whistle-projections' rebuild).

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Arc;
use whistle_projections::Projection;

use crate::config::Settings;

pub async fn run(settings: &Settings, only: Option<&str>) -> Result<()> {
    let which: Vec<Projection> = match only {
        None => Projection::ALL.to_vec(),
        Some(name) => match Projection::parse(name) {
            Some(p) => vec![p],
            None => bail!(
                "--projection {name:?}: one of {}",
                Projection::ALL.map(Projection::name).join(", ")
            ),
        },
    };
    let store = whistle_store::Store::connect(&settings.store)
        .await
        .context("connecting to the store")?;
    store.migrate().await.context("running migrations")?;
    let store = Arc::new(store);
    for p in which {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "rebuilding {:<10} {{bar:40}} {{pos}}/{{len}} positions ({{per_sec}}, {{eta}} left)",
                p.name()
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let started = std::time::Instant::now();
        let reached = whistle_projections::rebuild(&store, p, &mut |pos, head| {
            bar.set_length(u64::try_from(head).unwrap_or(0));
            bar.set_position(u64::try_from(pos).unwrap_or(0));
        })
        .await
        .with_context(|| format!("rebuilding {}", p.name()))?;
        bar.finish_and_clear();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{}: rebuilt up to position {reached} in {secs:.2} s ({:.0} positions/s)",
            p.name(),
            reached as f64 / secs.max(1e-9)
        );
    }
    store.close().await;
    Ok(())
}
