//! Listings come from an in-memory copy of the instance table: these check that it filters,
//! sorts and pages like the SQL it replaced, and that every committed write shows at once.

use chrono::{TimeZone, Utc};
use crsd_core::model::{Account, Instance, InstanceStatus, Node, NodeRole};
use crsd_store::{InstanceFilter, InstanceOrder, Store};
use std::sync::atomic::{AtomicU16, Ordering};

static NEXT_PORT: AtomicU16 = AtomicU16::new(7000);

fn instance(id: &str, app_id: i64, name: &str, project_id: i64, created_s: i64) -> Instance {
    let port = NEXT_PORT.fetch_add(3, Ordering::Relaxed);
    Instance {
        id: id.to_string(),
        app_id,
        name: name.to_string(),
        project_id,
        zone_id: 100002,
        region_id: 1,
        type_id: 2,
        mem_mb: 1024,
        status: InstanceStatus::Running,
        vip: "127.0.0.1".into(),
        port: port + 2,
        nodes: vec![
            Node::new(id, 0, NodeRole::Master, port),
            Node::new(id, 1, NodeRole::Replica, port + 1),
        ],
        node_seq: 2,
        vpc_id: 0,
        un_vpc_id: String::new(),
        subnet_id: 0,
        un_subnet_id: String::new(),
        created_at: Utc.timestamp_opt(1_700_000_000 + created_s, 0).unwrap(),
        deadline: Utc.timestamp_opt(1_800_000_000, 0).unwrap(),
        auto_renew: 0,
        billing: crsd_core::model::BillingMode::Prepaid,
        password_hash: "h".into(),
        password_acl: "a".into(),
        admin_secret: "s".into(),
        repl_secret: "r".into(),
        lock_task: None,
        params: Default::default(),
        oom_kills: 0,
    }
}

fn filter(app_id: i64) -> InstanceFilter {
    InstanceFilter {
        app_id,
        limit: 100,
        descending: true,
        ..Default::default()
    }
}

fn ids(list: &[Instance]) -> Vec<&str> {
    list.iter().map(|i| i.id.as_str()).collect()
}

async fn store_with(instances: &[Instance]) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("crsd.db")).await.unwrap();
    let mut tx = store.write().await.unwrap();
    for app_id in 1..=3 {
        let account = Account {
            app_id,
            uin: app_id.to_string(),
            name: format!("account {app_id}"),
            secret_id: format!("id{app_id}"),
            secret_key: format!("key{app_id}"),
            balance: 0,
        };
        tx.insert_account(&account, Utc::now()).await.unwrap();
    }
    for i in instances {
        tx.insert_instance(i).await.unwrap();
    }
    tx.commit().await.unwrap();
    (dir, store)
}

#[tokio::test]
async fn filters_sorts_and_pages_like_the_documented_query() {
    let mut on_other_address = instance("crs-c", 1, "billing", 3, 20);
    on_other_address.vip = "10.0.8.15".into();
    let (_dir, store) = store_with(&[
        instance("crs-b", 1, "shop-cache", 7, 20),
        instance("crs-a", 1, "shop-session", 3, 10),
        on_other_address,
        instance("crs-z", 2, "shop-other-account", 3, 5),
    ])
    .await;

    // Default: newest first, ties broken by id in the same direction; other accounts unseen.
    let (total, list) = store.list_instances(&filter(1)).await.unwrap();
    assert_eq!(total, 3);
    assert_eq!(ids(&list), ["crs-c", "crs-b", "crs-a"]);

    let mut f = filter(1);
    f.descending = false;
    f.order_by = InstanceOrder::Project;
    let (_, list) = store.list_instances(&f).await.unwrap();
    assert_eq!(ids(&list), ["crs-a", "crs-c", "crs-b"]);

    f.order_by = InstanceOrder::Id;
    f.offset = 1;
    f.limit = 1;
    let (total, list) = store.list_instances(&f).await.unwrap();
    assert_eq!((total, ids(&list)), (3, vec!["crs-b"]));

    let mut f = filter(1);
    f.name = Some("shop".into());
    f.project_ids = vec![3, 9];
    let (total, list) = store.list_instances(&f).await.unwrap();
    assert_eq!((total, ids(&list)), (1, vec!["crs-a"]));

    // An address filter matches part of the address (Capital Online's IP).
    let mut f = filter(1);
    f.address = Some("0.8".into());
    let (total, list) = store.list_instances(&f).await.unwrap();
    assert_eq!((total, ids(&list)), (1, vec!["crs-c"]));
    f.address = Some("127.0".into());
    let (total, list) = store.list_instances(&f).await.unwrap();
    assert_eq!((total, ids(&list)), (2, vec!["crs-b", "crs-a"]));

    let mut f = filter(1);
    f.ids = vec!["crs-z".into(), "crs-b".into()];
    let (total, list) = store.list_instances(&f).await.unwrap();
    assert_eq!((total, ids(&list)), (1, vec!["crs-b"]));

    let mut f = filter(1);
    f.offset = 5;
    let (total, list) = store.list_instances(&f).await.unwrap();
    assert_eq!((total, list.len()), (3, 0));

    let (total, list) = store.list_instances(&filter(3)).await.unwrap();
    assert_eq!((total, list.len()), (0, 0));
}

