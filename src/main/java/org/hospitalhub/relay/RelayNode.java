package org.hospitalhub.relay;

import java.io.IOException;
import java.sql.SQLException;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;

import javax.sql.DataSource;

import org.hospitalhub.delivery.GroupCommitter;
import org.hospitalhub.delivery.Leases;
import org.hospitalhub.relay.client.Address;
import org.hospitalhub.relay.client.Packet;
import org.hospitalhub.relay.client.SendResult;
import org.jboss.logging.Logger;

import com.fasterxml.jackson.databind.JsonNode;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Metrics;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.http.HttpServer;
import io.vertx.core.http.HttpServerOptions;
import io.vertx.ext.web.Router;
import io.vertx.ext.web.RoutingContext;
import io.vertx.ext.web.handler.BodyHandler;

/**
 * One relay node: a plain object built from its topology, tokens, database and ports, so the hub creates one from
 * its configuration ({@link RelayApp}) and a test can build a whole tree in one JVM. Packets are stored in the node's
 * database before the previous hop gets its acknowledgement, then leave per hop in order: to the parent through the
 * {@link Uplink} (this node connects up, as its clients connect to it: links cross firewalls from below), to a child
 * node or a client through that peer's mailbox, which the peer reads by long-polling HTTP or gets pushed over TCP.
 */
public final class RelayNode implements AutoCloseable {

    private static final Logger LOG = Logger.getLogger(RelayNode.class);

    final Topology topology;
    final RelayOptions options;
    final PacketStore store;
    final Routing routing;
    final Vertx vertx;
    final Clock clock;
    private final RelayTokens tokens;
    private final String parentToken;
    private final int httpPort;
    private final int tcpPort;
    private final String host;
    private final boolean ownVertx;
    private final Map<String, LocalService> services = new ConcurrentHashMap<>();
    private ConsultationService consultation;
    private final FileStore files;
    private final Duration fileRetention;
    private final java.util.concurrent.atomic.AtomicBoolean replicating = new java.util.concurrent.atomic.AtomicBoolean();
    private final Map<String, ServiceDispatcher> serviceDispatchers = new ConcurrentHashMap<>();
    private volatile GroupCommitter<PacketStore.Request, List<SendResult>> storeWriter;
    final HttpEndpoint http;
    private TcpEndpoint tcp;
    private HttpServer httpServer;
    private volatile Uplink uplink;
    private long sweepTimer = -1;
    private volatile boolean running;
    private boolean closed;
    /** Null when this process is the node's only replica; else the lease that picks the replica running the link. */
    private final Leases leases;
    private final String leaseName;
    /** This replica runs the node's link to its parent, its local services and the sweep (see {@link #checkLease}). */
    private volatile boolean active;
    private long leaseTimer = -1;
    private volatile Future<?> leaseJob;
    /** Wakes the other replicas (PostgreSQL LISTEN/NOTIFY); null with a single replica or on H2. */
    private ReplicaSignals signals;
    private final Counter stored;
    private final Counter duplicates;
    private final Counter dead;
    private final Counter replayed;
    final MeterRegistry registry;

