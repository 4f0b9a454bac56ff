//! Retained messages, kept in memory. The broker ships no store of its own (its default drops
//! them); ours is the broker's topic tree, so a subscription finds its retained messages by
//! the same matching as live ones. Retained messages do not survive a restart of the hub.

use async_trait::async_trait;
use rmqtt::retain::{RetainStorage, RetainTree};
use rmqtt::types::{Retain, TimedValue, TopicFilter, TopicName};
use rmqtt::utils::Counter;
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::RwLock;

#[derive(Default)]
pub(crate) struct MemoryRetainer {
    tree: RwLock<RetainTree<TimedValue<Retain>>>,
    count: Counter,
}

#[async_trait]
impl RetainStorage for MemoryRetainer {
    fn enable(&self) -> bool {
        true
    }

    async fn set(
        &self,
        topic: &TopicName,
        retain: Retain,
        expiry: Option<Duration>,
    ) -> rmqtt::Result<()> {
        let topic = rmqtt::topic::Topic::from_str(topic)?;
        // The listeners set no default expiry, which the broker passes on as zero: keep forever.
        let expiry = expiry.filter(|expiry| !expiry.is_zero());
        let mut tree = self.tree.write().await;
        // An empty retained message clears the topic's retained message (MQTT 3.3.1.3).
        let replaced = tree.remove(&topic).is_some();
        if retain.publish.payload.is_empty() {
            if replaced {
                self.count.dec();
            }
        } else {
            if !replaced {
                self.count.inc();
            }
            tree.insert(&topic, TimedValue::new(retain, expiry));
        }
        Ok(())
    }

    async fn get(&self, filter: &TopicFilter) -> rmqtt::Result<Vec<(TopicName, Retain)>> {
        let filter = rmqtt::topic::Topic::from_str(filter)?;
        let tree = self.tree.read().await;
        Ok(tree
            .matches(&filter)
            .into_iter()
            .filter(|(_, value)| !value.is_expired())
            .map(|(topic, value)| (TopicName::from(topic.to_string()), value.into_value()))
            .collect())
    }

    async fn count(&self) -> isize {
        self.count.count()
    }

    async fn max(&self) -> isize {
        self.count.max()
    }
}