#[tokio::test]
async fn committed_writes_show_at_once_and_rolled_back_ones_never() {
    let (_dir, store) = store_with(&[instance("crs-a", 1, "one", 0, 1)]).await;
    // Fill the in-memory copy.
    assert_eq!(store.list_instances(&filter(1)).await.unwrap().0, 1);

    let mut tx = store.write().await.unwrap();
    tx.insert_instance(&instance("crs-b", 1, "two", 0, 2))
        .await
        .unwrap();
    drop(tx); // rolled back
    assert_eq!(store.list_instances(&filter(1)).await.unwrap().0, 1);

    let mut tx = store.write().await.unwrap();
    tx.insert_instance(&instance("crs-b", 1, "two", 0, 2))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (total, list) = store.list_instances(&filter(1)).await.unwrap();
    assert_eq!((total, ids(&list)), (2, vec!["crs-b", "crs-a"]));

    let mut renamed = list[1].clone();
    renamed.name = "renamed".into();
    let mut tx = store.write().await.unwrap();
    tx.update_instance(&renamed).await.unwrap();
    tx.commit().await.unwrap();
    let (_, list) = store.list_instances(&filter(1)).await.unwrap();
    assert_eq!(list[1].name, "renamed");

    // Deleted instances leave the listing.
    let mut gone = list[0].clone();
    gone.status = InstanceStatus::Deleted;
    let mut tx = store.write().await.unwrap();
    tx.update_instance(&gone).await.unwrap();
    tx.commit().await.unwrap();
    let (total, list) = store.list_instances(&filter(1)).await.unwrap();
    assert_eq!((total, ids(&list)), (1, vec!["crs-a"]));
}

#[tokio::test]
async fn a_listing_racing_writers_never_keeps_an_old_copy() {
    let (_dir, store) = store_with(&[]).await;
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..200 {
                store.list_instances(&filter(1)).await.unwrap();
            }
        })
    };
    for n in 0..50 {
        let mut tx = store.write().await.unwrap();
        tx.insert_instance(&instance(&format!("crs-{n:03}"), 1, "x", 0, n))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        // Whatever the reader did meanwhile, this listing starts after the commit.
        assert_eq!(store.list_instances(&filter(1)).await.unwrap().0, n + 1);
    }
    reader.await.unwrap();
}

#[tokio::test]
async fn cluster_node_ports_are_those_of_cluster_instances_only() {
    let standard = instance("crs-std", 1, "standard", 0, 1);
    let mut cluster = instance("crs-cls", 1, "cluster", 0, 2);
    cluster.type_id = crsd_core::catalog::CLUSTER_TYPE_ID;
    let (_dir, store) = store_with(&[standard.clone(), cluster.clone()]).await;
    let mut tx = store.write().await.unwrap();
    let mut got = tx.cluster_node_ports().await.unwrap();
    got.sort_unstable();
    let want: Vec<u16> = cluster.nodes.iter().map(|n| n.port).collect();
    assert_eq!(got, want);
    let used = tx.used_ports().await.unwrap();
    for n in standard.nodes.iter().chain(&cluster.nodes) {
        assert!(used.contains(&n.port), "{} in {used:?}", n.port);
    }
}
