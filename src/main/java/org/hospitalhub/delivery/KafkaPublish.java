package org.hospitalhub.delivery;

import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Named;

import org.apache.camel.CamelContext;
import org.apache.camel.ExchangeProperty;
import org.apache.camel.Message;
import org.apache.camel.component.kafka.KafkaConstants;
import org.apache.camel.support.DefaultMessage;

/**
 * kafka-sink: turns a batch into Kafka records for the Camel Kafka producer, which sends an Iterable body as one
 * record per element and answers once the broker acknowledged all of them (acks=all, idempotent producer). The topic
 * comes from a pattern ({type}, {hospital}, {source} replaced by the event's values, e.g. {@code hub.{type}}); the
 * record key is the event's ordering key, so one patient's or order's events stay in one partition, in order.
 */
@ApplicationScoped
@Named("kafkaPublish")
public class KafkaPublish {

    private static final Pattern TOPIC = Pattern.compile("[A-Za-z0-9._-]{1,249}");

    private final CamelContext camel;

    public KafkaPublish(CamelContext camel) {
        this.camel = camel;
    }

    public List<Message> records(@ExchangeProperty("HubBatch") List<Event> batch,
            @ExchangeProperty("HubTopicPattern") String pattern) {
        List<Message> out = new ArrayList<>(batch.size());
        for (Event e : batch) {
            String topic = pattern.replace("{type}", e.type()).replace("{hospital}", e.hospital())
                    .replace("{source}", e.source());
            if (!TOPIC.matcher(topic).matches()) {
                throw new NonRetryableDeliveryException("event " + e.eventId() + ": topic '" + topic
                        + "' from pattern '" + pattern + "' is not a legal Kafka topic name");
            }
            Message m = new DefaultMessage(camel);
            m.setHeader(KafkaConstants.OVERRIDE_TOPIC, topic);
            m.setHeader(KafkaConstants.KEY, e.key());
            m.setHeader("hub-event-id", e.eventId());
            m.setHeader("hub-event-type", e.type());
            m.setBody(e.envelope());
            out.add(m);
        }
        return out;
    }
}