    private RelayNode(Builder b) {
        this.topology = b.topology;
        this.options = b.options;
        this.tokens = b.tokens;
        this.parentToken = b.parentToken;
        this.httpPort = b.httpPort;
        this.tcpPort = b.tcpPort;
        this.host = b.host;
        this.clock = b.clock;
        this.ownVertx = b.vertx == null;
        this.vertx = b.vertx == null ? Vertx.vertx() : b.vertx;
        this.store = new PacketStore(b.dataSource, topology.node(), topology.audit());
        this.routing = new Routing(topology, services::containsKey);
        this.registry = b.registry == null ? Metrics.globalRegistry : b.registry;
        this.http = new HttpEndpoint(this);
        this.stored = counter("stored");
        this.duplicates = counter("duplicate");
        this.dead = counter("dead");
        this.replayed = Counter.builder("hub_relay_dead_letters_replayed_total")
                .description("Dead letters an operator put back in a hop's queue").tag("node", topology.node()).register(registry);
        io.micrometer.core.instrument.Gauge.builder("hub_relay_tcp_connections", this, n -> n.tcp == null ? 0 : n.tcp.connectedPeers().size())
                .description("Clients and child nodes connected to this relay node over TCP").tag("node", topology.node())
                .register(registry);
        if (topology.parent().isPresent()) { // the top node has no link up: no gauge, so "0 for 5 minutes" can alert
            io.micrometer.core.instrument.Gauge.builder("hub_relay_parent_connected", this, n -> n.parentConnected() ? 1 : 0)
                    .description("1 while this relay node's link to its parent is up").tag("node", topology.node()).register(registry);
        }
        this.leases = b.leases;
        this.leaseName = "relay:" + topology.node();
        io.micrometer.core.instrument.Gauge.builder("hub_relay_replica_active", this, n -> n.active ? 1 : 0)
                .description("1 on the replica of this relay node that runs its link to the parent, its local services and "
                        + "its sweep").tag("node", topology.node()).register(registry);
        this.fileRetention = b.fileRetention;
        this.files = b.fileDir == null ? null : new FileStore(b.fileDir,
                b.s3 == null ? null : new S3Backend(b.s3, options.requestTimeout()).check(),
                topology.parent().map(Topology.Parent::url).filter(java.util.Objects::nonNull), parentToken, options.requestTimeout());
        topology.consultation().ifPresent(c -> {
            consultation = new ConsultationService(this, b.dataSource, c);
            services.put(ConsultationService.NAME, consultation);
        });
        for (String id : tokens.ids()) {
            if (!topology.clients().containsKey(id) && !topology.children().containsKey(id)) {
                throw new IllegalArgumentException("hub.relay.tokens has a token for '" + id + "', which is neither a client nor a "
                        + "child node of " + topology.node() + " in the topology");
            }
        }
        if (topology.parent().isPresent() && (parentToken == null || parentToken.isBlank())) {
            throw new IllegalArgumentException("node " + topology.node() + " has parent " + topology.parent().get().id()
                    + " but no token for it (hub.relay.parent-token, env HUB_RELAY_PARENT_TOKEN)");
        }
    }

    private Counter counter(String outcome) {
        return Counter.builder("hub_relay_packets_total").description("Packets accepted by this relay node, by outcome")
                .tag("node", topology.node()).tag("outcome", outcome).register(registry);
    }

    public static Builder builder() {
        return new Builder();
    }

    public String id() {
        return topology.node();
    }

    public Topology topology() {
        return topology;
    }

    /** Starts listening (HTTP on its own port if one is given, TCP), connects to the parent, starts the sweeper. */
    public synchronized RelayNode start() {
        running = true;
        storeWriter = new GroupCommitter<>("relay-" + topology.node() + "-store", MAX_GROUP, Integer.MAX_VALUE,
                r -> r.batch().size(), this::write);
        List<Future<?>> listening = new ArrayList<>();
        if (httpPort > 0) {
            Router router = Router.router(vertx);
            mount(router);
            httpServer = vertx.createHttpServer(new HttpServerOptions().setHost(host).setPort(httpPort));
            listening.add(httpServer.requestHandler(router).listen());
        }
        if (tcpPort > 0) {
            tcp = new TcpEndpoint(this);
            listening.add(tcp.listen(host, tcpPort));
        }
        for (Future<?> f : listening) {
            try {
                f.toCompletionStage().toCompletableFuture().get(30, java.util.concurrent.TimeUnit.SECONDS);
            } catch (Exception e) {
                close();
                throw new IllegalStateException("relay node " + id() + " cannot listen: " + e.getMessage(), e);
            }
        }
        if (leases == null) {
            activate();
        } else {
            long every = Math.max(200, leases.ttl().toMillis() / 4); // renewed with half its time left: never lapses
            signals = ReplicaSignals.start(this, store.dataSource(), Duration.ofMillis(every));
            checkLease();
            leaseTimer = vertx.setPeriodic(every, t -> {
                ReplicaSignals rs = signals;
                if (rs != null) {
                    rs.announce();
                }
                if (leaseJob == null || leaseJob.isComplete()) {
                    leaseJob = vertx.executeBlocking(() -> {
                        checkLease();
                        return null;
                    }, false);
                }
            });
        }
        sweepTimer = vertx.setPeriodic(options.sweepPeriod().toMillis(), t -> sweep());
        LOG.infof("Relay node %s (%s) started: parent %s, children %s, clients %s, http %s, tcp %s, files %s%s", id(),
                topology.level(), topology.parent().map(p -> p.id() + " over " + p.transport()).orElse("none (top server)"),
                topology.children().keySet(), topology.clients().keySet(), httpPort > 0 ? host + ":" + httpPort : "shared",
                tcpPort > 0 ? host + ":" + tcpPort : "off",
                files == null ? "none" : files.describe(), leases == null ? "" : ", replica " + leases.owner() + " ("
                        + (active ? "active" : "standing by") + ", signals " + (signals == null ? "none: H2" : "LISTEN/NOTIFY") + ")");
        return this;
    }

