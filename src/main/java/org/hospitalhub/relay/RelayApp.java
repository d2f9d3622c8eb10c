package org.hospitalhub.relay;

import java.net.URI;
import java.net.URISyntaxException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Locale;
import java.util.Optional;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.event.Observes;

import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.hospitalhub.delivery.Database;
import org.hospitalhub.delivery.Leases;
import org.jboss.logging.Logger;

import io.micrometer.core.instrument.MeterRegistry;
import io.quarkus.runtime.ShutdownEvent;
import io.quarkus.runtime.StartupEvent;
import io.vertx.core.Vertx;
import io.vertx.ext.web.Router;
import io.vertx.ext.web.handler.BodyHandler;

/**
 * The hub's relay node, created once at startup from {@code hub.relay.*} when {@code hub.relay.enabled=true}: the
 * topology from {@code hub.relay.topology-file}, tokens from the environment, the hub's database, the hub's Vert.x.
 * Its HTTP endpoints are mounted on the hub's HTTP port under {@code /relay/v1}; TCP listens on
 * {@code hub.relay.tcp-port}.
 */
@ApplicationScoped
public class RelayApp {

    private static final Logger LOG = Logger.getLogger(RelayApp.class);

    private final boolean enabled;
    private final Optional<String> topologyFile;
    private final Optional<String> tokens;
    private final Optional<String> tokensFile;
    private final Optional<String> parentToken;
    private final int tcpPort;
    private final String tcpHost;
    private final RelayOptions options;
    private final String fileDir;
    private final String fileStore;
    private final Duration fileRetention;
    private final S3Backend.Settings s3;
    private final Database db;
    private final Leases leases;
    private final Vertx vertx;
    private final MeterRegistry registry;
    private volatile RelayNode node;

    public RelayApp(@ConfigProperty(name = "hub.relay.enabled") boolean enabled,
            @ConfigProperty(name = "hub.relay.topology-file") Optional<String> topologyFile,
            @ConfigProperty(name = "hub.relay.tokens") Optional<String> tokens,
            @ConfigProperty(name = "hub.relay.tokens-file") Optional<String> tokensFile,
            @ConfigProperty(name = "hub.relay.parent-token") Optional<String> parentToken,
            @ConfigProperty(name = "hub.relay.tcp-port") int tcpPort,
            @ConfigProperty(name = "hub.relay.tcp-host") String tcpHost,
            @ConfigProperty(name = "hub.relay.heartbeat") Duration heartbeat,
            @ConfigProperty(name = "hub.relay.poll-max-wait") Duration pollMaxWait,
            @ConfigProperty(name = "hub.relay.parent-poll-wait") Duration parentPollWait,
            @ConfigProperty(name = "hub.relay.request-timeout") Duration requestTimeout,
            @ConfigProperty(name = "hub.relay.max-packet-size") int maxPacketBytes,
            @ConfigProperty(name = "hub.relay.max-ttl") Duration maxTtl,
            @ConfigProperty(name = "hub.relay.retry-min") Duration retryMin,
            @ConfigProperty(name = "hub.relay.retry-max") Duration retryMax,
            @ConfigProperty(name = "hub.relay.sweep-period") Duration sweepPeriod,
            @ConfigProperty(name = "hub.relay.retention") Duration retention,
            @ConfigProperty(name = "hub.relay.window") int window,
            @ConfigProperty(name = "hub.relay.file-dir") String fileDir,
            @ConfigProperty(name = "hub.relay.file-store") String fileStore,
            @ConfigProperty(name = "hub.relay.file-retention") Optional<Duration> fileRetention,
            RelayS3Config s3Config,
            Database db, Leases leases, Vertx vertx, MeterRegistry registry) {
        this.enabled = enabled;
        this.topologyFile = topologyFile;
        this.tokens = tokens;
        this.tokensFile = tokensFile;
        this.parentToken = parentToken;
        this.tcpPort = tcpPort;
        this.tcpHost = tcpHost;
        this.options = new RelayOptions(heartbeat, pollMaxWait, parentPollWait, requestTimeout, maxPacketBytes, 500, maxTtl,
                retryMin, retryMax, sweepPeriod, retention, window);
        this.fileDir = fileDir;
        this.fileStore = fileStore.strip().toLowerCase(Locale.ROOT);
        this.fileRetention = fileRetention == null ? null : fileRetention.orElse(null);
        if (this.fileRetention != null && this.fileRetention.compareTo(Duration.ofHours(1)) < 0) {
            throw new IllegalArgumentException("hub.relay.file-retention (env HUB_RELAY_FILE_RETENTION) is " + this.fileRetention
                    + "; files are kept at least an hour (leave it empty to keep them for good)");
        }
        if (!this.fileStore.equals("filesystem") && !this.fileStore.equals("s3")) {
            throw new IllegalArgumentException("hub.relay.file-store (env HUB_RELAY_FILE_STORE) is '" + fileStore
                    + "'; it must be filesystem or s3");
        }
        this.s3 = !enabled || !this.fileStore.equals("s3") ? null
                : new S3Backend.Settings(s3Config.endpoint().filter(e -> !e.isBlank()).map(RelayApp::endpoint),
                        s3Config.region(), s3Config.bucket().orElse(""), s3Config.prefix().orElse(""), s3Config.pathStyle(),
                        s3Config.accessKeyId(), s3Config.secretAccessKey());
        this.db = db;
        this.leases = leases;
        this.vertx = vertx;
        this.registry = registry;
    }

