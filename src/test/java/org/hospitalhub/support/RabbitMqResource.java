package org.hospitalhub.support;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.springframework.amqp.AmqpException;
import org.springframework.amqp.core.BindingBuilder;
import org.springframework.amqp.core.Queue;
import org.springframework.amqp.core.QueueBuilder;
import org.springframework.amqp.core.TopicExchange;
import org.springframework.amqp.rabbit.connection.CachingConnectionFactory;
import org.springframework.amqp.rabbit.core.RabbitAdmin;

import io.quarkus.test.common.QuarkusTestResourceLifecycleManager;

/**
 * The real RabbitMQ on 127.0.0.1:5672 (guest/guest; the test command starts it if it is down). Before the hub starts,
 * the test queues and exchanges (hh-test-*) are deleted and the sink side declared afresh, so each run sees only its
 * own messages. Also a plain client for the tests, and rabbitmqctl.
 */
public class RabbitMqResource implements QuarkusTestResourceLifecycleManager {

    public static final String HOST = "127.0.0.1";
    public static final int PORT = 5672;
    public static final String INGEST_EXCHANGE = "hh-test-in";
    public static final String INGEST_QUEUE = "hh-test-ingest";
    public static final String OUT_EXCHANGE = "hh-test-out";
    /** Bound to his.charge.refunded.O1 / .O2: the order test. */
    public static final String ORDER_QUEUE = "hh-test-sink-order";
    /** Bound to his.charge.refunded.OUT: the outage test. */
    public static final String OUTAGE_QUEUE = "hh-test-sink-outage";
    /** Bound to hrp.stock.received; refuses every message, so the broker nacks. */
    public static final String FULL_QUEUE = "hh-test-sink-full";

    @Override
    public Map<String, String> start() {
        CachingConnectionFactory cf = connectionFactory();
        try {
            RabbitAdmin admin = new RabbitAdmin(cf);
            for (String q : List.of(INGEST_QUEUE, ORDER_QUEUE, OUTAGE_QUEUE, FULL_QUEUE)) {
                admin.deleteQueue(q);
            }
            admin.deleteExchange(INGEST_EXCHANGE);
            admin.deleteExchange(OUT_EXCHANGE);
            TopicExchange out = new TopicExchange(OUT_EXCHANGE, true, false);
            admin.declareExchange(out);
            Queue order = QueueBuilder.durable(ORDER_QUEUE).build();
            Queue outage = QueueBuilder.durable(OUTAGE_QUEUE).build();
            Queue full = QueueBuilder.durable(FULL_QUEUE).maxLength(0).overflow(QueueBuilder.Overflow.rejectPublish).build();
            admin.declareQueue(order);
            admin.declareQueue(outage);
            admin.declareQueue(full);
            admin.declareBinding(BindingBuilder.bind(order).to(out).with("his.charge.refunded.O1"));
            admin.declareBinding(BindingBuilder.bind(order).to(out).with("his.charge.refunded.O2"));
            admin.declareBinding(BindingBuilder.bind(outage).to(out).with("his.charge.refunded.OUT"));
            admin.declareBinding(BindingBuilder.bind(full).to(out).with("hrp.stock.received"));
        } catch (AmqpException e) {
            throw new IllegalStateException("RabbitMQ is not reachable on " + HOST + ":" + PORT + " as guest (bash "
                    + "scripts/test.sh starts it: rabbitmq-server -detached): " + e.getMessage(), e);
        } finally {
            cf.destroy();
        }
        return Map.of(
                "hub.rabbitmq.host", HOST,
                "hub.rabbitmq.port", String.valueOf(PORT),
                "hub.rabbitmq.username", "guest",
                "hub.rabbitmq.password", "guest",
                "hub.rabbitmq.virtual-host", "/");
    }

    @Override
    public void stop() {
    }

    /** A plain client connection, as a source or receiving system would have. */
    public static CachingConnectionFactory connectionFactory() {
        CachingConnectionFactory cf = new CachingConnectionFactory(HOST, PORT);
        cf.setUsername("guest");
        cf.setPassword("guest");
        cf.setConnectionTimeout(5000);
        return cf;
    }

    /** Runs rabbitmqctl (bounded) and returns its output; fails on a non-zero exit. */
    public static String rabbitmqctl(long timeoutSeconds, String... args) {
        String[] cmd = new String[args.length + 1];
        cmd[0] = "rabbitmqctl";
        System.arraycopy(args, 0, cmd, 1, args.length);
        try {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new IllegalStateException("rabbitmqctl " + String.join(" ", args) + " took over " + timeoutSeconds + " s");
            }
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (p.exitValue() != 0) {
                throw new IllegalStateException("rabbitmqctl " + String.join(" ", args) + " failed: " + out);
            }
            return out;
        } catch (IOException e) {
            throw new IllegalStateException("rabbitmqctl is not available: " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    /** Messages in a queue, ready and unacknowledged. */
    public static long depth(String queue) {
        String out = rabbitmqctl(30, "list_queues", "-q", "--no-table-headers", "name", "messages");
        for (String line : out.split("\n")) {
            String[] cols = line.trim().split("\\s+");
            if (cols.length == 2 && cols[0].equals(queue)) {
                return Long.parseLong(cols[1]);
            }
        }
        throw new IllegalStateException("queue " + queue + " not found in: " + out);
    }
}