    /**
     * Several replicas of one node share its database: every replica accepts packets and serves the clients and child
     * nodes connected to it, but only the one holding the lease {@code relay:<node>} runs what must run once: the link to
     * the parent (the parent keeps one connection per child: two links would keep displacing each other), the local services and
     * the sweep. Another replica takes over when the holder stops (at once) or dies (after {@code hub.lease.ttl}).
     */
    synchronized void checkLease() {
        if (!running) {
            return;
        }
        boolean held = leases.hold(leaseName).held();
        if (held && !active) {
            activate();
        } else if (!held && active) {
            standBy();
        }
    }

    private void activate() {
        topology.parent().ifPresent(p -> {
            Uplink u = new Uplink(this, p, parentToken);
            uplink = u;
            u.start();
        });
        active = true;
        services.keySet().forEach(this::startService);
        if (leases != null) {
            LOG.infof("Relay node %s: replica %s runs the node's link to its parent, services and sweep", id(), leases.owner());
        }
    }

    private void standBy() {
        active = false;
        Uplink u = uplink;
        uplink = null;
        if (u != null) {
            u.close();
        }
        serviceDispatchers.values().forEach(ServiceDispatcher::close);
        serviceDispatchers.clear();
        LOG.warnf("Relay node %s: replica %s lost the lease %s and stands by (it still serves its own connections)", id(),
                leases.owner(), leaseName);
    }

    /** Whether this replica runs the node's link to its parent, local services and sweep (always, with one replica). */
    public boolean active() {
        return active;
    }

    /** Mounts the client/node endpoints ({@code /relay/v1/*}) on a router (the hub's main one, or this node's own). */
    public void mount(Router router) {
        router.route("/relay/v1/*").order(-101).handler(HttpEndpoint::refuseForms);
        router.route("/relay/v1/*").order(-100).handler(BodyHandler.create().setBodyLimit(
                (long) options.maxPacketBytes() * Math.min(options.maxPacketsPerRequest(), 64) + 4096));
        router.route("/relay/v1/*").order(-99).handler(this::handle);
    }

    public void handle(RoutingContext ctx) {
        http.handle(ctx);
    }

    /** Registers a service reachable as {@code name@<this node>} (e.g. consultation); call before start. */
    public void register(String name, LocalService service) {
        services.put(name, service);
        if (running && active) {
            startService(name);
        }
    }

    private void startService(String name) {
        serviceDispatchers.computeIfAbsent(name, n -> {
            ServiceDispatcher d = new ServiceDispatcher(this, n, services.get(n));
            d.start();
            return d;
        });
    }

    // ---- accepting packets -----------------------------------------------------------------------------------------

    /** The peer a token belongs to, if it is one of this node's clients or child nodes. */
    Optional<Peer> authenticate(String token) {
        return tokens.authenticate(token).map(id -> topology.clients().containsKey(id)
                ? new Peer(topology.clientAddress(id), Peer.Kind.CLIENT)
                : new Peer(id, Peer.Kind.CHILD));
    }

    /** Refuses a peer using a transport the topology does not give it. */
    void checkTransport(Peer peer, Topology.Transport used) {
        Topology.Transport allowed = peer.kind() == Peer.Kind.CHILD ? topology.children().get(peer.id()).transport()
                : topology.clients().get(org.hospitalhub.relay.client.Address.local(peer.id()));
        if (allowed != null && !allowed.allows(used)) {
            throw new Refusal(403, peer.id() + " must connect to node " + id() + " over " + allowed, "transport",
                    "transport-of-link", null);
        }
    }

