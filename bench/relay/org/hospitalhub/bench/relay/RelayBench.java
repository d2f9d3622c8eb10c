package org.hospitalhub.bench.relay;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.Statement;
import java.time.Duration;
import java.time.Instant;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import org.hospitalhub.bench.shared.ChildHub;
import org.hospitalhub.bench.shared.WalSegments;
import org.hospitalhub.relay.client.RelayClient;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.http.HttpClientOptions;
import io.vertx.core.http.HttpMethod;
import io.vertx.core.http.PoolOptions;
import io.vertx.core.http.RequestOptions;
import io.vertx.core.net.NetClient;
import io.vertx.core.net.NetClientOptions;
import io.vertx.core.net.NetSocket;
import io.vertx.core.parsetools.RecordParser;

/**
 * Issue #5 section 9: three packaged hubs as relay nodes (county → city → province, each its own PostgreSQL
 * database), 10,000 clients on the county (half TCP, half HTTP long-poll, each with its own token), then packets from
 * the county's TCP clients to a doctor's SDK client at the province at a fixed rate (default 5,000/s for 60 s), then
 * a stepped ramp to saturation. Hop latencies come from the time each node began storing a packet (relay_packet
 * .received_at in its database) and the time the doctor's handler got it. Run by bench/run-relay.sh; writes the relay
 * section of bench/RESULTS.md.
 */
public final class RelayBench {

    static final String START = "<!-- relay-benchmark:start (written by bench/run-relay.sh; the other benchmarks keep it) -->";
    static final String END = "<!-- relay-benchmark:end -->";
    static final ObjectMapper JSON = new ObjectMapper();
    static final SecureRandom RANDOM = new SecureRandom();
    /** About 300 characters of free text, so a packet is about 500 bytes of JSON like a consultation request. */
    static final String NOTE = "患者主诉胸闷气短三天，既往高血压病史十年，请上级医院心内科会诊，协助判断是否需要转诊及进一步检查。".repeat(3)
            + " chest tightness for three days, hypertension for ten years; please advise on referral and further tests.";

    final Path root;
    final Path work;
    final int rateSeconds;
    final int rate;
    final int warmupSeconds;
    /** The warm-up's first rate, a share of RATE (it rises linearly to RATE); 1: the whole warm-up at RATE. */
    final double warmupFrom;
    final int clients;
    final int[] steps;
    final int stepSeconds;
    final String hubOpts;
    /** HUB_QC_TIMER_SWEEP_EVERY of the nodes. */
    final String qcSweep;
    final String opsKey = token();
    Vertx vertx;
    final List<Node> nodes = new ArrayList<>();
    final List<TcpPeer> tcpPeers = new ArrayList<>();
    final List<PollPeer> pollPeers = new ArrayList<>();
    /** packetId → when an idle client's handler got its packet (the live phase), epoch microseconds. */
    final Map<String, Long> received = new ConcurrentHashMap<>();
    final AtomicLong duplicates = new AtomicLong();
    final AtomicLong outOfOrder = new AtomicLong();
    final AtomicLong refusals = new AtomicLong();
    final AtomicLong pollErrors = new AtomicLong();
    final AtomicLong acked = new AtomicLong();
    final Map<String, Long> lastFromSender = new ConcurrentHashMap<>();
    /**
     * Send and receipt times (epoch µs) of the rate and ramp packets by their number {@code n}: arrays, not maps of boxed
     * times keyed by packet id (over a million entries by the end of the ramp), so that the collector of this JVM, where
     * the last hop ends in the doctor's handler, has a small heap to go through and its pauses stay out of that hop.
     * {@code sentMicros[n]} is written by the offering thread, {@code gotMicros[n]} by the doctor's receive thread before
     * it counts the packet in {@link #gotCount}, which the other threads read first.
     */
    long[] sentMicros;
    long[] gotMicros;
    final AtomicLong gotCount = new AtomicLong();
    final LongList ackLatencyMicros = new LongList();
    volatile boolean recordAcks;

    RelayBench(Path root, int rateSeconds, int rate) {
        this.root = root;
        this.work = root.resolve("bench/work/relay");
        this.rateSeconds = rateSeconds;
        this.rate = rate;
        this.warmupSeconds = Integer.parseInt(env("BENCH_RELAY_WARMUP_SECONDS", "30"));
        this.warmupFrom = Double.parseDouble(env("BENCH_RELAY_WARMUP_FROM", "0.2"));
        this.clients = Integer.parseInt(env("BENCH_RELAY_CLIENTS", "10000"));
        this.steps = Arrays.stream(env("BENCH_RELAY_STEPS", "1000,2000,3000,5000,7500,10000,12500").split(",")).map(String::trim)
                .mapToInt(Integer::parseInt).toArray();
        this.stepSeconds = Integer.parseInt(env("BENCH_RELAY_STEP_SECONDS", "20"));
        this.hubOpts = env("BENCH_RELAY_HUB_OPTS", "-Xmx512m -Xmn256m -XX:+UseParallelGC");
        this.qcSweep = env("BENCH_RELAY_QC_SWEEP", "off");
    }

    static String env(String name, String dflt) {
        String v = System.getenv(name);
        return v == null || v.isBlank() ? dflt : v;
    }

    static String token() {
        byte[] b = new byte[18];
        RANDOM.nextBytes(b);
        return HexFormat.of().formatHex(b);
    }

