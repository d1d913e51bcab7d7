//! `Blacklist`: the version moves with every change, and members are sent only after one.

use std::collections::HashSet;

use shared::blacklist::BlacklistUpdate;
use shared::ids::UserId;
use shared::testing::TestEnv;

shared::conformance!(the_blacklist_version_moves_with_every_change);

fn users(names: &[&str]) -> HashSet<UserId> {
    names.iter().map(|name| name.parse().unwrap()).collect()
}

fn update(version: i64, members: Option<&[&str]>) -> BlacklistUpdate {
    BlacklistUpdate {
        version,
        users: members.map(users),
    }
}

async fn the_blacklist_version_moves_with_every_change(env: TestEnv) {
    let store = env.backends().blacklist();
    let (mallory, trudy) = ("mallory".parse().unwrap(), "trudy".parse().unwrap());
    assert_eq!(
        store.since(-1).await.unwrap(),
        update(0, Some(&[])),
        "an empty list at version 0"
    );
    assert_eq!(store.since(0).await.unwrap(), update(0, None));

    store.set_banned(&mallory, true).await.unwrap();
    store.set_banned(&trudy, true).await.unwrap();
    assert_eq!(
        store.since(0).await.unwrap(),
        update(2, Some(&["mallory", "trudy"]))
    );
    assert_eq!(
        store.since(2).await.unwrap(),
        update(2, None),
        "no reload without a change"
    );

    store.set_banned(&mallory, false).await.unwrap();
    assert_eq!(store.since(2).await.unwrap(), update(3, Some(&["trudy"])));
}