    /**
     * Validates a request's packets (all or nothing: a {@link Refusal} names the field and rule) and checks that the
     * peer may send each of them, before anything is stored.
     */
    List<PacketStore.Incoming> validate(JsonNode packets, Peer peer) {
        if (packets == null || !packets.isArray()) {
            throw new Refusal(400, "the body must be {\"packets\": [ ... ]}", "packets", "array", null);
        }
        if (packets.isEmpty() || packets.size() > options.maxPacketsPerRequest()) {
            throw new Refusal(400, "a request carries 1 to " + options.maxPacketsPerRequest() + " packets, got " + packets.size(),
                    "packets", "size", null);
        }
        List<PacketStore.Incoming> out = new ArrayList<>();
        for (JsonNode n : packets) {
            Packet p;
            try {
                p = Packet.fromJson(n);
            } catch (Packet.InvalidPacketException e) {
                throw new Refusal(400, e.getMessage(), e.field(), e.rule(), e.packetId());
            }
            if (p.ttl() > options.maxTtl().toSeconds()) {
                throw new Refusal(400, "ttl must be at most " + options.maxTtl().toSeconds() + " s (hub.relay.max-ttl)", "ttl",
                        "max", p.packetId());
            }
            String body = p.toJson().toString();
            if (body.length() > options.maxPacketBytes()) { // chars <= bytes: a cheap first check
                throw new Refusal(413, "packet larger than " + options.maxPacketBytes() + " bytes (hub.relay.max-packet-size); "
                        + "files travel through the file store, packets carry references", "parameters", "max-size", p.packetId());
            }
            routing.authorize(p, peer);
            out.add(new PacketStore.Incoming(p, body, routing.route(p, peer)));
        }
        return out;
    }

    /** Stores validated packets and wakes the hops they go to; blocks until they are committed (call off the event loop). */
    List<SendResult> store(List<PacketStore.Incoming> batch, Peer from) throws SQLException {
        try {
            return storeAsync(batch, from).get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new SQLException("interrupted while the packets were being stored", e);
        } catch (java.util.concurrent.ExecutionException e) {
            if (e.getCause() instanceof SQLException sql) {
                throw sql;
            }
            if (e.getCause() instanceof RuntimeException r) {
                throw r;
            }
            throw new SQLException(e.getCause());
        }
    }

    /**
     * Queues validated packets for the store writer; completes once they are committed (the caller acknowledges
     * then), exceptionally when they could not be stored (the caller does not acknowledge; the sender sends again).
     * The writer commits every request waiting at that moment in one transaction (group commit): thousands of
     * clients sending a packet each cost one commit per group, not one each, and no transaction waits for another's
     * lock on a hop counter. Requests are stored in the order they were queued.
     */
    CompletableFuture<List<SendResult>> storeAsync(List<PacketStore.Incoming> batch, Peer from) {
        GroupCommitter<PacketStore.Request, List<SendResult>> w = storeWriter;
        if (!running || w == null) {
            return CompletableFuture.failedFuture(new SQLException("relay node " + id() + " is not running"));
        }
        return w.submit(new PacketStore.Request(batch, from.id(), from.kind() == Peer.Kind.PARENT));
    }

    /** Most packets one group transaction takes. */
    private static final int MAX_GROUP = 1000;

    /** The store writer's work: one group in one transaction, then the counters and the hops to wake. */
    private List<List<SendResult>> write(List<PacketStore.Request> group) throws SQLException {
        List<List<SendResult>> results = store.storeAll(group, clock.instant());
        java.util.Set<String> hops = new java.util.LinkedHashSet<>();
        for (int g = 0; g < group.size(); g++) {
            List<PacketStore.Incoming> batch = group.get(g).batch();
            List<SendResult> rs = results.get(g);
            for (int i = 0; i < rs.size(); i++) {
                switch (rs.get(i).status()) {
                    case STORED -> {
                        stored.increment();
                        hops.add(batch.get(i).decision().hop());
                    }
                    case DUPLICATE -> duplicates.increment();
                    case DEAD -> {
                        dead.increment();
                        LOG.warnf("Relay node %s: packet %s from %s to %s dead-lettered on arrival: %s", id(), rs.get(i).packetId(),
                                batch.get(i).packet().from(), batch.get(i).packet().to(), rs.get(i).reason());
                    }
                }
            }
        }
        signalStored(hops);
        return results;
    }

