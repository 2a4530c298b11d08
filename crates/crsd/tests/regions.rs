//! API 3.0 regions: a request names its region (`X-TC-Region`, tccli's `--region`) and sees
//! that region's zones, as each of the cloud's regional endpoints does; DescribeProductInfo
//! lists every region with Tencent's names.

mod common;

use common::tc3::Tc3;
use common::TestCrsd;
use serde_json::{json, Value};

fn order(zone: Option<i64>) -> Value {
    let mut o = json!({
        "TypeId": 17, "MemSize": 1024, "GoodsNum": 1, "BillingMode": 0,
        "Password": "Region-Password-2024",
    });
    if let Some(z) = zone {
        o["ZoneId"] = json!(z);
    }
    o
}

/// The ids DescribeInstances lists for `c`'s region, with each one's `Region` and `ZoneId`.
async fn listed(c: &Tc3) -> Vec<(String, String, i64)> {
    let r = c.ok("DescribeInstances", json!({ "Limit": 100 })).await;
    let mut out: Vec<(String, String, i64)> = r["InstanceSet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["InstanceId"].as_str().unwrap().to_string(),
                i["Region"].as_str().unwrap().to_string(),
                i["ZoneId"].as_i64().unwrap(),
            )
        })
        .collect();
    out.sort();
    assert_eq!(r["TotalCount"], out.len(), "{r}");
    out
}

#[tokio::test]
async fn a_request_sees_the_zones_of_the_region_it_names() {
    let crsd = TestCrsd::start().await;
    let gz = Tc3::like(&crsd.client());
    let sh = gz.in_region("ap-shanghai");

    // Every region whatever the request names, with Tencent's names.
    let r = sh.ok("DescribeProductInfo", json!({})).await;
    let regions = r["RegionSet"].as_array().unwrap();
    let names: Vec<&str> = regions
        .iter()
        .map(|x| x["RegionId"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "ap-guangzhou",
            "ap-shanghai",
            "ap-hongkong",
            "na-siliconvalley"
        ],
        "{r}"
    );
    let g = &regions[0];
    assert_eq!(g["RegionName"], "华南地区(广州)", "{g}");
    assert_eq!(g["RegionShortName"], "gz", "{g}");
    assert_eq!(g["Area"], "华南地区", "{g}");
    assert_eq!(g["ZoneSet"][0]["ZoneId"], "ap-guangzhou-2", "{g}");
    assert_eq!(g["ZoneSet"][0]["OldZoneId"], 100002, "{g}");
    assert_eq!(g["ZoneSet"][0]["ZoneName"], "广州二区", "{g}");

    // A purchase without ZoneId buys in the region's zone; one naming another region's zone
    // is refused with nothing bought.
    let in_sh = sh.ok("CreateInstances", order(None)).await["InstanceIds"][0]
        .as_str()
        .unwrap()
        .to_string();
    let in_gz = gz.ok("CreateInstances", order(Some(100002))).await["InstanceIds"][0]
        .as_str()
        .unwrap()
        .to_string();
    let r = sh
        .err(
            "CreateInstances",
            order(Some(100002)),
            "InvalidParameterValue",
        )
        .await;
    assert!(
        r["Error"]["Message"]
            .as_str()
            .unwrap()
            .contains("ap-shanghai"),
        "{r}"
    );

    // Each region lists its own; the short name is the same region; no region lists all.
    assert_eq!(
        listed(&sh).await,
        [(in_sh.clone(), "ap-shanghai".into(), 200001)]
    );
    let gz_only = [(in_gz.clone(), "ap-guangzhou".to_string(), 100002)];
    assert_eq!(listed(&gz).await, gz_only);
    assert_eq!(listed(&gz.in_region("gz")).await, gz_only);
    assert_eq!(listed(&gz.in_region("")).await.len(), 2);

    // A region no zone is in: refused, whatever the action, nothing bought.
    let nowhere = gz.in_region("ap-nowhere");
    nowhere
        .err("DescribeInstances", json!({}), "UnsupportedRegion")
        .await;
    nowhere
        .err("CreateInstances", order(None), "UnsupportedRegion")
        .await;
    assert_eq!(listed(&gz.in_region("")).await.len(), 2);
}