    void start(@Observes StartupEvent ev) {
        if (!enabled) {
            return;
        }
        String file = topologyFile.filter(s -> !s.isBlank()).orElseThrow(() -> new IllegalStateException(
                "hub.relay.enabled=true needs hub.relay.topology-file (env HUB_RELAY_TOPOLOGY_FILE)"));
        Topology topology = Topology.load(Path.of(file));
        node = RelayNode.builder().topology(topology).tokens(RelayTokens.parse(tokenSpec()))
                .parentToken(parentToken.orElse(null)).dataSource(db.dataSource()).vertx(vertx).httpPort(0)
                .tcpPort(tcpPort).host(tcpHost).options(options).fileDir(Path.of(fileDir)).s3(s3).fileRetention(fileRetention).registry(registry)
                .replicas(leases).build().start();
    }

    private static URI endpoint(String e) {
        URI uri;
        try {
            uri = new URI(e.strip());
        } catch (URISyntaxException ex) {
            throw new IllegalArgumentException("hub.relay.s3.endpoint is not a URL: " + ex.getMessage());
        }
        if (!"http".equals(uri.getScheme()) && !"https".equals(uri.getScheme()) || uri.getHost() == null) {
            throw new IllegalArgumentException("hub.relay.s3.endpoint must be an http(s) URL such as https://minio.example:9000, not '"
                    + e + "'");
        }
        return uri;
    }

    /** hub.relay.tokens, then the entries of hub.relay.tokens-file (a mounted Secret), if one is set. */
    String tokenSpec() {
        StringBuilder spec = new StringBuilder(tokens.orElse(""));
        Optional<String> file = tokensFile.filter(s -> !s.isBlank());
        if (file.isPresent()) {
            try {
                spec.append('\n').append(java.nio.file.Files.readString(Path.of(file.get())));
            } catch (java.io.IOException e) {
                throw new IllegalStateException("hub.relay.tokens-file " + file.get() + " cannot be read: " + e, e);
            }
        }
        return spec.toString();
    }

    void stop(@Observes ShutdownEvent ev) {
        RelayNode n = node;
        if (n != null) {
            n.close();
            node = null;
        }
    }

    /** {@code /relay/v1/*} on the hub's HTTP port, outside /api and its API keys. */
    void routes(@Observes Router router) {
        router.route("/relay/v1/*").order(-101).handler(HttpEndpoint::refuseForms);
        router.route("/relay/v1/*").order(-100).handler(BodyHandler.create().setBodyLimit(
                (long) options.maxPacketBytes() * 64 + 4096));
        router.route("/relay/v1/*").order(-99).handler(ctx -> {
            RelayNode n = node;
            if (n == null) {
                ctx.response().setStatusCode(404).putHeader("Content-Type", "application/json")
                        .end("{\"status\":404,\"error\":\"the relay is not enabled on this hub (hub.relay.enabled)\"}");
            } else {
                n.handle(ctx);
            }
        });
        LOG.debug("relay endpoints mounted under /relay/v1");
    }

    /** The running node, if the relay is enabled. */
    public Optional<RelayNode> node() {
        return Optional.ofNullable(node);
    }
}
