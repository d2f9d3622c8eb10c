package org.hospitalhub.delivery;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Named;

import org.apache.camel.Exchange;
import org.apache.camel.InvalidPayloadException;
import org.apache.camel.Message;
import org.apache.camel.component.springrabbit.SpringRabbitMQConstants;
import org.springframework.amqp.core.MessageDeliveryMode;

/**
 * Turns one event of a batch into the RabbitMQ message the {@code rabbitmq-sink} template publishes: the canonical
 * envelope as UTF-8 JSON, persistent, message id = eventId, AMQP type = event type, header {@code hub-key} = the
 * event key, and the routing key from the flow's pattern.
 */
@ApplicationScoped
@Named("rabbitPublication")
public class RabbitPublication {

    /** Exchange property: the routing-key pattern of the flow, with {type}, {key}, {hospital}, {source}. */
    public static final String ROUTING_KEY = "HubRoutingKey";
    /** Exchange property: the event being published, for error messages. */
    public static final String EVENT_ID = "HubEventId";
    public static final String KEY_HEADER = "hub-key";

    public void prepare(Exchange exchange) throws InvalidPayloadException {
        Message m = exchange.getMessage();
        Event e = m.getMandatoryBody(Event.class);
        String pattern = exchange.getProperty(ROUTING_KEY, "{type}", String.class);
        m.removeHeaders("*");
        m.setHeader(SpringRabbitMQConstants.ROUTING_OVERRIDE_KEY, routingKey(pattern, e));
        m.setHeader(SpringRabbitMQConstants.MESSAGE_ID, e.eventId());
        m.setHeader(SpringRabbitMQConstants.TYPE, e.type());
        m.setHeader(SpringRabbitMQConstants.CONTENT_TYPE, "application/json");
        m.setHeader(SpringRabbitMQConstants.CONTENT_ENCODING, "UTF-8");
        m.setHeader(SpringRabbitMQConstants.DELIVERY_MODE, MessageDeliveryMode.PERSISTENT);
        if (e.key() != null) {
            m.setHeader(KEY_HEADER, e.key());
        }
        exchange.setProperty(EVENT_ID, e.eventId());
        m.setBody(e.envelope());
    }

    /** The routing key: the pattern with {type}, {key} (empty if the event has none), {hospital}, {source} filled. */
    static String routingKey(String pattern, Event e) {
        return pattern.replace("{type}", e.type())
                .replace("{key}", e.key() == null ? "" : e.key())
                .replace("{hospital}", e.hospital())
                .replace("{source}", e.source());
    }
}