    /**
     * Packets were committed for these hops: wake what serves them here, and tell the other replicas about the hops
     * that may be served there (a client's connection; the link and services when this replica stands by).
     */
    void signalStored(java.util.Collection<String> hops) {
        hops.forEach(this::signal);
        ReplicaSignals rs = signals;
        if (rs != null) {
            Uplink u = uplink;
            List<String> elsewhere = new ArrayList<>();
            for (String hop : hops) {
                boolean servedHere = active && (hop.startsWith(Routing.SERVICE_PREFIX) || u != null && hop.equals(u.parentId()));
                if (!servedHere) {
                    elsewhere.add(hop);
                }
            }
            rs.publish(elsewhere);
        }
    }

    /**
     * Packets pulled from the parent (on the uplink's receive thread, everything that arrived together): stored in
     * one request, routed down, acknowledged after.
     */
    void acceptFromParent(List<Packet> packets, String parentId) throws SQLException {
        Peer parent = new Peer(parentId, Peer.Kind.PARENT);
        List<PacketStore.Incoming> batch = new ArrayList<>();
        for (Packet p : packets) {
            batch.add(new PacketStore.Incoming(p, p.toJson().toString(), routing.route(p, parent)));
        }
        store(batch, parent);
    }

    /**
     * Sends a packet from a service of this node (e.g. a consultation offer), stored like any other; completes when
     * stored. {@code from} must be {@code service@<this node>}.
     */
    public CompletableFuture<SendResult> sendLocal(Packet p) {
        Peer local = new Peer(p.from(), Peer.Kind.LOCAL);
        try {
            routing.authorize(p, local);
        } catch (Refusal r) {
            return CompletableFuture.failedFuture(r);
        }
        return vertx.executeBlocking(() -> store(List.of(new PacketStore.Incoming(p, p.toJson().toString(),
                routing.route(p, local))), local).get(0), false).toCompletionStage().toCompletableFuture();
    }

    /** Something new is waiting for this hop: wake its poller, TCP session, the uplink or the service. */
    void signal(String hop) {
        Uplink u = uplink;
        if (u != null && hop.equals(u.parentId())) {
            u.wake();
            return;
        }
        if (hop.startsWith(Routing.SERVICE_PREFIX)) {
            ServiceDispatcher d = serviceDispatchers.get(hop.substring(Routing.SERVICE_PREFIX.length()));
            if (d != null) {
                d.wake();
            }
            return;
        }
        http.wake(hop);
        TcpEndpoint t = tcp;
        if (t != null) {
            t.wake(hop);
        }
    }

    /** How often the sweep forgets delivered packets past the retention (days, by default). */
    static final Duration PURGE_PERIOD = Duration.ofMinutes(10);
    private volatile Instant nextPurge = Instant.MIN;
    /** The sweep's database jobs in flight, which {@link #close()} waits for (see there). */
    private volatile Future<?> sweepJob;
    private volatile Future<?> pendingJob;
    private volatile Future<?> replicationJob;

    private void sweep() {
        if (!running) {
            return;
        }
        if (!active) { // another replica sweeps; this one only wakes its own connections below
            wakeWaiting();
            return;
        }
        sweepJob = vertx.executeBlocking(() -> {
            Instant now = clock.instant();
            int expired = store.expire(now);
            if (expired > 0) {
                dead.increment(expired);
                LOG.warnf("Relay node %s: %d packets passed their ttl and were dead-lettered", id(), expired);
            }
            if (!now.isBefore(nextPurge)) { // a pass over the whole table: not every sweep
                nextPurge = now.plus(PURGE_PERIOD);
                int purged = store.purge(now.minus(options.retention()));
                LOG.debugf("Relay node %s: %d delivered packets older than %s forgotten", id(), purged, options.retention());
                purgeFiles(now);
                dropOrphanMarks(now.minus(ORPHAN_MARK_AGE));
            }
            if (consultation != null) {
                consultation.checkDeadlines();
            }
            return null;
        }, false).onFailure(e -> LOG.warnf("Relay node %s: sweep failed (retried next period): %s", id(), e.getMessage()));
        replicateFiles();
        wakeWaiting();
        Uplink u = uplink;
        if (u != null) {
            u.wake();
        }
        serviceDispatchers.values().forEach(ServiceDispatcher::wake);
    }

