package org.hospitalhub.relay;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.UUID;

import javax.sql.DataSource;

import org.hospitalhub.delivery.Database;
import org.jboss.logging.Logger;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;

/**
 * Wakes the other replicas of a relay node when packets were committed for hops they may serve (a client connected
 * there, the link to the parent or a local service when this replica stands by), through PostgreSQL's LISTEN/NOTIFY on
 * the node's own database. A notification is sent after the commit, by a thread of its own, so storing never waits for
 * it; one that is lost (the listener reconnecting, the database restarting) costs only time: the sweep wakes every hop
 * with packets waiting ({@link RelayNode#wakeWaiting}), and the listener does so each time it (re)starts listening.
 * <p>
 * Each replica also says it is there ({@link #announce}, an empty notification every lease check), and a replica
 * publishes hops only while it has heard another one recently: a node running as a single replica sends nothing per
 * packet. A replica that has just started is heard by the others at once (it announces itself when it starts
 * listening) and hears them within a lease check.
 */
final class ReplicaSignals implements AutoCloseable {

    private static final Logger LOG = Logger.getLogger(ReplicaSignals.class);
    static final String CHANNEL = "hub_relay";
    /** PostgreSQL takes payloads below 8,000 bytes; hops are split over several notifications above this. */
    private static final int MAX_PAYLOAD = 7_000;

    private final String node;
    private final DataSource ds;
    /** Wakes what serves a hop in this replica. */
    private final java.util.function.Consumer<String> onHop;
    /** Wakes every hop with packets waiting (after listening (re)started: what was signalled meanwhile). */
    private final Runnable onListening;
    private final long retryMin;
    private final long retryMax;
    /** node id, tab, this replica: the header of every payload (a replica ignores its own notifications). */
    private final String header;
    private final Thread listener;
    private final Thread publisher;
    private final Set<String> toPublish = new LinkedHashSet<>();
    private volatile boolean running = true;
    /** Another replica is there while it was heard within this time (three of its announcements). */
    private final long othersFor;
    private volatile long otherHeardAt = Long.MIN_VALUE / 2;
    private volatile boolean announce;

    ReplicaSignals(String node, DataSource ds, java.time.Duration announceEvery, RelayOptions options,
            java.util.function.Consumer<String> onHop, Runnable onListening) {
        this.node = node;
        this.ds = ds;
        this.onHop = onHop;
        this.onListening = onListening;
        this.retryMin = Math.max(100, options.retryMin().toMillis());
        this.retryMax = options.retryMax().toMillis();
        this.othersFor = announceEvery.toNanos() * 3;
        this.header = node + "\t" + UUID.randomUUID();
        this.listener = new Thread(this::listen, "relay-" + node + "-signals-in");
        this.listener.setDaemon(true);
        this.publisher = new Thread(this::publishLoop, "relay-" + node + "-signals-out");
        this.publisher.setDaemon(true);
    }

    /** Signals for this node on PostgreSQL; null on another database (H2 embedded: one process, no other replica). */
    static ReplicaSignals start(RelayNode node, DataSource ds, java.time.Duration announceEvery) {
        try (Connection c = ds.getConnection()) {
            if (!Database.isPostgres(c)) {
                return null;
            }
        } catch (SQLException e) {
            throw new IllegalStateException("relay node " + node.id() + ": its database cannot be reached: " + e.getMessage(), e);
        }
        ReplicaSignals s = new ReplicaSignals(node.id(), ds, announceEvery, node.options, node::signal, node::wakeWaiting);
        s.listener.start();
        s.publisher.start();
        return s;
    }

    /** Tells the other replicas that packets for these hops were committed (returns at once). */
    void publish(Collection<String> hops) {
        if (hops.isEmpty() || !othersHeard()) {
            return;
        }
        synchronized (toPublish) {
            toPublish.addAll(hops);
            toPublish.notifyAll();
        }
    }

    /** Whether another replica of this node was heard recently. */
    boolean othersHeard() {
        return System.nanoTime() - otherHeardAt < othersFor;
    }

