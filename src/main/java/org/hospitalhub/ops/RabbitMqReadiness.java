package org.hospitalhub.ops;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.event.Observes;
import jakarta.inject.Named;
import jakarta.inject.Provider;

import org.apache.camel.CamelContext;
import org.apache.camel.component.springrabbit.SpringRabbitMQEndpoint;
import org.eclipse.microprofile.health.HealthCheck;
import org.eclipse.microprofile.health.HealthCheckResponse;
import org.eclipse.microprofile.health.Readiness;
import org.hospitalhub.delivery.RabbitBroker;
import org.jboss.logging.Logger;
import org.springframework.amqp.rabbit.connection.CachingConnectionFactory;
import org.springframework.amqp.rabbit.connection.Connection;

import io.quarkus.runtime.StartupEvent;
import io.smallrye.health.api.HealthRegistry;

/**
 * Readiness check {@code rabbitmq}: DOWN while the broker cannot be reached. Registered only when a route uses
 * RabbitMQ (an instance of {@code rabbitmq-ingest} or {@code rabbitmq-sink}, or any {@code spring-rabbitmq}
 * endpoint), so the embedded default without a broker stays ready.
 */
@ApplicationScoped
public class RabbitMqReadiness implements HealthCheck {

    public static final String NAME = "rabbitmq";
    private static final Logger LOG = Logger.getLogger(RabbitMqReadiness.class);

    private final RabbitBroker broker;
    /** Looked up only when the check runs: without RabbitMQ routes no connection factory is made. */
    private final Provider<CachingConnectionFactory> connectionFactory;

    public RabbitMqReadiness(RabbitBroker broker,
            @Named(RabbitBroker.CONNECTION_FACTORY) Provider<CachingConnectionFactory> connectionFactory) {
        this.broker = broker;
        this.connectionFactory = connectionFactory;
    }

    void register(@Observes StartupEvent started, CamelContext camel, @Readiness HealthRegistry readiness) {
        boolean used = camel.getEndpoints().stream().anyMatch(SpringRabbitMQEndpoint.class::isInstance);
        if (used) {
            readiness.register(NAME, this);
            LOG.infof("RabbitMQ is in use: readiness check '%s' registered for %s", NAME, broker.address());
        }
    }

    @Override
    public HealthCheckResponse call() {
        var response = HealthCheckResponse.named(NAME).withData("broker", broker.address());
        try {
            Connection c = connectionFactory.get().createConnection(); // the shared connection; closing it is a no-op
            if (c.isOpen()) {
                return response.up().build();
            }
            return response.down().withData("error", "RabbitMQ connection to " + broker.address() + " is closed").build();
        } catch (RuntimeException e) {
            Throwable root = e;
            while (root.getCause() != null && root.getCause() != root) {
                root = root.getCause();
            }
            return response.down().withData("error", "RabbitMQ broker " + broker.address() + " is unreachable: "
                    + root.getClass().getSimpleName() + ": " + root.getMessage()).build();
        }
    }
}