    public static void main(String[] args) throws Exception {
        Path root = Path.of("").toAbsolutePath();
        int seconds = args.length > 0 ? Integer.parseInt(args[0]) : 60;
        int rate = args.length > 1 ? Integer.parseInt(args[1]) : 5000;
        Path results = Path.of(args.length > 2 ? args[2] : "bench/RESULTS.md");
        String command = args.length > 3 ? args[3] : "bench/run-relay.sh";
        RelayBench b = new RelayBench(root, seconds, rate);
        Runtime.getRuntime().addShutdownHook(new Thread(b::stopNodes));
        String report;
        try {
            report = b.run(command);
        } finally {
            b.stopNodes();
        }
        System.out.println(report);
        writeSection(results, report);
        System.out.println("Written to " + results);
        System.exit(0);
    }

    // ---- the nodes ---------------------------------------------------------------------------------------------------

    /** One relay node: the packaged hub in its own JVM on its own database. */
    final class Node {
        final String name;
        final int http = ChildHub.freePort();
        final int tcp = ChildHub.freePort();
        final String db;
        ChildHub hub;

        Node(String name) {
            this.name = name;
            this.db = "relay_bench_" + name;
        }

        String url() {
            return "jdbc:postgresql://127.0.0.1:5432/" + db;
        }

        void start(String topology, String tokens, String parentToken) throws Exception {
            try (Connection c = DriverManager.getConnection("jdbc:postgresql://127.0.0.1:5432/postgres", "postgres", "");
                    Statement s = c.createStatement()) {
                s.execute("DROP DATABASE IF EXISTS " + db + " WITH (FORCE)");
                s.execute("CREATE DATABASE " + db);
            }
            Path dir = Files.createDirectories(work.resolve(name));
            Path topo = Files.writeString(dir.resolve("topology.yaml"), topology);
            Path tok = Files.writeString(dir.resolve("tokens"), tokens);
            Map<String, String> e = new HashMap<>();
            e.put("QUARKUS_PROFILE", "postgres");
            e.put("HUB_DB_URL", url());
            e.put("HUB_DB_USERNAME", "postgres");
            e.put("HUB_AUTH_CLIENTS", "ops:operator:" + opsKey);
            e.put("HUB_RELAY_ENABLED", "true");
            e.put("HUB_RELAY_TOPOLOGY_FILE", topo.toString());
            e.put("HUB_RELAY_TOKENS_FILE", tok.toString());
            e.put("HUB_RELAY_TCP_PORT", Integer.toString(tcp));
            e.put("HUB_DATA_DIR", dir.resolve("data").toString());
            e.put("HUB_ROUTES_DIR", Files.createDirectories(dir.resolve("routes")).toString()); // no hospital flows
            e.put("HUB_RELAY_FILE_DIR", dir.resolve("files").toString());
            // a relay-only node runs no qc flows: no qc timer sweep (a clustered Quartz job firing every second), as
            // README advises such nodes
            e.put("HUB_QC_TIMER_SWEEP_EVERY", qcSweep);
            if (parentToken != null) {
                e.put("HUB_RELAY_PARENT_TOKEN", parentToken);
            }
            hub = ChildHub.start(name, root, work, dir, hubOpts, http, e);
            hub.awaitReady(Duration.ofSeconds(120));
        }