    /**
     * A safety net for wake-ups that a lost signal would not give: the peers with packets waiting (one query, not one
     * per connected peer: a node may hold thousands of idle connections).
     */
    void wakeWaiting() {
        if (pendingJob != null && !pendingJob.isComplete()) {
            return;
        }
        pendingJob = vertx.executeBlocking(store::hopsWithPending, false).onSuccess(hops -> {
            TcpEndpoint t = tcp;
            for (String hop : hops) {
                http.wake(hop);
                if (t != null) {
                    t.wake(hop);
                }
            }
        }).onFailure(e -> LOG.debugf("Relay node %s: pending hops not read: %s", id(), e.getMessage()));
    }

    FileStore files() {
        return files;
    }

    /**
     * How long a mark "to send to the parent" may wait for its file before it counts as abandoned (far longer than a
     * file takes to be written to the store once its last chunk arrived).
     */
    static final Duration ORPHAN_MARK_AGE = Duration.ofHours(1);

    /** Drops marks made before {@code cutoff} for files that never arrived (S3: see S3Backend). Returns how many. */
    int dropOrphanMarks(Instant cutoff) {
        if (files == null) {
            return 0;
        }
        try {
            int n = files.dropOrphanMarks(cutoff);
            if (n > 0) {
                LOG.warnf("Relay node %s: %d marks of files to send to the parent dropped from %s: their files never "
                        + "arrived (stores that failed and were not retried)", id(), n, files.describe());
            }
            return n;
        } catch (IOException e) {
            LOG.warnf("Relay node %s: dropping marks of files that never arrived failed (tried again later): %s", id(), e.getMessage());
            return 0;
        }
    }

    /** Deletes files kept longer than {@code hub.relay.file-retention} (none without one). Returns how many. */
    int purgeFiles(Instant now) {
        if (files == null || fileRetention == null) {
            return 0;
        }
        try {
            int n = files.purge(now.minus(fileRetention));
            if (n > 0) {
                LOG.infof("Relay node %s: %d files older than %s deleted from %s", id(), n, fileRetention, files.describe());
            }
            return n;
        } catch (IOException e) {
            LOG.warnf("Relay node %s: deleting files older than %s failed (tried again later): %s", id(), fileRetention, e.getMessage());
            return 0;
        }
    }

    /** Pushes complete files up to the parent, one run at a time (also at every sweep: retried until it has them). */
    void replicateFiles() {
        if (files == null || !running || !active || topology.parent().isEmpty() || !replicating.compareAndSet(false, true)) {
            return;
        }
        replicationJob = vertx.executeBlocking(() -> files.replicateUp(), false).onComplete(ar -> replicating.set(false));
    }

    // ---- operators -------------------------------------------------------------------------------------------------

    public List<PacketStore.Audit> audit(String sender, String target, String command, Instant from, Instant to, long after,
            int limit) throws SQLException {
        return store.audit(sender, target, command, from, to, after, limit);
    }

    public List<PacketStore.Dead> deadLetters(String target, String sender, long after, int limit) throws SQLException {
        return store.deadLetters(target, sender, after, limit);
    }

    /**
     * An operator replays dead letter {@code id} ({@link PacketStore#replay}: one transaction, or a {@link Refusal}
     * and nothing changed), then wakes the hop it was queued for, as a newly stored packet does. {@code ttlSeconds}:
     * how long it may wait from now; null for the time it was last given. {@code by} is the operator's name.
     */
    public PacketStore.Replay replay(long id, Long ttlSeconds, String by) throws SQLException {
        PacketStore.Replay r = store.replay(id, ttlSeconds, options.maxTtl(), by, this::reroute, clock.instant());
        replayed.increment();
        LOG.infof("Relay node %s: dead letter %d (packet %s from %s to %s, dead at %s) replayed by %s: queued for %s "
                + "(seq %d) until %s", id(), r.id(), r.packetId(), r.sender(), r.target(), r.deadHop(), r.replayedBy(), r.hop(),
                r.hopSeq(), r.expiresAt());
        signalStored(List.of(r.hop()));
        return r;
    }