    /** Tells the other replicas that this one is there (an empty notification; called every lease check). */
    void announce() {
        synchronized (toPublish) {
            announce = true;
            toPublish.notifyAll();
        }
    }

    private void publishLoop() {
        while (running) {
            List<String> hops;
            synchronized (toPublish) {
                while (toPublish.isEmpty() && !announce && running) {
                    try {
                        toPublish.wait(1000);
                    } catch (InterruptedException e) {
                        return;
                    }
                }
                hops = new ArrayList<>(toPublish);
                toPublish.clear();
                announce = false;
            }
            if (!running) {
                return;
            }
            try (Connection c = ds.getConnection(); PreparedStatement n = c.prepareStatement("SELECT pg_notify(?, ?)")) {
                if (!c.getAutoCommit()) {
                    c.setAutoCommit(true);
                }
                for (String payload : payloads(hops)) {
                    n.setString(1, CHANNEL);
                    n.setString(2, payload);
                    n.execute();
                }
            } catch (SQLException e) {
                // the others find these packets at their next sweep
                LOG.debugf("Relay node %s: other replicas not notified of %d hops: %s", node, hops.size(), e.getMessage());
            }
        }
    }

    /**
     * Payloads of at most {@link #MAX_PAYLOAD} characters (hop names are ASCII: as many bytes): the header, then one hop
     * per line.
     */
    List<String> payloads(List<String> hops) {
        List<String> out = new ArrayList<>();
        StringBuilder b = new StringBuilder(header).append('\n');
        for (String hop : hops) {
            if (b.length() > header.length() + 1 && b.length() + 1 + hop.length() > MAX_PAYLOAD) {
                out.add(b.toString());
                b = new StringBuilder(header).append('\n');
            }
            b.append(hop).append('\n');
        }
        out.add(b.toString());
        return out;
    }

    private void listen() {
        long pause = retryMin;
        while (running) {
            try (Connection c = ds.getConnection()) {
                if (!c.getAutoCommit()) {
                    c.setAutoCommit(true);
                }
                PGConnection pg = c.unwrap(PGConnection.class);
                try (Statement s = c.createStatement()) {
                    s.execute("LISTEN " + CHANNEL);
                }
                announce(); // the others publish to this replica from now on
                onListening.run(); // what was signalled while this replica was not listening
                pause = retryMin;
                while (running) {
                    PGNotification[] ns = pg.getNotifications(500);
                    if (ns == null) {
                        continue;
                    }
                    for (PGNotification n : ns) {
                        receive(n.getParameter());
                    }
                }
            } catch (SQLException e) {
                if (!running) {
                    return;
                }
                LOG.warnf("Relay node %s: listening for the other replicas' signals failed (listening again in %d ms): %s",
                        node, pause, e.getMessage());
                try {
                    Thread.sleep(pause);
                } catch (InterruptedException ie) {
                    return;
                }
                pause = Math.min(Math.max(pause, retryMax), pause * 2);
            }
        }
    }

    void receive(String payload) {
        int nl = payload.indexOf('\n');
        String from = nl < 0 ? payload : payload.substring(0, nl);
        if (nl < 0 || from.equals(header) || !from.startsWith(node + "\t")) {
            return; // its own, or another node's sharing the database (not supported, but harmless)
        }
        if (!othersHeard()) { // a replica this one had not heard: answer at once, so that it publishes to this one too
            otherHeardAt = System.nanoTime();
            announce();
        }
        otherHeardAt = System.nanoTime();
        for (String hop : payload.substring(nl + 1).split("\n")) {
            if (!hop.isEmpty()) {
                onHop.accept(hop);
            }
        }
    }

    @Override
    public void close() {
        running = false;
        synchronized (toPublish) {
            toPublish.notifyAll();
        }
        publisher.interrupt();
        try {
            listener.join(2_000); // it sees running at its next 500 ms wait
            publisher.join(2_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
