package org.hospitalhub.support;

import java.util.Map;

import io.quarkus.test.common.QuarkusTestResourceLifecycleManager;

/** Points the hub at the shared real test Kafka broker (a KRaft broker in a child JVM, see {@link KafkaBroker}). */
public class KafkaResource implements QuarkusTestResourceLifecycleManager {

    @Override
    public Map<String, String> start() {
        return Map.of("hub.kafka.brokers", KafkaBroker.shared().bootstrapServers());
    }

    @Override
    public void stop() {
        // the broker lives as long as the test JVM (other test profiles reuse it)
    }
}
