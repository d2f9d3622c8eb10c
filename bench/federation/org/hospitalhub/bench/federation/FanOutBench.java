package org.hospitalhub.bench.federation;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.time.Instant;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.hospitalhub.bench.shared.ChildHub;
import org.hospitalhub.bench.shared.WalSegments;
import org.hospitalhub.federation.cdm.CdmSchema;
import org.hospitalhub.federation.cdm.SyntheticCdm;
import org.postgresql.ds.PGSimpleDataSource;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

/**
 * Issue #4 section 7, second half: a study fanned out to N nodes (default 20), each a packaged hub in its own JVM on
 * its own PostgreSQL database with its own synthetic OMOP CDM (default 10,000 persons), all peers of each other with
 * their own Ed25519 keys, the first one the initiator (the others accept its projects automatically). The initiator
 * creates the project and posts the cohort, variables and analysis steps; the run ends when the initiator holds every
 * node's analysis result. Overhead = that wall time minus the slowest node's own execution (the sum of its three
 * steps' durations as the node measured them). Run by bench/run-federation-fanout.sh; writes its section of
 * bench/RESULTS.md.
 */
public final class FanOutBench {

    static final String START = "<!-- federation-fanout:start (written by bench/run-federation-fanout.sh; the other benchmarks keep it) -->";
    static final String END = "<!-- federation-fanout:end -->";
    static final ObjectMapper JSON = new ObjectMapper();
    static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(3)).build();

    final Path root = Path.of("").toAbsolutePath();
    final Path work = root.resolve("bench/work/federation-fanout");
    final String opsKey = newKey();
    // C1 only (20 JVMs share the cores), compiling a method after a tenth of the usual calls: what a hub that has served
    // studies for hours has compiled, after a few studies (with the default thresholds still not after 40, session 34)
    final String javaOpts = env("BENCH_FED_HUB_OPTS", "-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:CompileThresholdScaling=0.1");
    final List<Node> nodes = new ArrayList<>();

    static String newKey() {
        byte[] b = new byte[18];
        new java.security.SecureRandom().nextBytes(b);
        return HexFormat.of().formatHex(b);
    }

    /** A checkpoint, then the WAL segments ready for reuse (bench/common.sh, prepare_wal). */
    static long checkpoint() throws SQLException {
        try (Connection c = DriverManager.getConnection("jdbc:postgresql://127.0.0.1:5432/postgres", "postgres", "")) {
            return WalSegments.checkpoint(c);
        }
    }

    /** A numeric setting from the environment, between min and max (whole for the counts); else the bench stops naming it. */
    static double number(String k, double d, double min, double max) {
        String v = env(k, null);
        try {
            double x = v == null ? d : Double.parseDouble(v.strip());
            if (x >= min && x <= max && (max < 2 || x == Math.rint(x))) {
                return x;
            }
        } catch (NumberFormatException e) {
            // below
        }
        throw new IllegalArgumentException(k + " must be a " + (max < 2 ? "number" : "whole number") + " from "
                + java.math.BigDecimal.valueOf(min).stripTrailingZeros().toPlainString() + " to "
                + java.math.BigDecimal.valueOf(max).stripTrailingZeros().toPlainString() + ", not '" + v + "'");
    }

    static String env(String k, String d) {
        String v = System.getenv(k);
        return v == null || v.isBlank() ? d : v;
    }

    final class Node {
        final String id;
        final int port = ChildHub.freePort();
        final String db;
        final KeyPair keys;
        ChildHub hub;

        Node(String id) throws Exception {
            this.id = id;
            this.db = "fed_fanout_" + id;
            this.keys = KeyPairGenerator.getInstance("Ed25519").generateKeyPair();
        }

        String url() {
            return "jdbc:postgresql://127.0.0.1:5432/" + db;
        }

        String publicKey() {
            return Base64.getEncoder().encodeToString(keys.getPublic().getEncoded());
        }

        HttpResponse<String> call(String method, String path, String body) throws Exception {
            return HTTP.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path)).timeout(Duration.ofSeconds(60))
                    .header("X-Api-Key", opsKey).header("Content-Type", "application/json")
                    .method(method, body == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(body))
                    .build(), HttpResponse.BodyHandlers.ofString());
        }

        JsonNode post(String path, String body) throws Exception {
            HttpResponse<String> r = call("POST", path, body);
            if (r.statusCode() != 201) {
                throw new IllegalStateException("POST " + path + " on " + id + ": " + r.statusCode() + " " + r.body());
            }
            return JSON.readTree(r.body());
        }

        JsonNode get(String path) throws Exception {
            HttpResponse<String> r = call("GET", path, null);
            if (r.statusCode() != 200) {
                throw new IllegalStateException("GET " + path + " on " + id + ": " + r.statusCode() + " " + r.body());
            }
            return JSON.readTree(r.body());
        }

        void start(List<Node> all) throws Exception {
            List<String> peers = new ArrayList<>();
            for (Node p : all) {
                if (p != this) {
                    boolean auto = p == all.get(0); // every node accepts the initiator's projects
                    peers.add(p.id + ",http://127.0.0.1:" + p.port + "," + p.publicKey() + (auto ? ",auto-accept" : ""));
                }
            }
            Path dir = work.resolve(id);
            Map<String, String> e = new LinkedHashMap<>();
            e.put("QUARKUS_PROFILE", "postgres");
            e.put("HUB_DB_URL", url());
            e.put("HUB_DB_USERNAME", "postgres");
            e.put("QUARKUS_DATASOURCE_POSTGRES_JDBC_MAX_SIZE", env("BENCH_FED_POOL", "8")); // 20 nodes share one PostgreSQL
            e.put("HUB_DATA_DIR", dir.resolve("data").toString());
            e.put("HUB_ROUTES_DIR", Files.createDirectories(work.resolve("routes")).toString());
            // a federation-only node runs no qc flows, so it runs no qc timer sweep (a clustered Quartz job firing every
            // second in its database): on 20 nodes sharing one PostgreSQL that alone made a study a third slower
            e.put("HUB_QC_TIMER_SWEEP_EVERY", env("BENCH_FED_QC_SWEEP", "off"));
            e.put("HUB_AUTH_CLIENTS", "ops:operator:" + opsKey);
            e.put("HUB_FEDERATION_NODE_ID", id);
            e.put("HUB_FEDERATION_PRIVATE_KEY", Base64.getEncoder().encodeToString(keys.getPrivate().getEncoded()));
            e.put("HUB_FEDERATION_PUBLIC_KEY", publicKey());
            e.put("HUB_FEDERATION_PEERS", String.join(";", peers));
            e.put("HUB_FEDERATION_ENABLED", "true");
            e.put("HUB_FEDERATION_PSEUDONYM_KEY", "bench-pseudonym-key-" + id + "-" + System.nanoTime());
            hub = ChildHub.start(id, root, work, dir, javaOpts, port, e);
        }

        void awaitReady() throws Exception {
            hub.awaitReady(Duration.ofSeconds(300));
            String answered = get("/api/v1/federation/node").path("nodeId").asText();
            if (!id.equals(answered)) {
                throw new IllegalStateException("port " + port + " answers as node " + answered + ", not " + id);
            }
        }

        void stop() {
            if (hub != null) {
                hub.signalStop();
            }
        }

        void awaitStop(long deadline) {
            if (hub != null) {
                hub.awaitStop(deadline);
            }
        }

        long rssKb() {
            return hub.kb("VmRSS");
        }
    }

    /** One measured study. */
    record Run(String project, double wallSeconds, String slowestNode, double slowestOwnSeconds, double medianOwnSeconds,
            double fastestOwnSeconds, long pooledPersons, long sumPersons, double sumOwnSeconds, double[] delivery,
            double[] waiting, double[] back, Cpu cpu) {
        double overhead() {
            return wallSeconds - slowestOwnSeconds;
        }
    }

    /** SIGTERM to every hub at once, then wait for them all to exit (SIGKILL after 60 s). */
    void stopAll() {
        nodes.forEach(Node::stop);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        for (Node node : nodes) {
            node.awaitStop(deadline);
        }
    }

    public static void main(String[] args) throws Exception {
        int n = args.length > 0 ? Integer.parseInt(args[0]) : 20;
        int persons = args.length > 1 ? Integer.parseInt(args[1]) : 10_000;
        Path results = Path.of(args.length > 2 ? args[2] : "bench/RESULTS.md");
        String command = args.length > 3 ? args[3] : "bench/run-federation-fanout.sh";
        FanOutBench b = new FanOutBench();
        Runtime.getRuntime().addShutdownHook(new Thread(b::stopAll));
        String report = b.run(n, persons, command);
        System.out.println(report);
        FederationBench.write(results, report, START, END);
        b.stopAll();
        System.exit(0);
    }

    String run(int n, int persons, String command) throws Exception {
        Files.createDirectories(work);
        for (int i = 1; i <= n; i++) {
            nodes.add(new Node(String.format("n%02d", i)));
        }
        System.out.printf("Creating %d databases with %,d synthetic persons each ...%n", n, persons);
        long g0 = System.nanoTime();
        ExecutorService pool = Executors.newFixedThreadPool(2);
        List<Future<?>> loads = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            Node node = nodes.get(i);
            int first = i * persons + 1;
            long seed = 1000 + i;
            loads.add(pool.submit(() -> {
                try (Connection c = DriverManager.getConnection("jdbc:postgresql://127.0.0.1:5432/postgres", "postgres", "");
                        Statement s = c.createStatement()) {
                    s.execute("DROP DATABASE IF EXISTS " + node.db + " WITH (FORCE)");
                    s.execute("CREATE DATABASE " + node.db);
                }
                PGSimpleDataSource ds = new PGSimpleDataSource();
                ds.setUrl(node.url());
                ds.setUser("postgres");
                CdmSchema.migrate(ds, "cdm");
                try (Connection c = ds.getConnection()) {
                    SyntheticCdm.generate(c, "cdm", first, persons, seed);
                }
                return null;
            }));
        }
        for (Future<?> f : loads) {
            f.get();
        }
        pool.shutdown();
        double generated = (System.nanoTime() - g0) / 1e9;
        System.out.printf("Generated in %.1f s; starting %d hubs (%s), two at a time ...%n", generated, n, javaOpts);
        long s0 = System.nanoTime();
        for (int i = 0; i < n; i += 2) {
            for (int j = i; j < Math.min(n, i + 2); j++) {
                nodes.get(j).start(nodes);
            }
            for (int j = i; j < Math.min(n, i + 2); j++) {
                nodes.get(j).awaitReady();
            }
        }
        double started = (System.nanoTime() - s0) / 1e9;
        System.out.printf("All %d nodes ready in %.1f s%n", n, started);
        Thread.sleep(5000);
        long walReady = checkpoint();
        System.out.printf("Checkpoint after the set-up: %d WAL segments ready for reuse%n", walReady);

        int runs = (int) number("BENCH_FED_RUNS", 3, 1, 1000);
        int warmups = (int) number("BENCH_FED_WARMUPS", 3, 0, 1000);
        Map<Mode, List<Run>> warm = new LinkedHashMap<>();
        Map<Mode, List<Run>> done = new LinkedHashMap<>();
        for (Mode m : MODES) {
            warm.put(m, new ArrayList<>());
            done.put(m, new ArrayList<>());
        }
        // warm-up studies in turn in each mode until the hubs' code is compiled (at least BENCH_FED_WARMUPS; then until the
        // last warm-up of each mode had the JIT compilers at most BENCH_FED_JIT_SETTLED of the hubs' CPU, at most
        // BENCH_FED_WARMUPS_MAX in all), then the measured ones: run 1 in each mode, run 2 in each mode, ...
        double settled = number("BENCH_FED_JIT_SETTLED", 0.05, 0, 1);
        int warmupsMax = Math.max(warmups, (int) number("BENCH_FED_WARMUPS_MAX", 40, 0, 1000));
        Map<Mode, Double> lastJit = new LinkedHashMap<>();
        for (int w = 1; w <= warmupsMax; w++) {
            if (w > warmups && (w - 1) % MODES.size() == 0 && lastJit.size() == MODES.size()
                    && lastJit.values().stream().allMatch(j -> j <= settled)) {
                break;
            }
            if (w > 1) {
                Thread.sleep(2000);
            }
            Mode m = MODES.get((w - 1) % MODES.size());
            Run run = study("warm-up " + w, m);
            warm.get(m).add(run);
            lastJit.put(m, run.cpu().jitShare());
            System.out.printf("warm-up %d (%s): wall %.2f s, slowest own %.2f s (%s), overhead %.2f s; CPU %s%n", w, m.label,
                    run.wallSeconds(), run.slowestOwnSeconds(), run.slowestNode(), run.overhead(), run.cpu());
        }
        for (int r = 1; r <= runs; r++) {
            for (Mode m : MODES) {
                Thread.sleep(2000);
                Run run = study("run " + r, m);
                done.get(m).add(run);
                System.out.printf("run %d (%s): wall %.2f s, slowest own %.2f s (%s), overhead %.2f s; CPU %s%n", r, m.label,
                        run.wallSeconds(), run.slowestOwnSeconds(), run.slowestNode(), run.overhead(), run.cpu());
            }
        }
        long rss = nodes.stream().mapToLong(Node::rssKb).sum();

        StringBuilder md = new StringBuilder();
        md.append("## Federation: a study fanned out to ").append(n).append(" nodes (issue #4, section 7)\n\n");
        md.append("Command:\n\n    ").append(command).append("\n\n");
        md.append("| | |\n|---|---|\n");
        md.append("| date | ").append(ZonedDateTime.now().format(DateTimeFormatter.RFC_1123_DATE_TIME)).append(" |\n");
        md.append("| machine | ").append(Runtime.getRuntime().availableProcessors()).append(" cores; the ").append(n)
                .append(" hubs, PostgreSQL and this program share them |\n");
        md.append("| nodes | ").append(n).append(" packaged hubs (`java ").append(javaOpts)
                .append(" -jar target/quarkus-app/quarkus-run.jar`, profile postgres, federation defaults: a message is sent "
                        + "as soon as committed, a received step claimed by the transaction that stores it and started once it commits, the "
                        + "polls (1 s) are a safety net; a pool of " + env("BENCH_FED_POOL", "8") + " connections; "
                        + "qc timer sweep `" + env("BENCH_FED_QC_SWEEP", "off") + "`, as on a node without qc flows), each its own database with ").append(String.format("%,d", persons))
                .append(" synthetic persons; all peers of each other, signed messages over HTTP on 127.0.0.1; n01 initiates. "
                        + "Resident memory of the ").append(n).append(" JVMs together: ").append(rss / 1024).append(" MB |\n");
        md.append("| set-up | databases generated in ").append(String.format("%.0f s", generated)).append(", hubs started in ")
                .append(String.format("%.0f s", started)).append("; then a checkpoint, so that the studies find the set-up's ")
                .append("WAL segments recycled, as a server in its steady state does: ").append(walReady)
                .append(" ready for reuse (bench/README, \"WAL segments\") |\n\n");
        md.append("Each mode of posting a study is measured in turn (`BENCH_FED_STEPS`: `both`, the default, or `separate` "
                + "or `plan` alone), after ").append(warm.values().stream().mapToInt(List::size).sum())
                .append(" warm-up studies taken in turn in each mode: the hubs compile their code while they work, and a study in a "
                + "network meets hubs that have run for days, their code compiled (or native binaries). So the warm-ups go on (at "
                + "least " + warmups + ", `BENCH_FED_WARMUPS`; at most " + warmupsMax + ", `BENCH_FED_WARMUPS_MAX`) until the last "
                + "one of each mode had the hubs' JIT compilers at most " + String.format("%.0f %%", 100 * settled)
                + " of the hubs' CPU (`BENCH_FED_JIT_SETTLED`); the *CPU* column shows their share in each study. Wall time: from the initiator's `POST /projects` until it holds every node's analysis result "
                + "(`fed_result.received_at` of the last one; the bench asks the initiator every " + POLL_MS + " ms whether they "
                + "are all in). Own execution of a node: the sum of its cohort, variables and "
                + "analysis durations as the node measured them (`fed_execution.duration_ms`, reported to the initiator). "
                + "Overhead = wall time − the slowest node's own execution (target ≤ 1 s). *Delivery* = the step "
                + "created at the initiator → queued at the node; *waiting* = queued (or the node's previous step done) → "
                + "started; *back* = done at the node → its result stored at the initiator (seconds, p50 / max over the ")
                .append(n).append(" nodes × 3 steps). *Σ own* is the nodes' own executions summed; Σ own ÷ wall is how many "
                        + "nodes were executing at once on the ").append(Runtime.getRuntime().availableProcessors())
                .append(" cores (each own execution is wall time, stretched by the others sharing them). *CPU*: the cores the 20 hubs "
                        + "and PostgreSQL used on average during the study (from /proc), and of them the initiator n01's hub and database "
                        + "and the busiest other node's.\n");
        for (Mode m : MODES) {
            md.append("\n### ").append(m.title).append("\n\n").append(m.description).append("\n\n");
            md.append("| run | wall | slowest node's own execution | median / fastest node | overhead | pooled persons = Σ nodes "
                    + "| delivery | waiting | back | Σ own | Σ own ÷ wall | CPU: hubs / PostgreSQL |\n"
                    + "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
            List<Run> ws = warm.get(m);
            for (int w = 0; w < ws.size(); w++) {
                md.append(row("warm-up (not counted)", ws.get(w)));
            }
            List<Run> rs = done.get(m);
            for (int r = 0; r < rs.size(); r++) {
                md.append(row(Integer.toString(r + 1), rs.get(r)));
            }
            double worst = rs.stream().mapToDouble(Run::overhead).max().orElse(Double.NaN);
            double mean = rs.stream().mapToDouble(Run::overhead).average().orElse(Double.NaN);
            md.append("\n").append(m.title).append(", overhead over ").append(rs.size()).append(" runs: mean ")
                    .append(String.format("%.2f s", mean)).append(", worst ").append(String.format("%.2f s", worst))
                    .append(": **").append(worst <= 1.0 ? "MET" : "MISSED").append("** (target ≤ 1 s).\n");
        }
        return md.toString();
    }

    static String row(String name, Run r) {
        return "| " + name + " | " + String.format("%.2f s", r.wallSeconds()) + " | "
                + String.format("%.2f s (%s)", r.slowestOwnSeconds(), r.slowestNode()) + " | "
                + String.format("%.2f s / %.2f s", r.medianOwnSeconds(), r.fastestOwnSeconds()) + " | "
                + String.format("**%.2f s**", r.overhead()) + " | " + r.pooledPersons() + " = " + r.sumPersons() + " | "
                + String.format("%.2f / %.2f | %.2f / %.2f | %.2f / %.2f | %.1f s | %.1f | ", r.delivery()[0], r.delivery()[1],
                        r.waiting()[0], r.waiting()[1], r.back()[0], r.back()[1], r.sumOwnSeconds(),
                        r.sumOwnSeconds() / r.wallSeconds()) + r.cpu() + " |\n";
    }

    /** How the bench posts a study. */
    enum Mode {
        SEPARATE("one by one", "Steps posted one by one",
                "The project is posted, then its cohort, variables and analysis steps, each by its own request as soon as the "
                        + "one before is answered (it names the earlier steps' ids): the way a researcher builds a study step by "
                        + "step, here at machine speed, so the later steps chase the earlier ones to every node."),
        PLAN("as a plan", "The study posted as a plan",
                "`POST /projects` with its three steps: a study defined before it starts; its steps travel with the invitation.");

        final String label;
        final String title;
        final String description;

        Mode(String label, String title, String description) {
            this.label = label;
            this.title = title;
            this.description = description;
        }
    }

    /** {@code BENCH_FED_STEPS}: {@code both} (default: each mode in turn), {@code separate} or {@code plan}. */
    static final List<Mode> MODES = switch (env("BENCH_FED_STEPS", "both")) {
        case "separate" -> List.of(Mode.SEPARATE);
        case "plan" -> List.of(Mode.PLAN);
        case "both" -> List.of(Mode.SEPARATE, Mode.PLAN);
        default -> throw new IllegalArgumentException("BENCH_FED_STEPS must be both, separate or plan, not " + System.getenv("BENCH_FED_STEPS"));
    };

    /** {@code BENCH_FED_POLL_MS}: how often the initiator is asked whether every node's analysis result is in (500). */
    static final long POLL_MS = Long.parseLong(env("BENCH_FED_POLL_MS", "500"));

    Run study(String title, Mode mode) throws Exception {
        Node initiator = nodes.get(0);
        StringBuilder invited = new StringBuilder();
        for (Node x : nodes) {
            invited.append(invited.length() == 0 ? "" : ",").append('"').append(x.id).append('"');
        }
        Map<String, Double> cpu0 = cpuByNode();
        Instant t0 = Instant.now();
        String project;
        String cohort;
        String analysis;
        if (mode == Mode.PLAN) { // the study's steps with the project, one request (they travel with the invitation)
            JsonNode created = initiator.post("/api/v1/federation/projects", "{\"title\":\"Fan-out benchmark " + title + " (" + mode.label + ")"
                    + "\",\"invitedNodes\":[" + invited + "],\"sharingLevel\":\"aggregate-only\",\"steps\":["
                    + "{\"ref\":\"c\",\"kind\":\"cohort\",\"definition\":" + FederationBench.COHORT + "},"
                    + "{\"ref\":\"v\",\"kind\":\"variables\",\"definition\":" + FederationBench.VARIABLES
                    + ",\"dependsOn\":{\"cohort\":\"c\"}},"
                    + "{\"kind\":\"analysis\",\"definition\":" + FederationBench.ANALYSIS
                    + ",\"dependsOn\":{\"cohort\":\"c\",\"variables\":\"v\"}}]}");
            project = created.path("projectId").asText();
            cohort = created.path("steps").path(0).path("stepId").asText();
            analysis = created.path("steps").path(2).path("stepId").asText();
        } else { // the project, then each step by its own request
            project = initiator.post("/api/v1/federation/projects", "{\"title\":\"Fan-out benchmark " + title + " (" + mode.label + ")"
                    + "\",\"invitedNodes\":[" + invited + "],\"sharingLevel\":\"aggregate-only\"}").path("projectId").asText();
            cohort = step(project, "cohort", FederationBench.COHORT, "{}");
            String variables = step(project, "variables", FederationBench.VARIABLES, "{\"cohort\":\"" + cohort + "\"}");
            analysis = step(project, "analysis", FederationBench.ANALYSIS,
                    "{\"cohort\":\"" + cohort + "\",\"variables\":\"" + variables + "\"}");
        }
        long deadline = System.nanoTime() + TimeUnit.MINUTES.toNanos(10);
        while (true) {
            long ok = 0;
            for (JsonNode e : initiator.get("/api/v1/federation/projects/" + project + "/steps/" + analysis).path("nodes")) {
                if ("SUCCEEDED".equals(e.path("status").asText())) {
                    ok++;
                } else if ("FAILED".equals(e.path("status").asText())) {
                    throw new IllegalStateException(title + ": the analysis failed on " + e);
                }
            }
            if (ok == nodes.size()) {
                break;
            }
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException(title + ": only " + ok + " of " + nodes.size() + " nodes finished in 10 minutes");
            }
            // the end is the last result's received_at, not this poll: polling less often only spares the initiator (the
            // busiest node) a request and its queries ten times a second while it works
            Thread.sleep(POLL_MS);
        }
        Cpu cpu = Cpu.between(cpu0, cpuByNode(), Duration.between(t0, Instant.now()).toNanos() / 1e9);
        Instant last;
        Map<String, Double> own = new LinkedHashMap<>();
        try (Connection c = DriverManager.getConnection(initiator.url(), "postgres", "")) {
            try (PreparedStatement q = c.prepareStatement("SELECT MAX(received_at) FROM fed_result WHERE step_id = ?")) {
                q.setString(1, analysis);
                try (ResultSet rs = q.executeQuery()) {
                    rs.next();
                    last = rs.getObject(1, java.time.OffsetDateTime.class).toInstant();
                }
            }
            try (PreparedStatement q = c.prepareStatement("SELECT node_id, SUM(duration_ms), COUNT(*) FROM fed_execution "
                    + "WHERE project_id = ? AND status = 'SUCCEEDED' GROUP BY node_id")) {
                q.setString(1, project);
                try (ResultSet rs = q.executeQuery()) {
                    while (rs.next()) {
                        if (rs.getInt(3) != 3) {
                            throw new IllegalStateException(title + ": node " + rs.getString(1) + " reported " + rs.getInt(3) + " of 3 steps");
                        }
                        own.put(rs.getString(1), rs.getLong(2) / 1000.0);
                    }
                }
            }
        }
        // where the rest of the wall time goes, per node and step (seconds; p50 and max over nodes and steps):
        // delivery = the step's creation at the initiator -> queued at the node; waiting = queued (or the node's
        // previous step finished) -> started; back = finished at the node -> its result stored at the initiator
        List<Double> delivery = new ArrayList<>();
        List<Double> waiting = new ArrayList<>();
        List<Double> back = new ArrayList<>();
        try (Connection c = DriverManager.getConnection(initiator.url(), "postgres", "");
                PreparedStatement q = c.prepareStatement("SELECT e.node_id, s.created_at, e.queued_at, e.started_at, "
                        + "e.finished_at, r.received_at FROM fed_execution e JOIN fed_step s ON s.step_id = e.step_id "
                        + "LEFT JOIN fed_result r ON r.step_id = e.step_id AND r.node_id = e.node_id WHERE e.project_id = ? "
                        + "ORDER BY e.node_id, s.seq")) {
            q.setString(1, project);
            String node = null;
            Instant previousFinished = null;
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    if (!rs.getString(1).equals(node)) {
                        node = rs.getString(1);
                        previousFinished = null;
                    }
                    Instant created = instant(rs, 2);
                    Instant queued = instant(rs, 3);
                    Instant startedAt = instant(rs, 4);
                    Instant finished = instant(rs, 5);
                    Instant received = instant(rs, 6);
                    delivery.add(seconds(created, queued));
                    Instant ready = previousFinished != null && previousFinished.isAfter(queued) ? previousFinished : queued;
                    waiting.add(seconds(ready, startedAt));
                    back.add(seconds(finished, received));
                    previousFinished = finished;
                }
            }
        }
        if (own.size() != nodes.size()) {
            throw new IllegalStateException(title + ": own execution times of " + own.size() + " nodes only: " + own);
        }
        List<Double> sorted = own.values().stream().sorted().toList();
        String slowest = own.entrySet().stream().max(Map.Entry.comparingByValue()).get().getKey();
        JsonNode cohortResults = initiator.get("/api/v1/federation/projects/" + project + "/steps/" + cohort + "/results").path("nodes");
        long sum = 0;
        for (Node x : nodes) {
            sum += cohortResults.path(x.id).path("persons").asLong();
        }
        JsonNode pooled = initiator.get("/api/v1/federation/projects/" + project + "/steps/" + analysis + "/pooled");
        long pooledN = findCount(pooled.path("pooled").path("analyses"));
        return new Run(project, Duration.between(t0, last).toNanos() / 1e9, slowest, own.get(slowest),
                sorted.get(sorted.size() / 2), sorted.get(0), pooledN, sum, sorted.stream().mapToDouble(Double::doubleValue).sum(),
                p50max(delivery), p50max(waiting), p50max(back), cpu);
    }

    /**
     * CPU seconds used so far, by node: {@code hub:nXX} its JVM, {@code db:nXX} the PostgreSQL processes serving its
     * database, {@code db:-} PostgreSQL's others (writer, checkpointer, autovacuum, the bench's own queries' databases).
     * From /proc; a process that ended in between is not counted.
     */
    Map<String, Double> cpuByNode() {
        Map<String, Double> out = new LinkedHashMap<>();
        for (Node x : nodes) {
            out.put("hub:" + x.id, x.hub.cpuSeconds());
            jitSeconds(x.hub.pid()).forEach((tid, seconds) -> out.put("jit:" + x.id + ":" + tid, seconds));
        }
        try (var dirs = Files.list(Path.of("/proc"))) {
            for (Path d : (Iterable<Path>) dirs::iterator) {
                String name = d.getFileName().toString();
                if (!name.chars().allMatch(Character::isDigit)) {
                    continue;
                }
                try {
                    String stat = Files.readString(d.resolve("stat"));
                    if (!stat.contains("(postgres)")) {
                        continue;
                    }
                    String cmd = Files.readString(d.resolve("cmdline")).replace('\0', ' ');
                    int at = cmd.indexOf("fed_fanout_");
                    String key = at < 0 ? "db:-" : "db:" + cmd.substring(at + "fed_fanout_".length()).split(" ")[0];
                    out.merge(key, ChildHub.cpuSeconds(Long.parseLong(name)), Double::sum);
                } catch (java.io.IOException | RuntimeException gone) {
                    // ended meanwhile
                }
            }
        } catch (java.io.IOException e) {
            // no /proc: no figures
        }
        return out;
    }

    /**
     * CPU seconds so far of each of a JVM's JIT compiler threads ({@code C1 CompilerThread…}, {@code C2 CompilerThread…}),
     * by thread id, from /proc. By thread, since HotSpot starts and ends compiler threads as its queue grows and shrinks:
     * a thread that is new since the first look counts from zero, one that ended in between is not counted.
     */
    static Map<String, Double> jitSeconds(long pid) {
        Map<String, Double> out = new LinkedHashMap<>();
        try (var tasks = Files.list(Path.of("/proc/" + pid + "/task"))) {
            for (Path t : (Iterable<Path>) tasks::iterator) {
                try {
                    String comm = Files.readString(t.resolve("comm"));
                    if (comm.startsWith("C1 Compiler") || comm.startsWith("C2 Compiler")) {
                        String stat = Files.readString(t.resolve("stat"));
                        String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
                        out.put(t.getFileName().toString(), (Long.parseLong(f[11]) + Long.parseLong(f[12])) / 100.0);
                    }
                } catch (java.io.IOException | RuntimeException gone) {
                    // ended meanwhile
                }
            }
        } catch (java.io.IOException e) {
            // no /proc: no figure
        }
        return out;
    }

    /**
     * CPU during a study: the hubs, PostgreSQL, and of each the initiator's share and the busiest other node's; and
     * the part of the hubs' that their JIT compilers used (a hub still compiling its code is not yet in its steady state).
     */
    record Cpu(double seconds, double hubs, double hubInitiator, double hubMaxOther, double db, double dbInitiator, double dbMaxOther,
            double jit) {
        static Cpu between(Map<String, Double> a, Map<String, Double> b, double seconds) {
            double hubs = 0, db = 0, hub1 = 0, db1 = 0, hubMax = 0, dbMax = 0, jit = 0;
            for (Map.Entry<String, Double> e : b.entrySet()) {
                double used = e.getValue() - a.getOrDefault(e.getKey(), 0.0);
                if (used < 0) {
                    used = e.getValue(); // a process that is new since the first look (same pid reused: rare)
                }
                boolean initiator = e.getKey().endsWith(":n01");
                if (e.getKey().startsWith("jit:")) {
                    jit += Math.max(0, e.getValue() - a.getOrDefault(e.getKey(), 0.0)); // a new thread: from zero
                    continue;
                } else if (e.getKey().startsWith("hub:")) {
                    hubs += used;
                    hub1 = initiator ? used : hub1;
                    hubMax = initiator ? hubMax : Math.max(hubMax, used);
                } else {
                    db += used;
                    db1 = initiator ? used : db1;
                    dbMax = initiator || e.getKey().equals("db:-") ? dbMax : Math.max(dbMax, used);
                }
            }
            return new Cpu(seconds, hubs, hub1, hubMax, db, db1, dbMax, jit);
        }

        /** The JIT compilers' share of the hubs' CPU during the study. */
        double jitShare() {
            return hubs <= 0 ? 0 : jit / hubs;
        }

        @Override
        public String toString() {
            return String.format("%.2f / %.2f cores (n01 %.2f / %.2f, busiest other %.2f / %.2f); JIT %.0f %% of the hubs'",
                    hubs / seconds, db / seconds, hubInitiator / seconds, dbInitiator / seconds, hubMaxOther / seconds,
                    dbMaxOther / seconds, 100 * jitShare());
        }
    }

    static Instant instant(ResultSet rs, int col) throws java.sql.SQLException {
        java.time.OffsetDateTime t = rs.getObject(col, java.time.OffsetDateTime.class);
        return t == null ? null : t.toInstant();
    }

    static double seconds(Instant a, Instant b) {
        return a == null || b == null ? Double.NaN : Duration.between(a, b).toNanos() / 1e9;
    }

    static double[] p50max(List<Double> values) {
        List<Double> v = values.stream().filter(d -> !d.isNaN()).sorted().toList();
        return v.isEmpty() ? new double[] {Double.NaN, Double.NaN} : new double[] {v.get(v.size() / 2), v.get(v.size() - 1)};
    }

    /** The pooled "n" analysis (kind count). */
    static long findCount(JsonNode analyses) {
        for (JsonNode a : analyses) {
            if ("n".equals(a.path("name").asText())) {
                JsonNode v = a.has("n") ? a.get("n") : a.path("count");
                return v.asLong(-1);
            }
        }
        if (analyses.has("n")) {
            JsonNode a = analyses.get("n");
            return (a.has("n") ? a.get("n") : a.path("count")).asLong(-1);
        }
        return -1;
    }

    String step(String project, String kind, String definition, String dependsOn) throws Exception {
        return nodes.get(0).post("/api/v1/federation/projects/" + project + "/steps", "{\"kind\":\"" + kind + "\",\"definition\":"
                + definition + ",\"dependsOn\":" + dependsOn + "}").path("stepId").asText();
    }

}