    /** What an operator's replay of several dead letters did. */
    public record Replays(int replayed, List<Map<String, Object>> skipped, Long next) {
    }

    /**
     * Replays the dead letters {@link #deadLetters} lists for these filters after {@code after}, up to {@code limit},
     * each in its own transaction; those that cannot be replayed are skipped with the reason and stay dead letters.
     * {@code next} is the last id looked at when {@code limit} were (page on with it), else null.
     */
    public Replays replayAll(String target, String sender, long after, int limit, Long ttlSeconds, String by) throws SQLException {
        List<PacketStore.Dead> dead = deadLetters(target, sender, after, limit);
        int replayed = 0;
        List<Map<String, Object>> skipped = new ArrayList<>();
        for (PacketStore.Dead d : dead) {
            try {
                replay(d.id(), ttlSeconds, by);
                replayed++;
            } catch (Refusal r) {
                Map<String, Object> s = new LinkedHashMap<>();
                s.put("id", d.id());
                s.put("packetId", d.packetId());
                s.put("status", r.status());
                s.put("error", r.getMessage());
                skipped.add(s);
            }
        }
        return new Replays(replayed, skipped, dead.size() == limit ? dead.get(dead.size() - 1).id() : null);
    }

    /** The route of a stored packet now, from who handed it to this node. */
    private Routing.Decision reroute(Packet p, String receivedFrom, boolean fromParent) {
        Peer.Kind kind;
        if (fromParent) {
            kind = Peer.Kind.PARENT;
        } else if (topology.children().containsKey(receivedFrom)) {
            kind = Peer.Kind.CHILD;
        } else if (Address.local(receivedFrom) != null && Address.node(receivedFrom).equals(id())
                && topology.clients().containsKey(Address.local(receivedFrom))) {
            kind = Peer.Kind.CLIENT;
        } else {
            kind = Peer.Kind.LOCAL;
        }
        return routing.route(p, new Peer(receivedFrom, kind));
    }

    public Map<String, Object> status() throws SQLException {
        Map<String, Object> s = new LinkedHashMap<>();
        s.put("node", id());
        s.put("level", topology.level());
        s.put("top", topology.isTop());
        s.put("audit", topology.audit());
        s.put("localShortcut", topology.localShortcut());
        if (leases != null) {
            s.put("replica", Map.of("id", leases.owner(), "active", active));
        }
        Uplink u = uplink;
        topology.parent().ifPresent(p -> {
            Map<String, Object> parent = new LinkedHashMap<>();
            parent.put("id", p.id());
            parent.put("transport", p.transport().name().toLowerCase());
            parent.put("connected", u != null && u.connected());
            if (!active) {
                parent.put("linkedBy", "the active replica (this one stands by)");
            }
            s.put("parent", parent);
        });
        s.put("children", topology.children().keySet());
        s.put("clients", topology.clients().keySet());
        s.put("connectedTcp", tcp == null ? List.of() : tcp.connectedPeers());
        s.put("httpPollers", http.recentPollers());
        s.put("packets", store.counts());
        return s;
    }

    public boolean parentConnected() {
        Uplink u = uplink;
        return u != null && u.connected();
    }