        JsonNode status() throws Exception {
            HttpResponse<String> r = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
                    URI.create("http://127.0.0.1:" + http + "/api/v1/relay/status")).header("X-Api-Key", opsKey)
                    .timeout(Duration.ofSeconds(30)).build(), HttpResponse.BodyHandlers.ofString());
            if (r.statusCode() != 200) {
                throw new IOException("status of " + name + ": HTTP " + r.statusCode() + " " + r.body());
            }
            return JSON.readTree(r.body());
        }

        long kb(String field) {
            return hub.kb(field);
        }

        double cpu() {
            return hub.cpuSeconds();
        }

        /** A full GC in the node (jcmd), so that resident memory is compared at the same heap state. */
        void gc() throws Exception {
            Process p = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "jcmd").toString(),
                    Long.toString(hub.pid()), "GC.run").redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD)
                    .start();
            p.waitFor(60, TimeUnit.SECONDS);
            Thread.sleep(2000);
        }

        void stop() {
            if (hub != null) {
                hub.stop();
            }
        }
    }

    /** Set once the nodes are being stopped: pollers no longer retry (their HTTP client closes with Vert.x). */
    volatile boolean stopped;

    void stopNodes() {
        stopped = true;
        for (int i = nodes.size() - 1; i >= 0; i--) {
            nodes.get(i).stop();
        }
        if (vertx != null) {
            vertx.close();
            vertx = null;
        }
    }

    // ---- the run -----------------------------------------------------------------------------------------------------

    String run(String command) throws Exception {
        Files.createDirectories(work);
        String host = java.net.InetAddress.getLocalHost().getHostName();
        Node province = new Node("province");
        Node city = new Node("city");
        Node county = new Node("county");
        nodes.addAll(List.of(province, city, county));
        String cityToken = token();
        String countyToken = token();
        String doctorToken = token();
        int nTcp = clients / 2;
        int nPoll = clients - nTcp;
        String[] tcpTokens = new String[nTcp];
        String[] pollTokens = new String[nPoll];
        StringBuilder topo = new StringBuilder("""
                node: county
                level: county
                parent: {id: city, transport: tcp, host: 127.0.0.1, port: %d}
                clients:
                """.formatted(city.tcp));
        StringBuilder tokens = new StringBuilder();
        for (int i = 0; i < nTcp; i++) {
            tcpTokens[i] = token();
            topo.append("  - {id: ").append(tcpId(i)).append(", transport: tcp}\n");
            tokens.append(tcpId(i)).append(':').append(tcpTokens[i]).append('\n');
        }
        for (int i = 0; i < nPoll; i++) {
            pollTokens[i] = token();
            topo.append("  - {id: ").append(pollId(i)).append(", transport: http}\n");
            tokens.append(pollId(i)).append(':').append(pollTokens[i]).append('\n');
        }
        System.out.println("Starting the province, city and county relay nodes (packaged hub, " + hubOpts + ") ...");
        province.start("""
                node: province
                level: province
                children: [{id: city, transport: tcp, children: [{id: county}]}]
                clients: [{id: doctor, transport: tcp}]
                """, "city:" + cityToken + "\ndoctor:" + doctorToken + "\n", null);
        city.start("""
                node: city
                level: city
                parent: {id: province, transport: tcp, host: 127.0.0.1, port: %d}
                children: [{id: county, transport: tcp}]
                """.formatted(province.tcp), "county:" + countyToken + "\n", cityToken);
        county.start(topo.toString(), tokens.toString(), countyToken);
        await("the county's link to the city and the city's to the province", Duration.ofSeconds(30),
                () -> county.status().path("parent").path("connected").asBoolean() && city.status().path("parent").path("connected").asBoolean());

        // ---- 10,000 clients ---------------------------------------------------------------------------------------
        Thread.sleep(5000);
        county.gc();
        long rssBefore = county.kb("VmRSS");
        vertx = Vertx.vertx(new VertxOptions().setEventLoopPoolSize(2));
        NetClient net = vertx.createNetClient(new NetClientOptions().setTcpNoDelay(true).setConnectTimeout(20_000));
        io.vertx.core.http.HttpClient http = vertx.createHttpClient(new HttpClientOptions().setDefaultHost("127.0.0.1")
                .setDefaultPort(county.http).setKeepAlive(true).setMaxWaitQueueSize(-1), new PoolOptions().setHttp1MaxSize(nPoll + 16));
        long connectStart = System.nanoTime();
        for (int i = 0; i < nTcp; i++) {
            tcpPeers.add(new TcpPeer(tcpId(i), tcpTokens[i]));
        }
        for (int i = 0; i < nPoll; i++) {
            pollPeers.add(new PollPeer(pollId(i), pollTokens[i], http));
        }
        for (int from = 0; from < Math.max(nTcp, nPoll); from += 250) { // in waves: the listen backlog is finite
            List<Future<?>> wave = new ArrayList<>();
            for (int i = from; i < Math.min(from + 250, nTcp); i++) {
                wave.add(tcpPeers.get(i).connect(net, county.tcp));
            }
            for (int i = from; i < Math.min(from + 250, nPoll); i++) {
                pollPeers.get(i).poll();
            }
            for (Future<?> f : wave) {
                f.toCompletionStage().toCompletableFuture().get(60, TimeUnit.SECONDS);
            }
        }
        await("all TCP clients welcomed and all pollers waiting on the county", Duration.ofSeconds(120), () -> {
            JsonNode s = county.status();
            return s.path("connectedTcp").size() == nTcp && s.path("httpPollers").size() == nPoll;
        });
        double connectSeconds = (System.nanoTime() - connectStart) / 1e9;
        // Each TCP client PINGs every 10 s, as the SDK's clients do, each from its own moment (a client's heartbeat runs
        // from its connection): 100 slices of the clients, one every 100 ms, not all 5,000 in one burst every 10 s, which
        // no real population of clients sends and which showed as a 10 s rhythm in the hops' tail.
        int slices = 100;
        AtomicLong heartbeatTick = new AtomicLong();
        long heartbeats = vertx.setPeriodic(10_000 / slices, t -> {
            int slice = (int) (heartbeatTick.getAndIncrement() % slices);
            for (int i = slice; i < tcpPeers.size(); i += slices) {
                tcpPeers.get(i).ping();
            }
        });
        System.out.printf("%d TCP + %d long-poll clients connected in %.1f s%n", nTcp, nPoll, connectSeconds);

        // every client gets a packet: the connections are live, not just open
        long liveStart = System.nanoTime();
        AtomicLong liveN = new AtomicLong();
        for (int i = 0; i < nTcp; i++) {
            TcpPeer p = tcpPeers.get(i);
            List<String> packets = new ArrayList<>();
            packets.add(packet("live-" + liveN.getAndIncrement(), p.id + "@county", pollId(i % nPoll) + "@county", "bench.live"));
            packets.add(packet("live-" + liveN.getAndIncrement(), p.id + "@county", tcpId((i + 1) % nTcp) + "@county", "bench.live"));
            if (i < nPoll - nTcp) {
                packets.add(packet("live-" + liveN.getAndIncrement(), p.id + "@county", pollId(nTcp + i) + "@county", "bench.live"));
            }
            p.send(packets);
            if (i % 500 == 499) {
                Thread.sleep(100);
            }
        }
        long liveTotal = liveN.get();
        await("every one of the " + clients + " clients got its packet", Duration.ofSeconds(120), () -> received.size() >= liveTotal);
        double liveSeconds = (System.nanoTime() - liveStart) / 1e9;
        long idleClientsWithout = tcpPeers.stream().filter(p -> p.got == 0).count() + pollPeers.stream().filter(p -> p.got == 0).count();
        Thread.sleep(3000);
        county.gc();
        long rssConnected = county.kb("VmRSS");
        JsonNode connectedStatus = county.status();
        int tcpSeen = connectedStatus.path("connectedTcp").size();
        int pollSeen = connectedStatus.path("httpPollers").size();
        LongList liveLatency = new LongList();
        // live packets carry their send time; their receipt is in 'received'
        for (Map.Entry<String, Long> e : received.entrySet()) {
            Long t = sentAt.get(e.getKey());
            if (t != null) {
                liveLatency.add(e.getValue() - t);
            }
        }
        received.clear();
        sentAt.clear();

        // ---- the doctor at the province, and the rate phase --------------------------------------------------------
        long planned = (long) rate * (warmupSeconds + rateSeconds) + (long) Arrays.stream(steps).sum() * stepSeconds;
        sentMicros = new long[(int) (planned + planned / 10 + 1000)];
        gotMicros = new long[sentMicros.length];
        RelayClient doctor = RelayClient.builder().tcp("127.0.0.1", province.tcp).token(doctorToken).name("doctor")
                .onPacket(p -> {
                    long now = micros(Instant.now());
                    long n = p.parameters().path("n").asLong();
                    if (gotMicros[(int) n] != 0) {
                        duplicates.incrementAndGet();
                    } else {
                        gotMicros[(int) n] = now;
                        gotCount.incrementAndGet();
                    }
                    Long before = lastFromSender.put(p.from(), n);
                    if (before != null && before >= n) {
                        outOfOrder.incrementAndGet();
                    }
                }).build().start();
        await("the doctor's SDK client connected to the province", Duration.ofSeconds(30), doctor::connected);

        long walReadyBefore = walReady(county);
        Map<String, Double> cpu0 = cpu();
        long rateStart = System.nanoTime();
        System.out.printf("Every client got its packet in %.1f s; county RSS %d MB -> %d MB%n", liveSeconds, rssBefore / 1024,
                rssConnected / 1024);
        System.out.printf("Rate phase: %d packets/s for %d s warm-up (from %.0f/s) + %d s measured, %d TCP senders -> doctor@province%n",
                rate, warmupSeconds, warmupFrom * rate, rateSeconds, nTcp);
        recordAcks = false;
        long warmupSent = offer("rate", rate, warmupFrom, warmupSeconds, nTcp, 0);
        recordAcks = true;
        Map<String, Double> cpu1 = cpu();
        long measuredFrom = warmupSent;
        long measuredSent = offer("rate", rate, rateSeconds, nTcp, warmupSent);
        recordAcks = false;
        Map<String, Double> cpu2 = cpu();
        long rateTotal = warmupSent + measuredSent;
        await("every packet of the rate phase at the doctor", Duration.ofSeconds(900), () -> gotCount.get() >= rateTotal);
        long walReadyAfter = walReady(county);
        double drainSeconds = (System.nanoTime() - rateStart) / 1e9 - warmupSeconds - rateSeconds;

        // hop latencies of the measured packets, from the three databases and the doctor's receipts
        Map<String, long[]> hops = new HashMap<>();
        readStored(county, "rate", hops, 0);
        readStored(city, "rate", hops, 1);
        readStored(province, "rate", hops, 2);
        LongList ingress = new LongList();
        LongList countyCity = new LongList();
        LongList cityProvince = new LongList();
        LongList provinceDoctor = new LongList();
        LongList endToEnd = new LongList();
        long missingRows = 0;
        for (Map.Entry<String, long[]> e : hops.entrySet()) {
            long n = Long.parseLong(e.getKey().substring("rate-".length()));
            if (n < measuredFrom) {
                continue;
            }
            long[] h = e.getValue();
            long got = gotMicros[(int) n];
            long sent = sentMicros[(int) n];
            if (got == 0 || sent == 0 || h[0] == 0 || h[1] == 0 || h[2] == 0) {
                missingRows++;
                continue;
            }
            ingress.add(h[0] - sent);
            countyCity.add(h[1] - h[0]);
            cityProvince.add(h[2] - h[1]);
            provinceDoctor.add(got - h[2]);
            endToEnd.add(got - sent);
        }
        long audited = count(province, "SELECT COUNT(*) FROM relay_audit WHERE command = 'bench.rate'");
        long dead = count(county, "SELECT COUNT(*) FROM relay_packet WHERE status = 'DEAD'")
                + count(city, "SELECT COUNT(*) FROM relay_packet WHERE status = 'DEAD'")
                + count(province, "SELECT COUNT(*) FROM relay_packet WHERE status = 'DEAD'");

        // ---- saturation: a stepped ramp ------------------------------------------------------------------------------
        List<String[]> stepRows = new ArrayList<>();
        double saturation = 0;
        boolean saturated = false;
        long satSent = 0;
        for (int step : steps) {
            long before = gotCount.get();
            long ackBefore = acked.get();
            long t0 = System.nanoTime();
            long sent = offer("sat", step, stepSeconds, nTcp, rateTotal + satSent); // n continues: order is checked per sender
            satSent += sent;
            double secs = (System.nanoTime() - t0) / 1e9;
            long delivered = gotCount.get() - before;
            double deliveredRate = delivered / secs;
            double ackRate = (acked.get() - ackBefore) / secs;
            saturation = Math.max(saturation, deliveredRate);
            long backlog = rateTotal + satSent - gotCount.get();
            stepRows.add(new String[] {Integer.toString(step), fmt(sent / secs), fmt(ackRate), fmt(deliveredRate),
                    Long.toString(backlog)});
            System.out.printf("  step %d/s: offered %.0f/s, stored at the county %.0f/s, delivered %.0f/s, backlog %d%n", step,
                    sent / secs, ackRate, deliveredRate, backlog);
            if (deliveredRate < 0.9 * step) {
                saturated = true;
                break;
            }
        }
        long satTotal = satSent;
        long drain0 = System.nanoTime();
        await("every packet of the ramp at the doctor", Duration.ofSeconds(900), () -> gotCount.get() >= rateTotal + satTotal);
        double satDrain = (System.nanoTime() - drain0) / 1e9;
        long satDuplicates = duplicates.get();
        vertx.cancelTimer(heartbeats);
        doctor.close();

        // ---- report ---------------------------------------------------------------------------------------------------
        StringBuilder r = new StringBuilder();
        r.append("## Relay benchmark (issue #5 §9)\n\n");
        r.append("Run ").append(ZonedDateTime.now().format(DateTimeFormatter.ISO_OFFSET_DATE_TIME)).append(" on ").append(host)
                .append(" (").append(Runtime.getRuntime().availableProcessors()).append(" cores), command `").append(command)
                .append("`.\n\n");
        r.append("Three packaged hubs (`java ").append(hubOpts).append(" -jar target/quarkus-app/quarkus-run.jar`, profile "
                + "postgres, qc timer sweep `").append(qcSweep).append("` as on a node without qc flows) are the relay nodes county → city → province, each on its own PostgreSQL database on this machine; "
                + "the links between them are the relay's TCP transport. The bench JVM holds the ").append(clients)
                .append(" clients of the county (Vert.x, one connection and one token each, speaking the relay's wire protocol) "
                        + "and the doctor's SDK client at the province. Packets are about 500 bytes of JSON. PostgreSQL's "
                        + "`max_wal_size` was ").append(count(county, "SELECT setting::bigint FROM pg_settings WHERE name = 'max_wal_size'"))
                .append(" MB (bench/README: checkpoints), `min_wal_size` ")
                .append(count(county, "SELECT setting::bigint FROM pg_settings WHERE name = 'min_wal_size'"))
                .append(" MB; WAL segments ready for reuse when the rate phase began: ").append(walReadyBefore)
                .append(", when its last packet had arrived: ").append(walReadyAfter)
                .append(" (while some are ready, no commit waits for a new 16 MB segment to be created; bench/README: WAL segments).\n\n");
        r.append("### 1. ").append(clients).append(" concurrent clients on one node (the county)\n\n");
        r.append("| measure | value |\n|---|---|\n");
        r.append("| TCP clients welcomed / seen by the node | ").append(nTcp).append(" / ").append(tcpSeen).append(" |\n");
        r.append("| long-poll clients waiting / seen by the node | ").append(nPoll).append(" / ").append(pollSeen).append(" |\n");
        r.append("| time to connect them all | ").append(fmt1(connectSeconds)).append(" s |\n");
        r.append("| county RSS before / with the clients (after a full GC) | ").append(rssBefore / 1024).append(" MB / ")
                .append(rssConnected / 1024).append(" MB |\n");
        r.append("| **memory per connection** | **").append(fmt1((rssConnected - rssBefore) * 1024.0 / clients / 1024.0))
                .append(" KB** |\n");
        r.append("| one packet to every client (").append(liveTotal).append(" packets) delivered in | ")
                .append(fmt1(liveSeconds)).append(" s; send → handler p50 ").append(ms(liveLatency.pct(50))).append(", p99 ")
                .append(ms(liveLatency.pct(99))).append("; clients without their packet: ").append(idleClientsWithout).append(" |\n\n");
        r.append("### 2. ").append(rate).append(" packets/s through three hops (county → city → province → doctor)\n\n");
        r.append(nTcp).append(" TCP clients send one packet per SEND frame, ").append(fmt1(rate / (double) nTcp))
                .append(" packets/s each at the full rate, after ").append(warmupSeconds).append(" s of warm-up (not counted")
                .append(warmupFrom < 1 ? ", the rate rising from " + Math.round(warmupFrom * rate) + "/s to " + rate
                        + "/s so that the JVMs compile their code without a backlog built at the full rate meanwhile" : "")
                .append("); then ").append(rateSeconds)
                .append(" s measured (").append(endToEnd.size()).append(" packets). A hop's time runs from the moment a node "
                        + "began storing the packet (`received_at`, before its commit and acknowledgement) to the moment the next "
                        + "node began storing it; the last hop ends in the doctor's handler.\n\n");
        r.append("| hop | p50 | p99 | max |\n|---|---|---|---|\n");
        row(r, "client → county (send to store start)", ingress);
        row(r, "county → city", countyCity);
        row(r, "city → province", cityProvince);
        row(r, "province → doctor's handler", provinceDoctor);
        row(r, "**end to end**", endToEnd);
        r.append("| client send → county ACK (stored) | ").append(ms(ackLatencyMicros.pct(50))).append(" | ")
                .append(ms(ackLatencyMicros.pct(99))).append(" | ").append(ms(ackLatencyMicros.max())).append(" |\n\n");
        long worstHopP99 = Math.max(Math.max(countyCity.pct(99), cityProvince.pct(99)), provinceDoctor.pct(99));
        r.append("Target p99 ≤ 50 ms per hop at this rate: **").append(worstHopP99 <= 50_000 ? "MET" : "MISSED")
                .append("** (worst node-to-node hop p99 ").append(ms(worstHopP99)).append(").\n\n");
        r.append("| check | value |\n|---|---|\n");
        r.append("| packets offered (warm-up + measured) | ").append(rateTotal).append(" |\n");
        r.append("| at the doctor, exactly once | ").append(rateTotal).append(" expected; duplicates ").append(duplicates.get())
                .append(", out of order per sender ").append(outOfOrder.get()).append(", rows missing ").append(missingRows).append(" |\n");
        r.append("| audited at the top | ").append(audited).append(" |\n");
        r.append("| dead letters (all nodes) | ").append(dead).append(" |\n");
        r.append("| refused sends / failed polls | ").append(refusals.get()).append(" / ").append(pollErrors.get()).append(" |\n");
        r.append("| backlog drained after the last send | ").append(fmt1(Math.max(0, drainSeconds))).append(" s |\n\n");
        r.append("CPU during the measured ").append(rateSeconds).append(" s (share of one core; the machine has ")
                .append(Runtime.getRuntime().availableProcessors()).append("):\n\n| process | CPU | peak RSS |\n|---|---|---|\n");
        for (String k : cpu2.keySet()) {
            double used = (cpu2.get(k) - cpu1.getOrDefault(k, 0.0)) / rateSeconds;
            Node n = nodes.stream().filter(x -> x.name.equals(k)).findFirst().orElse(null);
            r.append("| ").append(k).append(" | ").append(Math.round(used * 100)).append(" % | ")
                    .append(n == null ? "" : n.kb("VmHWM") / 1024 + " MB").append(" |\n");
        }
        r.append("\n### 3. Saturation (stepped ramp, ").append(stepSeconds).append(" s per step, stops when less than 90 % "
                + "of the offered rate reaches the doctor)\n\n");
        r.append("| offered (target) | offered (achieved) | stored at the county | delivered to the doctor | backlog at step end |\n"
                + "|---|---|---|---|---|\n");
        for (String[] s : stepRows) {
            r.append("| ").append(s[0]).append("/s | ").append(s[1]).append("/s | ").append(s[2]).append("/s | ").append(s[3])
                    .append("/s | ").append(s[4]).append(" |\n");
        }
        r.append(saturated ? "\n**Packets/s at saturation: " + fmt(saturation) + "** delivered end to end (the most any step "
                + "delivered)." : "\n**Packets/s at saturation: not reached, at least " + fmt(saturation) + "** delivered end to "
                + "end (every step, up to " + steps[steps.length - 1] + "/s, delivered 90 % or more of its rate; "
                + "`BENCH_RELAY_STEPS` sets higher ones).").append(" The ramp's ").append(satTotal).append(" packets all reached the doctor (backlog drained in ")
                .append(fmt1(satDrain)).append(" s), duplicates over the whole run: ").append(satDuplicates).append(".\n");
        return r.toString();
    }

    // ---- offering load -------------------------------------------------------------------------------------------------

    final Map<String, Long> sentAt = new ConcurrentHashMap<>();

    /** Sends {@code rate}/s for {@code seconds} from the TCP clients in turn; returns the packets sent. */
    long offer(String phase, int rate, int seconds, int nTcp, long firstN) throws InterruptedException {
        return offer(phase, rate, 1.0, seconds, nTcp, firstN);
    }

    /**
     * Offers packets for {@code seconds}: at {@code rate} packets/s, or, with {@code from} below 1, rising linearly from
     * {@code from} × rate to rate over the period (the warm-up: the JVMs compile their code without a backlog built at
     * the full rate while they do).
     */
    long offer(String phase, int rate, double from, int seconds, int nTcp, long firstN) throws InterruptedException {
        long start = System.nanoTime();
        long end = start + TimeUnit.SECONDS.toNanos(seconds);
        long sent = 0;
        while (true) {
            long now = System.nanoTime();
            if (now >= end) {
                break;
            }
            double t = (now - start) / 1e9;
            long due = (long) (rate * (from * t + (1 - from) * t * t / (2.0 * seconds)));
            while (sent < due) {
                long n = firstN + sent;
                TcpPeer p = tcpPeers.get((int) (n % nTcp));
                String id = phase + "-" + n;
                p.send(List.of(packet(id, p.id + "@county", "doctor@province", "bench." + phase, n, false)));
                sent++;
            }
            Thread.sleep(1);
        }
        return sent;
    }

    String packet(String id, String from, String to, String command) {
        return packet(id, from, to, command, 0, true);
    }

    /** A packet of about 500 bytes; its send time goes to {@code sentAt} by id (live phase) or to {@code sentMicros[n]}. */
    String packet(String id, String from, String to, String command, long n, boolean live) {
        Instant now = Instant.now();
        if (live) {
            sentAt.put(id, micros(now));
        } else {
            sentMicros[(int) n] = micros(now);
        }
        return "{\"packetId\":\"" + id + "\",\"from\":\"" + from + "\",\"to\":\"" + to + "\",\"command\":\"" + command
                + "\",\"parameters\":{\"n\":" + n + ",\"note\":\"" + NOTE + "\"},\"createdAt\":\"" + now + "\",\"ttl\":3600}";
    }

    static long micros(Instant i) {
        return i.getEpochSecond() * 1_000_000L + i.getNano() / 1000;
    }

    static String tcpId(int i) {
        return String.format("tcp-%05d", i);
    }

    static String pollId(int i) {
        return String.format("poll-%05d", i);
    }

    // ---- the clients ---------------------------------------------------------------------------------------------------

    /** A TCP client: HELLO, then SEND/ACK, DELIVER/RECEIVED, PING/PONG (the frames of org.hospitalhub.relay.client.Frames). */
    final class TcpPeer {
        final String id;
        final String token;
        NetSocket socket;
        boolean expectLength = true;
        RecordParser parser;
        final AtomicLong refs = new AtomicLong();
        final Map<Long, Long> pending = new ConcurrentHashMap<>();
        io.vertx.core.Promise<Void> welcomed = io.vertx.core.Promise.promise();
        volatile int got;

        TcpPeer(String id, String token) {
            this.id = id;
            this.token = token;
        }

        Future<Void> connect(NetClient net, int port) {
            return net.connect(port, "127.0.0.1").compose(s -> {
                socket = s;
                parser = RecordParser.newFixed(4, this::onRecord);
                s.handler(parser);
                s.closeHandler(v -> {
                    if (!stopped) { // at the end the nodes stop: 5,000 such lines say nothing
                        System.err.println("TCP client " + id + ": connection closed by the node");
                    }
                });
                write("{\"type\":\"HELLO\",\"token\":\"" + token + "\",\"cursor\":0}");
                return welcomed.future();
            });
        }

        void onRecord(Buffer b) {
            if (expectLength) {
                expectLength = false;
                parser.fixedSizeMode(b.getInt(0));
                return;
            }
            expectLength = true;
            parser.fixedSizeMode(4);
            JsonNode f;
            try {
                f = JSON.readTree(b.getBytes());
            } catch (IOException e) {
                throw new IllegalStateException(e);
            }
            switch (f.path("type").asText()) {
                case "WELCOME" -> welcomed.tryComplete();
                case "ERROR" -> {
                    refusals.incrementAndGet();
                    welcomed.tryFail(id + " refused: " + f.path("error").asText());
                }
                case "ACK" -> {
                    Long t = pending.remove(f.path("ref").asLong());
                    for (JsonNode res : f.path("results")) {
                        if (!"STORED".equals(res.path("status").asText())) {
                            refusals.incrementAndGet();
                            System.err.println(id + ": " + res);
                        }
                        acked.incrementAndGet();
                    }
                    if (t != null && recordAcks) {
                        ackLatencyMicros.add((System.nanoTime() - t) / 1000);
                    }
                }
                case "NACK" -> {
                    refusals.incrementAndGet();
                    System.err.println(id + ": NACK " + f);
                }
                case "DELIVER" -> {
                    long last = 0;
                    long now = micros(Instant.now());
                    for (JsonNode e : f.path("packets")) {
                        last = Math.max(last, e.path("seq").asLong());
                        if (received.putIfAbsent(e.path("packet").path("packetId").asText(), now) != null) {
                            duplicates.incrementAndGet();
                        }
                        got++;
                    }
                    write("{\"type\":\"RECEIVED\",\"cursor\":" + last + "}");
                }
                case "PING" -> write("{\"type\":\"PONG\"}");
                default -> {
                    // PONG
                }
            }
        }

        void send(List<String> packets) {
            long ref = refs.incrementAndGet();
            pending.put(ref, System.nanoTime());
            write("{\"type\":\"SEND\",\"ref\":" + ref + ",\"packets\":[" + String.join(",", packets) + "]}");
        }

        void ping() {
            write("{\"type\":\"PING\"}");
        }

        void write(String json) {
            byte[] bytes = json.getBytes(StandardCharsets.UTF_8);
            socket.write(Buffer.buffer(bytes.length + 4).appendInt(bytes.length).appendBytes(bytes));
        }
    }

    /** A long-polling HTTP client: GET /relay/v1/inbox?cursor=N&wait=30 again as soon as each answer came. */
    final class PollPeer {
        final String id;
        final String token;
        final io.vertx.core.http.HttpClient http;
        long cursor;
        volatile int got;

        PollPeer(String id, String token, io.vertx.core.http.HttpClient http) {
            this.id = id;
            this.token = token;
            this.http = http;
        }

        void poll() {
            if (stopped) {
                return;
            }
            http.request(new RequestOptions().setMethod(HttpMethod.GET).setURI("/relay/v1/inbox?cursor=" + cursor + "&wait=30")
                    .putHeader("Authorization", "Bearer " + token).setIdleTimeout(60_000))
                    .compose(req -> req.send().compose(res -> res.body().map(body -> {
                        if (res.statusCode() != 200) {
                            throw new IllegalStateException("HTTP " + res.statusCode() + " " + body);
                        }
                        return body;
                    }))).onComplete(ar -> {
                        if (ar.failed()) {
                            if (stopped) {
                                return; // the node went away with the rest of the bench
                            }
                            pollErrors.incrementAndGet();
                            System.err.println(id + ": poll failed: " + ar.cause().getMessage());
                            vertx.setTimer(1000, t -> poll());
                            return;
                        }
                        try {
                            JsonNode answer = JSON.readTree(ar.result().getBytes());
                            long now = micros(Instant.now());
                            for (JsonNode e : answer.path("packets")) {
                                cursor = Math.max(cursor, e.path("seq").asLong());
                                if (received.putIfAbsent(e.path("packet").path("packetId").asText(), now) != null) {
                                    duplicates.incrementAndGet();
                                }
                                got++;
                            }
                        } catch (IOException e) {
                            pollErrors.incrementAndGet();
                        }
                        poll();
                    });
        }
    }

    // ---- helpers ---------------------------------------------------------------------------------------------------------

    /** received_at (epoch µs) of the phase's packets stored at a node, into slot {@code slot} of each packet's row. */
    void readStored(Node node, String phase, Map<String, long[]> into, int slot) throws Exception {
        try (Connection c = DriverManager.getConnection(node.url(), "postgres", "");
                Statement s = c.createStatement();
                ResultSet rs = s.executeQuery("SELECT packet_id, (EXTRACT(EPOCH FROM received_at) * 1000000)::bigint "
                        + "FROM relay_packet WHERE command = 'bench." + phase + "' AND leg = 'U'")) {
            while (rs.next()) {
                into.computeIfAbsent(rs.getString(1), k -> new long[3])[slot] = rs.getLong(2);
            }
        }
    }

    static long walReady(Node node) throws Exception {
        try (Connection c = DriverManager.getConnection(node.url(), "postgres", "")) {
            return WalSegments.ready(c);
        }
    }

    static long count(Node node, String sql) throws Exception {
        try (Connection c = DriverManager.getConnection(node.url(), "postgres", "");
                Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            rs.next();
            return rs.getLong(1);
        }
    }

    /** CPU seconds so far of the three nodes, the bench JVM and PostgreSQL (all its processes). */
    Map<String, Double> cpu() {
        Map<String, Double> m = new LinkedHashMap<>();
        for (Node n : nodes) {
            m.put(n.name, n.cpu());
        }
        m.put("bench JVM (clients)", ChildHub.cpuSeconds(ProcessHandle.current().pid()));
        double pg = 0;
        try (var dirs = Files.list(Path.of("/proc"))) {
            for (Path d : (Iterable<Path>) dirs::iterator) {
                String name = d.getFileName().toString();
                if (name.chars().allMatch(Character::isDigit)) {
                    try {
                        String comm = Files.readString(d.resolve("comm")).trim();
                        if (comm.startsWith("postgres")) {
                            pg += ChildHub.cpuSeconds(Long.parseLong(name));
                        }
                    } catch (IOException | RuntimeException gone) {
                        // exited
                    }
                }
            }
        } catch (IOException e) {
            // no /proc
        }
        m.put("PostgreSQL", pg);
        return m;
    }

    interface Check {
        boolean ok() throws Exception;
    }

    static void await(String what, Duration max, Check check) throws Exception {
        long deadline = System.nanoTime() + max.toNanos();
        Exception last = null;
        while (System.nanoTime() < deadline) {
            try {
                if (check.ok()) {
                    return;
                }
            } catch (Exception e) {
                last = e;
            }
            Thread.sleep(200);
        }
        throw new IllegalStateException("timed out after " + max.toSeconds() + " s waiting for " + what
                + (last == null ? "" : " (last error: " + last + ")"));
    }

    static void row(StringBuilder r, String name, LongList l) {
        r.append("| ").append(name).append(" | ").append(ms(l.pct(50))).append(" | ").append(ms(l.pct(99))).append(" | ")
                .append(ms(l.max())).append(" |\n");
    }

    static String ms(long micros) {
        return String.format("%.1f ms", micros / 1000.0);
    }

    static String fmt(double d) {
        return String.format("%,.0f", d);
    }

    static String fmt1(double d) {
        return String.format("%.1f", d);
    }

    /** A growable list of longs with percentiles (nearest rank). */
    static final class LongList {
        private long[] a = new long[1024];
        private int n;

        synchronized void add(long v) {
            if (n == a.length) {
                a = Arrays.copyOf(a, n * 2);
            }
            a[n++] = v;
        }

        synchronized int size() {
            return n;
        }

        synchronized long pct(double p) {
            if (n == 0) {
                return 0;
            }
            long[] s = Arrays.copyOf(a, n);
            Arrays.sort(s);
            return s[(int) Math.min(n - 1, Math.max(0, Math.ceil(p / 100.0 * n) - 1))];
        }

        synchronized long max() {
            return n == 0 ? 0 : Arrays.stream(a, 0, n).max().getAsLong();
        }
    }

    static void writeSection(Path results, String report) throws IOException {
        String section = START + "\n" + report.strip() + "\n" + END + "\n";
        String text = Files.exists(results) ? Files.readString(results) : "# Benchmark results\n\n";
        int s = text.indexOf(START);
        int e = text.indexOf(END);
        if (s >= 0 && e > s) {
            text = text.substring(0, s) + section + text.substring(e + END.length()).replaceFirst("^\\n", "");
        } else {
            text = text.stripTrailing() + "\n\n" + section;
        }
        Files.writeString(results, text);
    }

}
