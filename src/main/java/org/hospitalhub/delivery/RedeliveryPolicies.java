package org.hospitalhub.delivery;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.inject.Produces;
import jakarta.inject.Named;

import org.apache.camel.Exchange;
import org.apache.camel.Predicate;
import org.apache.camel.Processor;
import org.apache.camel.http.base.HttpOperationFailedException;
import org.eclipse.microprofile.config.Config;

/**
 * Per-flow redelivery policy for the shared dead-letter channel (routes/core/error-handling.camel.yaml).
 * Defaults follow the hospitals' practice: one immediate retry, one after 10 s, then the dead-letter channel after
 * three failed attempts. Per flow: {@code hub.flow.<flow>.redelivery.maximum-redeliveries} (-1: until it works),
 * {@code .delays}
 * (delay before each redelivery), {@code .backoff-multiplier} (above 1: exponential past the listed delays),
 * {@code .max-delay}; the same keys under {@code hub.redelivery.*} set the defaults. Errors retrying cannot fix
 * (invalid data, HTTP 4xx other than 408/429) are not retried.
 */
@ApplicationScoped
public class RedeliveryPolicies {

    public static final String FIRST_FAILURE = "HubFirstFailure";
    /** Failed attempts so far; a property, because useOriginalMessage drops the redelivery headers. */
    public static final String ATTEMPTS = "HubAttempts";

    private final Config config;
    private final DeliveryMetrics metrics;
    private final Map<String, Policy> policies = new ConcurrentHashMap<>();

    public RedeliveryPolicies(Config config, DeliveryMetrics metrics) {
        this.config = config;
        this.metrics = metrics;
    }

    public record Policy(int maximumRedeliveries, List<Duration> delays, double backoffMultiplier, Duration maxDelay) {

        /** Delay before redelivery number {@code n} (1-based). */
        public Duration delayBefore(int n) {
            if (delays.isEmpty()) {
                return Duration.ZERO;
            }
            if (n <= delays.size()) {
                return delays.get(n - 1);
            }
            Duration last = delays.get(delays.size() - 1);
            double millis = last.toMillis() * Math.pow(backoffMultiplier, n - delays.size());
            return Duration.ofMillis((long) Math.min(millis, maxDelay.toMillis()));
        }
    }

    public Policy policy(String flow) {
        return policies.computeIfAbsent(flow == null ? "" : flow, f -> new Policy(
                value(f, "maximum-redeliveries", Integer.class, 2),
                config.getOptionalValues("hub.flow." + f + ".redelivery.delays", Duration.class)
                        .or(() -> config.getOptionalValues("hub.redelivery.delays", Duration.class))
                        .orElse(List.of(Duration.ZERO, Duration.ofSeconds(10))),
                value(f, "backoff-multiplier", Double.class, 1.0),
                value(f, "max-delay", Duration.class, Duration.ofMinutes(5))));
    }

    private <T> T value(String flow, String key, Class<T> type, T fallback) {
        return config.getOptionalValue("hub.flow." + flow + ".redelivery." + key, type)
                .or(() -> config.getOptionalValue("hub.redelivery." + key, type)).orElse(fallback);
    }

    /** Whether retrying can help with this failure at all. */
    public static boolean retryable(Throwable t) {
        for (Throwable c = t; c != null; c = c.getCause()) {
            if (c instanceof NonRetryableDeliveryException) {
                return false;
            }
            if (c instanceof HttpOperationFailedException h) {
                int s = h.getStatusCode();
                return !(s >= 400 && s < 500) || s == 408 || s == 429;
            }
            if (c == c.getCause()) {
                break;
            }
        }
        return true;
    }

    static Throwable failure(Exchange exchange) {
        Throwable t = exchange.getException();
        return t != null ? t : exchange.getProperty(Exchange.EXCEPTION_CAUGHT, Throwable.class);
    }

    /** Number of failed attempts of this exchange so far. */
    public static int attempts(Exchange exchange) {
        return exchange.getProperty(ATTEMPTS, 0, Integer.class);
    }

    static String flowOf(Exchange exchange) {
        return exchange.getProperty("HubFlow", String.class);
    }

    /** retryWhile of the dead-letter channel. */
    @Produces
    @Named("redeliveryDecision")
    Predicate redeliveryDecision() {
        return exchange -> {
            if (!retryable(failure(exchange))) {
                return false;
            }
            int max = policy(flowOf(exchange)).maximumRedeliveries();
            return max < 0 || attempts(exchange) <= max; // negative: retry until it works (broker-publishing flows)
        };
    }

    /** onExceptionOccurred: notes the first failure and sets the delay of the coming redelivery. */
    @Produces
    @Named("redeliveryDelay")
    Processor redeliveryDelay() {
        return exchange -> {
            if (exchange.getProperty(FIRST_FAILURE) == null) {
                exchange.setProperty(FIRST_FAILURE, java.time.Instant.now());
            }
            int failed = attempts(exchange) + 1;
            exchange.setProperty(ATTEMPTS, failed);
            Duration d = policy(flowOf(exchange)).delayBefore(failed);
            exchange.getMessage().setHeader(Exchange.REDELIVERY_DELAY, d.toMillis());
        };
    }

    /** onRedelivery: counts redeliveries per flow. */
    @Produces
    @Named("redeliveryCounter")
    Processor redeliveryCounter() {
        return exchange -> metrics.redelivery(String.valueOf(flowOf(exchange)));
    }
}
