//! Ids and UPNs reach Graph byte for byte, whatever characters they hold.

use crate::support::Harness;
use fleetup::simulator::SimConfig;

#[tokio::test]
async fn odd_ids_and_guest_upns_arrive_byte_identical() {
    let pairs = [
        (
            "jo.smith_fabrikam.com#EXT#@contoso.onmicrosoft.com",
            "MCMjMTk6YTJjNjk2ZDYtYzA0YS00ZjBlLWE2N2ItNGY2NjU1YjM1YjU5IyMxYmE0ZTk5MC03OWY=",
        ),
        ("4f302b5e-4562-4792-8f6f-01842cc39122", "a/b+c==/d"),
        ("$admin@contoso.com", "inst#with?query&chars"),
        ("o'neil@contoso.com", "it's%20literal"),
        ("$o'hara@contoso.com", "x"),
        ("first+tag@contoso.com", "plus+and space"),
        ("józef.żółć@contoso.com", "ünïcode/ïd="),
    ];
    let harness = Harness::start(SimConfig::default()).await;
    let rows: Vec<String> = pairs
        .iter()
        .map(|(user, installation)| {
            let mut writer = csv::Writer::from_writer(vec![]);
            writer.write_record([user, installation]).unwrap();
            String::from_utf8(writer.into_inner().unwrap())
                .unwrap()
                .trim_end()
                .to_owned()
        })
        .collect();
    let input = harness.input("user,installation", &rows);

    let summary = harness.run(&harness.config(&input)).await;

    assert!(summary.all_succeeded(), "{summary}");
    let books = harness.sim.books();
    for (user, installation) in pairs {
        assert_eq!(
            books.calls_for(user, installation),
            1,
            "{user} / {installation} did not arrive intact: {:?}",
            books.calls.keys().collect::<Vec<_>>()
        );
    }
}
