package org.hospitalhub.relay;

import java.util.List;

import org.hospitalhub.relay.client.Packet;
import org.jboss.logging.Logger;

/** Hands the packets of one local service's mailbox to the service, in order, on its own thread. */
final class ServiceDispatcher {

    private static final Logger LOG = Logger.getLogger(ServiceDispatcher.class);
    static final int MAX_ATTEMPTS = 5;

    private final RelayNode node;
    private final String hop;
    private final LocalService service;
    private final Thread thread;
    private final Object signal = new Object();
    private boolean signalled;
    private volatile boolean running = true;

    ServiceDispatcher(RelayNode node, String name, LocalService service) {
        this.node = node;
        this.hop = Routing.SERVICE_PREFIX + name;
        this.service = service;
        this.thread = new Thread(this::run, "relay-" + node.id() + "-" + name);
        this.thread.setDaemon(true);
    }

    void start() {
        thread.start();
    }

    void wake() {
        synchronized (signal) {
            signalled = true;
            signal.notifyAll();
        }
    }

    private void run() {
        while (running) {
            try {
                List<PacketStore.Stored> rows = node.store.pending(hop, 0, 50);
                for (PacketStore.Stored r : rows) {
                    try {
                        service.onPacket(Packet.fromJson(HttpEndpoint.JSON.readTree(r.body())));
                    } catch (Exception e) {
                        if (r.attempts() + 1 >= MAX_ATTEMPTS) { // a packet the service cannot handle must not block the rest
                            node.store.markDead(List.of(r), "service " + hop.substring(4) + " at node " + node.id()
                                    + " failed " + MAX_ATTEMPTS + " times: " + e, node.clock.instant());
                            LOG.warnf("Relay node %s: packet %s dead-lettered after %d failures of service %s: %s", node.id(),
                                    r.packetId(), MAX_ATTEMPTS, hop, e.toString());
                            continue;
                        }
                        node.store.markAttempt(List.of(r), e.toString());
                        throw e;
                    }
                    node.store.acknowledge(hop, r.seq(), node.clock.instant());
                }
                if (rows.isEmpty()) {
                    synchronized (signal) {
                        if (!signalled) {
                            signal.wait(node.options.sweepPeriod().toMillis());
                        }
                        signalled = false;
                    }
                }
            } catch (InterruptedException e) {
                return;
            } catch (Exception e) {
                if (!running) {
                    return;
                }
                LOG.warnf("Relay node %s: service %s failed on a packet (tried again): %s", node.id(), hop, e.toString());
                try {
                    Thread.sleep(node.options.retryMin().toMillis());
                } catch (InterruptedException ie) {
                    return;
                }
            }
        }
    }

    void close() {
        running = false;
        thread.interrupt();
    }
}
