package org.hospitalhub.delivery;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import jakarta.annotation.PreDestroy;
import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Named;

import org.apache.camel.CamelContext;
import org.apache.camel.model.Model;
import org.apache.camel.model.RouteDefinition;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.logging.Logger;

/**
 * Consumer lag of the Kafka flows (kafka-source, kafka-ingest): end offsets of the topic minus the group's committed
 * offsets, summed over partitions, as gauge hub_delivery_consumer_lag_records{flow}. Refreshed by the core route
 * hub-kafka-lag (only when Kafka flows exist). Also tells readiness whether the brokers answer.
 */
@ApplicationScoped
@Named("kafkaLag")
public class KafkaLag {

    private static final Logger LOG = Logger.getLogger(KafkaLag.class);

    record KafkaFlow(String flow, String topic, String groupId) {
    }

    private final CamelContext camel;
    private final DeliveryMetrics metrics;
    private final String brokers;
    private volatile List<KafkaFlow> flows;
    private Admin admin;
    private volatile boolean reachable = true;
    private volatile String lastError;

    public KafkaLag(CamelContext camel, DeliveryMetrics metrics,
            @ConfigProperty(name = "hub.kafka.brokers") String brokers) {
        this.camel = camel;
        this.metrics = metrics;
        this.brokers = brokers;
    }

    /** Kafka flows declared by the route files. */
    public List<KafkaFlow> flows() {
        List<KafkaFlow> f = flows;
        if (f == null) {
            f = new ArrayList<>();
            Model model = camel.getCamelContextExtension().getContextPlugin(Model.class);
            for (RouteDefinition rd : model.getRouteDefinitions()) {
                Map<String, Object> p = rd.getTemplateParameters();
                if (p == null || !p.containsKey("topic")) {
                    continue;
                }
                // kafka-ingest instances carry ingestId, kafka-source instances flowId (both have topic and groupId)
                boolean ingest = p.containsKey("ingestId");
                String flow = String.valueOf(ingest ? p.get("ingestId") : p.get("flowId"));
                if (p.containsKey("groupId") && (ingest || p.containsKey("flowId"))) {
                    Object group = p.get("groupId");
                    f.add(new KafkaFlow(flow, camel.resolvePropertyPlaceholders(String.valueOf(p.get("topic"))),
                            camel.resolvePropertyPlaceholders(String.valueOf(group))));
                }
            }
            flows = f;
        }
        return f;
    }

    public boolean inUse() {
        return !flows().isEmpty();
    }

    /** Whether the last look at the brokers succeeded (true when Kafka is not used). */
    public boolean reachable() {
        return reachable;
    }

    public String lastError() {
        return lastError;
    }

    public synchronized void refresh() {
        if (!inUse()) {
            return;
        }
        try {
            Admin a = admin();
            for (KafkaFlow f : flows()) {
                Map<TopicPartition, OffsetAndMetadata> committed = a.listConsumerGroupOffsets(f.groupId())
                        .partitionsToOffsetAndMetadata().get(5, java.util.concurrent.TimeUnit.SECONDS);
                var desc = a.describeTopics(List.of(f.topic())).allTopicNames().get(5, java.util.concurrent.TimeUnit.SECONDS);
                Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
                desc.get(f.topic()).partitions().forEach(p -> latest.put(new TopicPartition(f.topic(), p.partition()),
                        OffsetSpec.latest()));
                Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> ends = a.listOffsets(latest).all()
                        .get(5, java.util.concurrent.TimeUnit.SECONDS);
                long lag = 0;
                for (var e : ends.entrySet()) {
                    OffsetAndMetadata c = committed.get(e.getKey());
                    lag += Math.max(0, e.getValue().offset() - (c == null ? 0 : c.offset()));
                }
                metrics.consumerLag(f.flow(), lag);
            }
            reachable = true;
            lastError = null;
        } catch (java.util.concurrent.ExecutionException e) {
            Throwable cause = e.getCause() == null ? e : e.getCause();
            if (cause instanceof org.apache.kafka.common.errors.UnknownTopicOrPartitionException) {
                reachable = true; // the topic does not exist yet: nothing to consume, nothing lags
                return;
            }
            fail(cause);
        } catch (Exception e) {
            fail(e);
        }
    }

    private void fail(Throwable e) {
        reachable = false;
        lastError = e.getClass().getSimpleName() + ": " + e.getMessage();
        LOG.debugf("Kafka brokers %s not answering: %s", brokers, lastError);
    }

    private Admin admin() {
        if (admin == null) {
            Properties p = new Properties();
            p.setProperty(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
            p.setProperty(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "4000");
            p.setProperty(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "5000");
            p.setProperty(AdminClientConfig.CLIENT_ID_CONFIG, "hospital-hub-lag");
            admin = Admin.create(p);
        }
        return admin;
    }

    @PreDestroy
    synchronized void close() {
        if (admin != null) {
            admin.close(java.time.Duration.ofSeconds(2));
        }
    }
}
