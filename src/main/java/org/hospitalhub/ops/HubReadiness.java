package org.hospitalhub.ops;

import jakarta.enterprise.context.ApplicationScoped;

import org.eclipse.microprofile.health.HealthCheck;
import org.eclipse.microprofile.health.HealthCheckResponse;
import org.eclipse.microprofile.health.HealthCheckResponseBuilder;
import org.eclipse.microprofile.health.Readiness;
import org.hospitalhub.delivery.DeliveryMetrics;
import org.hospitalhub.delivery.KafkaLag;

/**
 * Readiness of the delivery core beyond what Quarkus and Camel report themselves (database, routes, consumers):
 * DOWN while the Kafka brokers the flows use do not answer, and while the dead-letter store is failing (messages
 * are then not acknowledged and come again, so the pod must not take more work).
 */
@Readiness
@ApplicationScoped
public class HubReadiness implements HealthCheck {

    private final KafkaLag kafka;
    private final DeliveryMetrics metrics;

    public HubReadiness(KafkaLag kafka, DeliveryMetrics metrics) {
        this.kafka = kafka;
        this.metrics = metrics;
    }

    @Override
    public HealthCheckResponse call() {
        HealthCheckResponseBuilder b = HealthCheckResponse.named("hub-delivery").up();
        if (kafka.inUse()) {
            b.withData("kafka", kafka.reachable() ? "UP" : "DOWN: " + kafka.lastError());
            if (!kafka.reachable()) {
                b.down();
            }
        }
        long failures = metrics.deadLetterStoreFailuresSinceSuccess();
        if (failures > 0) {
            b.down().withData("dead-letter-store", "DOWN: " + failures + " failed writes since the last success, last at "
                    + metrics.lastDeadLetterStoreFailure());
        } else {
            b.withData("dead-letter-store", "UP");
        }
        return b.build();
    }
}