    /** Drops every TCP connection of this node (tests: a link cut; the peers reconnect by themselves). */
    public void dropTcpConnections() {
        TcpEndpoint t = tcp;
        if (t != null) {
            t.dropAll();
        }
    }

    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        running = false;
        if (sweepTimer >= 0) {
            vertx.cancelTimer(sweepTimer);
        }
        if (leaseTimer >= 0) {
            vertx.cancelTimer(leaseTimer);
        }
        if (signals != null) {
            signals.close();
        }
        // a sweep already on a worker thread finishes before the node lets its data source go: left running, it kept
        // an embedded H2 database open past the node's end (seen in the tests: the JVM's exit then waited on it)
        await(sweepJob);
        await(pendingJob);
        if (files != null) {
            files.closing(); // a replication run stops at its next chunk (and the parent keeps what it has)
            await(replicationJob);
        }
        if (uplink != null) {
            uplink.close();
        }
        serviceDispatchers.values().forEach(ServiceDispatcher::close);
        serviceDispatchers.clear();
        if (storeWriter != null) {
            storeWriter.close();
        }
        http.close();
        await(httpServer == null ? null : httpServer.close());
        if (tcp != null) {
            await(tcp.close());
        }
        if (files != null) {
            files.close();
        }
        if (leases != null && active) {
            active = false;
            leases.release(leaseName); // another replica takes the link over at its next check, not after the ttl
        }
        if (ownVertx) {
            await(vertx.close());
        }
        LOG.infof("Relay node %s stopped", id());
    }

    private static void await(Future<?> f) {
        if (f == null) {
            return;
        }
        try {
            f.toCompletionStage().toCompletableFuture().get(10, java.util.concurrent.TimeUnit.SECONDS);
        } catch (Exception e) {
            LOG.debugf("closing: %s", e.getMessage());
        }
    }

    boolean running() {
        return running;
    }

    public static final class Builder {
        private Topology topology;
        private RelayTokens tokens = RelayTokens.parse("");
        private String parentToken;
        private DataSource dataSource;
        private Vertx vertx;
        private int httpPort;
        private int tcpPort;
        private String host = "0.0.0.0";
        private RelayOptions options = RelayOptions.defaults();
        private MeterRegistry registry;
        private Clock clock = Clock.systemUTC();
        private java.nio.file.Path fileDir;

        private S3Backend.Settings s3;
        private Leases leases;

        /**
         * Runs this node as one of several replicas sharing its database: the lease {@code relay:<node>} in
         * {@code leases} picks the replica that runs the link to the parent, the local services and the sweep; the others
         * accept packets and serve their own connections. Without it this process is the node's only replica.
         */
        public Builder replicas(Leases leases) {
            this.leases = leases;
            return this;
        }

        /** Folder of this node's file store (uploads under way; complete files too unless {@link #s3}); none: no file endpoints. */
        public Builder fileDir(java.nio.file.Path dir) {
            this.fileDir = dir;
            return this;
        }

        private Duration fileRetention;

        /** Files kept this long, then deleted (once the parent has them); null: kept for good. */
        public Builder fileRetention(Duration d) {
            this.fileRetention = d;
            return this;
        }

        /** Complete files in this S3-compatible bucket instead of the folder. */
        Builder s3(S3Backend.Settings settings) {
            this.s3 = settings;
            return this;
        }

        public Builder topology(Topology t) {
            this.topology = t;
            return this;
        }

        public Builder tokens(RelayTokens t) {
            this.tokens = t;
            return this;
        }

        public Builder parentToken(String t) {
            this.parentToken = t;
            return this;
        }

        public Builder dataSource(DataSource ds) {
            this.dataSource = ds;
            return this;
        }

        /** The Vert.x instance to run on (the hub's); without one the node makes and closes its own. */
        public Builder vertx(Vertx v) {
            this.vertx = v;
            return this;
        }

        /** Own HTTP port for {@code /relay/v1}; 0 when the hub mounts the endpoints on its main port. */
        public Builder httpPort(int port) {
            this.httpPort = port;
            return this;
        }

        /** TCP port; 0 for no TCP. */
        public Builder tcpPort(int port) {
            this.tcpPort = port;
            return this;
        }

        public Builder host(String host) {
            this.host = host;
            return this;
        }

        public Builder options(RelayOptions o) {
            this.options = o;
            return this;
        }

        public Builder registry(MeterRegistry r) {
            this.registry = r;
            return this;
        }

        public Builder clock(Clock c) {
            this.clock = c;
            return this;
        }

        public RelayNode build() {
            java.util.Objects.requireNonNull(topology, "topology");
            java.util.Objects.requireNonNull(dataSource, "dataSource");
            return new RelayNode(this);
        }
    }
}
