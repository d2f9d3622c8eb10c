package org.hospitalhub.delivery;

import java.time.Duration;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.inject.Disposes;
import jakarta.enterprise.inject.Produces;
import jakarta.inject.Named;
import jakarta.inject.Singleton;

import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.logging.Logger;
import org.springframework.amqp.rabbit.connection.CachingConnectionFactory;
import org.springframework.amqp.rabbit.connection.CachingConnectionFactory.ConfirmType;
import org.springframework.amqp.rabbit.config.RetryInterceptorBuilder;
import org.springframework.amqp.rabbit.retry.ImmediateRequeueMessageRecoverer;
import org.springframework.retry.interceptor.RetryOperationsInterceptor;

/**
 * The RabbitMQ broker of the {@code rabbitmq-ingest} and {@code rabbitmq-sink} templates: one Spring
 * {@link CachingConnectionFactory}, named {@value #CONNECTION_FACTORY}, from {@code hub.rabbitmq.*} (environment
 * {@code HUB_RABBITMQ_*}). Publisher confirms are on (simple type: the sink waits for the broker's confirm of each
 * message). Nothing connects until a RabbitMQ route starts, so the embedded default needs no broker.
 * <p>
 * Also the ingest consumers' retry ({@value #INGEST_RETRY}): a message whose processing fails (the store is down) is
 * tried {@code hub.rabbitmq.ingest.retry-attempts} times with growing delays, then requeued. The component's own
 * setting {@code rejectAndDontRequeue=false} is not enough: without a recoverer Spring's retry logs "Message(s)
 * dropped on recovery" and the message is acknowledged, i.e. lost.
 */
@ApplicationScoped
public class RabbitBroker {

    public static final String CONNECTION_FACTORY = "rabbitConnectionFactory";
    public static final String INGEST_RETRY = "rabbitIngestRetry";

    private static final Logger LOG = Logger.getLogger(RabbitBroker.class);

    private final String host;
    private final int port;
    private final String username;
    private final String password;
    private final String virtualHost;
    private final Duration connectionTimeout;

    public RabbitBroker(@ConfigProperty(name = "hub.rabbitmq.host") String host,
            @ConfigProperty(name = "hub.rabbitmq.port") int port,
            @ConfigProperty(name = "hub.rabbitmq.username") String username,
            @ConfigProperty(name = "hub.rabbitmq.password") String password,
            @ConfigProperty(name = "hub.rabbitmq.virtual-host") String virtualHost,
            @ConfigProperty(name = "hub.rabbitmq.connection-timeout") Duration connectionTimeout) {
        this.host = host;
        this.port = port;
        this.username = username;
        this.password = password;
        this.virtualHost = virtualHost;
        this.connectionTimeout = connectionTimeout;
    }

    /** Where the hub connects, for logs and health (never the password). */
    public String address() {
        return username + "@" + host + ":" + port + " vhost " + virtualHost;
    }

    @Produces
    @Singleton
    @Named(CONNECTION_FACTORY)
    CachingConnectionFactory connectionFactory() {
        CachingConnectionFactory cf = new CachingConnectionFactory(host, port);
        cf.setUsername(username);
        cf.setPassword(password);
        cf.setVirtualHost(virtualHost);
        cf.setConnectionTimeout((int) connectionTimeout.toMillis());
        cf.setPublisherConfirmType(ConfirmType.SIMPLE);
        cf.setConnectionNameStrategy(f -> "hospital-hub");
        LOG.infof("RabbitMQ connection factory for %s (publisher confirms on)", address());
        return cf;
    }

    @Produces
    @Singleton
    @Named(INGEST_RETRY)
    RetryOperationsInterceptor ingestRetry(@ConfigProperty(name = "hub.rabbitmq.ingest.retry-attempts") int attempts,
            @ConfigProperty(name = "hub.rabbitmq.ingest.retry-delay") Duration delay,
            @ConfigProperty(name = "hub.rabbitmq.ingest.retry-multiplier") double multiplier,
            @ConfigProperty(name = "hub.rabbitmq.ingest.retry-max-delay") Duration maxDelay) {
        return RetryInterceptorBuilder.stateless()
                .maxAttempts(Math.max(1, attempts))
                .backOffOptions(Math.max(1, delay.toMillis()), multiplier, Math.max(delay.toMillis(), maxDelay.toMillis()))
                .recoverer(new ImmediateRequeueMessageRecoverer())
                .build();
    }

    void close(@Disposes @Named(CONNECTION_FACTORY) CachingConnectionFactory cf) {
        cf.destroy();
    }
}
