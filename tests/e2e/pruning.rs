//! Zone maps: a table sorted on its SORTKEY and stored as Parquet row groups with statistics
//! skips the row groups a predicate on the sort key excludes. `EXPLAIN ANALYZE` reports the
//! nodes' scan metrics (`row_groups_pruned_statistics=N total → M matched`); the answer
//! must not change.

use blueshift_tests::pg;

use crate::common::scratch_cluster;

/// `(total, matched)` summed over every `row_groups_pruned_statistics` metric in `plan`.
fn row_groups(plan: &[String]) -> (u64, u64) {
    let mut sums = (0, 0);
    for line in plan {
        let Some(at) = line.find("row_groups_pruned_statistics=") else {
            continue;
        };
        let rest = &line[at + "row_groups_pruned_statistics=".len()..];
        let mut numbers = rest
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<u64>().unwrap());
        sums.0 += numbers.next().unwrap();
        sums.1 += numbers.next().unwrap();
    }
    sums
}

#[tokio::test]
async fn a_predicate_on_the_sort_key_skips_row_groups() {
    let cluster = scratch_cluster().await;
    let _logs = cluster.logs_on_panic();
    let client = cluster.client().await.unwrap();
    pg::execute(
        &client,
        "create table pruning_t (k bigint, v varchar(20)) diststyle even sortkey(k)",
    )
    .await
    .unwrap();
    // 75,000 rows per slice: two row groups each (65,536 rows per row group), the second
    // holding the largest keys of the slice.
    pg::execute(
        &client,
        "insert into pruning_t select value, 'x' from generate_series(1, 300000)",
    )
    .await
    .unwrap();

    let sql = "select count(*), min(k), max(k) from pruning_t where k > 290000";
    let plan: Vec<String> = pg::query(&client, &format!("explain analyze {sql}"))
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.into_iter().next().flatten().unwrap_or_default())
        .collect();
    let (total, matched) = row_groups(&plan);
    assert!(
        total >= 8 && matched < total && matched > 0,
        "row groups: {total} total, {matched} matched:\n{}",
        plan.join("\n")
    );

    let rows = pg::query(&client, sql).await.unwrap();
    assert_eq!(
        rows,
        vec![vec![
            Some("10000".to_string()),
            Some("290001".to_string()),
            Some("300000".to_string())
        ]]
    );
    pg::execute(&client, "drop table pruning_t").await.unwrap();
}
